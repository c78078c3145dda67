"""The typed Python API of a lab: load, up, down, status, exec. The CLI is a thin layer over this.

Owns the order of one operation, the same for every change:

    up:   lock -> read state -> resolve (validate everything) -> observe -> plan (features' ``before``, wiring,
          features' ``after``) -> apply with one undo journal -> save state
    down: lock -> read state + ownership marks -> plan the teardown the same way -> run it past failures ->
          forget the state

Nothing here talks to the kernel: everything goes through the :class:`~nslab.drivers.Drivers` bundle, which
unit tests replace with fakes (``drivers.fake.fake_drivers()``).

    >>> with Lab.load("nslab.yaml") as lab:          # up on enter, down on exit
    ...     print(lab.exec("web1", ["ip", "-br", "addr"], capture_output=True).stdout)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import paths
from .core import features, state
from .core.apply import apply, rollback, teardown
from .core.plan import Action, Plan
from .core.wiring import AddBridges, AddHosts, AwaitBridges, Observed, plan_down, plan_up
from .drivers import Drivers
from .errors import ConflictError, NslabError, Problem, ResolveError, TargetError, TeardownError, UserError
from .model import Lab as ResolvedLab
from .model import Occupied
from .naming import parse_owner
from .ns import nsenter
from .values import Value, field, replace

if TYPE_CHECKING:  # the spec needs pydantic + yaml (~100 ms): only loading a file pays for it
    import subprocess

    from .core import spec, speccache
    from .ns.targets import Target
    from .tools import check as check_mod

Progress = Callable[[int, int, str], None]


class UpResult(Value):
    lab: ResolvedLab
    plan: Plan
    applied: bool
    previous: ResolvedLab | None = None  # the lab as it was up before (None: a new lab)
    warnings: tuple[str, ...] = ()  # every warning of the features (e.g. the FORWARD policy)
    repairs: list[str] = field(default_factory=list)  # drift this run repairs (see drift.py)

    def commands(self) -> list[str]:
        """The whole change as commands a person would type (``up --dry-run``)."""
        return self.plan.commands()

    def changes(self) -> list[str]:
        """What this ``up`` changes, one line each: hosts, networks and links added, removed or changed (a changed
        host is made again), then what each feature does (firewall, services restarted...)."""
        from .core.wiring import AddHosts

        before = self.previous or ResolvedLab(name=self.lab.name, source="", networks={}, hosts={})
        remade = {h.name for a in self.plan.of_type(AddHosts) for h in a.hosts}
        lines: list[str] = []
        for kind, old, new in (("network", before.networks, self.lab.networks), ("host", before.hosts, self.lab.hosts)):
            lines += [f"added {kind} {name}" for name in new if name not in old]
            lines += [f"removed {kind} {name}" for name in old if name not in new]
            lines += [f"changed {kind} {name}" for name in new if name in old
                      and (old[name] != new[name] or (kind == "host" and name in remade))]
        links = {(lk.a, lk.b) for lk in self.lab.links}
        was = {(lk.a, lk.b) for lk in before.links}
        lines += [f"added link {a}-{b}" for a, b in sorted(links - was)]
        lines += [f"removed link {a}-{b}" for a, b in sorted(was - links)]
        lines += [a.summary() for a in self.plan.actions if type(a).__module__.startswith("nslab.core.features")]
        return lines


class Lab:
    """A lab file, loaded and validated (nothing on the machine changes until :meth:`up`).

    ``drivers``: the kernel boundaries to work through (default: the real ones, made on first use).
    """

    def __init__(
        self,
        lab_spec: spec.LabSpec,
        source: spec.SourceMap | None = None,
        path: str = "",
        drivers: Drivers | None = None,
        parsed: spec.Parsed | None = None,
    ) -> None:
        if source is None:
            from .core import spec

            source = spec.SourceMap()
        self.spec = lab_spec
        self.source_map = source
        self.path = path
        self.display_path = path
        self.drivers = drivers
        #: the file as read, with its schema problems (the spec is then the part of the file without them)
        self.parsed = parsed
        self._targets: dict[str, Target] = {}  # host -> where its namespaces are (Lab.exec)
        self.repairs: list[str] = []  # the drift the last plan repairs
        #: the file's text as read (a file that passes every check is kept by speccache.py under it)
        self.text: str | None = None
        #: the kept form this Lab was made from (speccache.load): resolve is skipped when its inputs match
        self.cached: speccache.Entry | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str], drivers: Drivers | None = None, check: bool = True) -> Lab:
        """Read the lab file ``path`` (``-``: standard input) and check it whole: schema, references,
        addresses, published ports, and (``check``) conflicts with the machine and the other labs. Every problem
        is raised at once, in one :class:`~nslab.errors.UserError`. ``check=False`` leaves the machine's part
        to :meth:`up` (it checks again under the machine lock)."""
        from .core import spec

        text = spec.read(os.fspath(path))
        stdin = str(path) == "-"
        label = "<stdin>" if stdin else str(path)
        lab = cls._parsed(spec.parse_all(text, label), "" if stdin else os.path.realpath(path), drivers)
        lab.display_path = label
        lab.text = None if stdin else text
        lab._raise_problems(check)
        return lab

    @classmethod
    def from_text(cls, text: str, path: str = "", drivers: Drivers | None = None, check: bool = False) -> Lab:
        """Like :meth:`load`; a file without schema problems is checked against the machine only with ``check``."""
        from .core import spec

        lab = cls._parsed(spec.parse_all(text, path or "<string>"), os.path.realpath(path) if path else "", drivers)
        lab.display_path = path or "<string>"  # problems name the file as given, as load's do
        lab._raise_problems(check)
        return lab

    @classmethod
    def _parsed(cls, parsed: spec.Parsed, path: str, drivers: Drivers | None) -> Lab:
        if parsed.spec is None:
            from .errors import SpecError

            raise SpecError(parsed.problems)
        return cls(parsed.spec, parsed.source, path, drivers, parsed)

    def _raise_problems(self, machine: bool) -> None:
        """Raise every problem: with ``machine``, or when the file has schema problems (they come with all the
        others: the rest of the file's and the machine's)."""
        if self.parsed is not None and self.parsed.problems:
            machine = True
        if not machine:
            return
        drivers = self.drivers or Drivers.live()
        try:
            _, problems = self.validate(drivers, state.LabState.load(self.name))
        finally:
            if self.drivers is None:
                drivers.close()
        if problems:
            raise _problem_error(problems, self.parsed)

    @property
    def name(self) -> str:
        return self.spec.name

    # ------------------------------------------------------------------------------------------
    def validate(
        self, drivers: Drivers | None, recorded: state.LabState | None = None
    ) -> tuple[ResolvedLab, list[Problem]]:
        """Every problem of the lab in one pass, changing nothing: the file's schema, names and references,
        addresses and subnets (against the machine's routes and the other labs when ``drivers`` are given),
        each feature's checks (published ports...), and names nslab would create that the machine already
        has. Returns the lab as far as it resolved, and the problems in file order."""
        others = _other_labs(self.name)
        occupied = [Occupied(net, who) for net, who in drivers.kernel.machine_networks()] if drivers else []
        for other in others:
            occupied += [Occupied(n.subnet, f"network '{n.name}' of lab '{other.lab.name}'")
                         for n in other.lab.networks.values()]
            occupied += [Occupied(lk.subnet, f"a link of lab '{other.lab.name}'") for lk in other.lab.links]
            occupied += [Occupied(n.subnet6, f"network '{n.name}' of lab '{other.lab.name}'")
                         for n in other.lab.networks.values() if n.subnet6]
            occupied += [Occupied(lk.subnet6, f"a link of lab '{other.lab.name}'")
                         for lk in other.lab.links if lk.subnet6]
        previous = recorded.lab.allocations() if recorded else None
        ula = self._ula(drivers)
        kept = self._kept(drivers, occupied, previous, ula)
        problems: list[Problem]
        if kept is not None:
            resolved, problems = kept, []
        else:
            from .core.resolve import resolve_all  # (spec.py, pydantic: only a file read the full way pays it)

            resolved, problems = resolve_all(self.spec, self.source_map, self.display_path, occupied, previous,
                                             **ula)
            resolved = replace(resolved, source=self.path)
        ctx = features.ValidateContext(resolved, self.source_map, self.display_path, others, drivers)
        problems += [p for module in features.modules() for p in module.validate(ctx)]
        if drivers is not None:
            from .core.collisions import collisions
            from .core.wiring import sysctl_problems

            problems += collisions(resolved, drivers, recorded.lab if recorded else None, others,
                                   self.source_map, self.display_path)
            problems += sysctl_problems(resolved, drivers, self.source_map, self.display_path)
        if self.parsed is not None:
            problems = [self.parsed.relocate(p) for p in problems]
            problems = self.parsed.problems + problems
        if problems and self.cached is not None:
            from .core.speccache import Stale

            raise Stale("a problem: read the file the full way to report it")
        if not problems and drivers is not None and self.text is not None and self.path and self.cached is None:
            from .core import speccache

            inputs = [speccache.inputs_digest(occupied, previous, ula)]
            if previous is None:  # the next `up` resolves with these allocations kept: the same lab (sticky)
                inputs.append(speccache.inputs_digest(occupied, resolved.allocations(), ula))
            speccache.store(self, self.text, resolved, inputs)
        return resolved, _in_file_order(problems)

    def _ula(self, drivers: Drivers | None) -> dict[str, Any]:
        """The machine's ULA /48 when a network wants IPv6 without a subnet6 (picked once, kept; see ula.py)."""
        wanting = [(n.dual_stack, n.subnet6) for n in self.spec.networks.values()]
        wanting += [(lk.dual_stack, lk.subnet6) for lk in self.spec.links]
        if not any(dual and subnet6 is None for dual, subnet6 in wanting):
            return {}
        from .core.ula import machine_ula

        ula = machine_ula(create=drivers is not None)
        return {"ula": ula} if ula is not None else {}

    def _kept(self, drivers: Drivers | None, occupied: list[Occupied], previous: dict[str, Any] | None,
              ula: dict[str, Any]) -> ResolvedLab | None:
        """The resolved form kept for these inputs, for a Lab made from the cache (speccache.load)."""
        if self.cached is None:
            return None
        from .core.speccache import Stale, inputs_digest

        found = self.cached.resolved(inputs_digest(occupied, previous, ula), self.spec) if drivers else None
        if found is None:
            raise Stale("resolved with other inputs: resolve it the full way")
        return found

    def resolve(self, drivers: Drivers | None = None, recorded: state.LabState | None = None) -> ResolvedLab:
        """Resolve against the machine (its routes/addresses and the other labs) and validate every feature,
        without changing anything; every problem is raised at once."""
        resolved, problems = self.validate(drivers, recorded)
        if problems:
            raise _problem_error(problems, self.parsed)
        return resolved

    def plan(self, drivers: Drivers, recorded: state.LabState | None) -> tuple[ResolvedLab, Plan, dict[str, Any]]:
        """The desired lab, the plan that brings the machine there, and the records to keep once it is applied."""
        desired = self.resolve(drivers, recorded)
        observed = observe(drivers, self.name)
        self.repairs = []
        if recorded is not None:  # what drifted from the lab as made is repaired on the way
            from .core.drift import lab_drift, with_repairs

            found = lab_drift(recorded, drivers)
            observed, self.repairs = with_repairs(observed, found), [d.text for d in found]
        wiring = plan_up(desired, recorded.lab if recorded else None, observed)
        ctx = features.UpContext(
            lab=desired,
            recorded=recorded.lab if recorded else None,
            record=None,
            others=_other_labs(self.name),
            recreated=frozenset(h.name for a in wiring.of_type(AddHosts) for h in a.hosts),
            new_bridges=frozenset(n.bridge for a in wiring.of_type(AddBridges) for n in a.networks),
            drivers=drivers,
        )
        before: list[Action] = []
        after: list[Action] = []
        records: dict[str, Any] = {}
        for module in features.modules():
            ctx.record = recorded.extra.get(module.KEY) if recorded else None
            feature_plan = module.plan_up(ctx)
            before += feature_plan.before
            after += feature_plan.after
            records[module.KEY] = feature_plan.record
        return desired, Plan(before) + wiring + Plan(after), records

    def up(self, dry_run: bool = False, progress: Progress | None = None) -> UpResult:
        """Bring the lab up, or converge it to the file if it is up already. Idempotent. If anything fails,
        everything this run did is undone: the lab that was up stays as it was; a new lab leaves nothing."""
        drivers = self.drivers or Drivers.live()
        try:
            with state.machine_lock():
                recorded = state.LabState.load(self.name)
                if recorded and self.path and recorded.lab.source and recorded.lab.source != self.path:
                    raise ConflictError(
                        f"lab name '{self.name}' is already used by {recorded.lab.source}; "
                        f"rename this lab or run 'nslab down {self.name}' first"
                    )
                if not dry_run:
                    finish_interrupted_up(self.name, drivers, recorded)
                with drivers.kernel.observing():  # nothing changes the machine while the plan is made
                    desired, plan, records = self.plan(drivers, recorded)
                previous = recorded.lab if recorded else None
                warnings = tuple(w for r in records.values() for w in getattr(r, "warnings", ()))
                if dry_run:
                    return UpResult(desired, plan, False, previous, warnings, list(self.repairs))
                self._apply(drivers, plan, recorded, progress, desired, records)
                return UpResult(desired, plan, bool(plan), previous, warnings, list(self.repairs))
        finally:
            if self.drivers is None:
                drivers.close()

    def _apply(self, drivers: Drivers, plan: Plan, recorded: state.LabState | None, progress: Progress | None,
               desired: ResolvedLab, records: dict[str, Any]) -> None:
        """Write the intent, apply ``plan``, save the state; if any of it fails, nothing this run did stays."""
        namespaces = [h.namespace for a in plan.of_type(AddHosts) for h in a.hosts]
        bridges = [n.bridge for a in plan.of_type(AddBridges) for n in a.networks]
        journal: list[Action] = []
        try:
            if plan:
                state.write_intent(self.name, namespaces, bridges)  # durable before the first kernel change
            journal = apply(plan, drivers, progress)
            extra = {key: record.to_json() for key, record in records.items()}
            if plan or recorded is None or recorded.lab != desired or recorded.extra != extra:
                state.LabState(desired, extra).save()  # (an up that changes nothing leaves the record be)
        except BaseException:
            rollback(journal, drivers)  # (apply rolled its own failure back: then the journal is empty)
            if recorded is None:  # the lab's own directory (hostname tmpfs, logs, intent) goes too
                drivers.uts.drop_dir(paths.uts_dir(self.name))
                state.remove(self.name)
            else:
                state.clear_intent(self.name)
            raise
        state.clear_intent(self.name)

    def down(self) -> None:
        down(self.name, self.drivers)

    def status(self) -> dict[str, Any]:
        return status(self.name, self.drivers)

    def exec(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside ``host`` (``subprocess.run`` keywords pass through); returns its result.

        The host's network, hostname and /etc/netns files apply, as with ``nslab exec``; this process stays
        where it is. The host's namespace paths are looked up once per Lab (not per call).
        """
        target = self._targets.get(host)
        if target is None or not os.path.exists(target.net_path):
            from .ns.targets import resolve

            target = self._targets[host] = resolve(f"{self.name}/{host}")
        return nsenter.run_in_target(target, argv, **kwargs)

    def port(self, host: str, port: int | str) -> int:
        """The machine's port that ``port`` of ``host`` is published on (``80``, ``"80/tcp"``, ``"53/udp"``), as
        ``nslab port LAB/HOST PORT`` prints it: handy when the lab file leaves the host port to ``up``
        (``publish: ["80"]``). Raises TargetError when it is not published."""
        from .core.features.firewall.record import published_ports

        number, _, proto = str(port).partition("/")
        proto = proto or "tcp"
        for p in published_ports(self.name, host):
            if str(p.port) == number and p.proto == proto:
                return p.host_port
        raise TargetError(f"no public port '{number}/{proto}' published for {self.name}/{host}")

    def __enter__(self) -> Lab:
        self.up()
        return self

    # -- testing the network (check.py, features/links.py) --------------------------------------
    def check(self, port: str | None = None, source: str | None = None,
              timeout: float | None = None, ipv6: bool = False) -> check_mod.Matrix:
        """The reachability matrix of the lab that is up (``nslab check``): every cell probed, with the
        verdict the lab implies; ``.ok`` when all match. ``port``: ``"80"`` (TCP) or ``"53/udp"``; ``timeout``:
        how long an unanswered cell is waited for (seconds; default that of ``nslab check``); ``ipv6``: probe
        over IPv6 (``nslab check -6``)."""
        from .tools import check as check_mod

        if timeout is None:
            return check_mod.check(self.name, port, source, self.drivers, ipv6=ipv6)
        return check_mod.check(self.name, port, source, self.drivers, timeout=timeout, ipv6=ipv6)

    def link(self, host: str, iface: str | None = None, up: bool = True) -> list[str]:
        """``nslab link LAB/HOST[:IF] up|down``: both ends of the interface (every interface of the host when
        ``iface`` is None); kept as intended state. Returns the ``HOST:IF`` changed."""
        from .core.features.links import set_link

        drivers = self.drivers or Drivers.live()
        try:
            return set_link(self.name, host, iface, up, drivers)
        finally:
            if self.drivers is None:
                drivers.close()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- impairments and partitions (faults.py) ---------------------------------------------------------
    def impair(self, host: str, iface: str | None = None, *, loss: float | str | None = None,
               rate: int | str | None = None, delay: float | str | None = None, jitter: float | str | None = None,
               direction: str = "out", clear: bool = False) -> None:
        """Impair ``host``'s interface (default: its first, ``eth0``): ``loss`` in percent (``30`` or ``"30%"``),
        ``rate`` (``"10mbit"``), ``delay``/``jitter`` in ms (``50`` or ``"50ms"``), in ``direction`` "out" (what the
        host sends; the default), "in" (what it receives) or "both". ``clear=True`` removes it (every interface
        when ``iface`` is None)."""
        from .core import faults

        faults.impair(self.name, host, iface, self.drivers, clear=clear, loss=loss, rate=rate, delay=delay,
                      jitter=jitter, direction=direction)

    def partition(self, a: str, b: str) -> None:
        """Cut hosts or networks ``a`` and ``b`` from each other, both ways, established connections too."""
        from .core import faults

        faults.partition(self.name, a, b, self.drivers)

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """Remove the partition between ``a`` and ``b``; every partition when none is given."""
        from .core import faults

        faults.heal(self.name, a, b, self.drivers)


def observe(drivers: Drivers, lab: str) -> Observed:
    """The wiring that exists: named namespaces, nslab's bridges, this lab's host veths."""
    owned = drivers.kernel.owned_links()
    host_veths = []
    for link in owned:
        owner = parse_owner(link.alias)
        if owner is not None and owner.lab == lab and owner.kind == "host":
            host_veths.append(link.name)
    return Observed(
        namespaces=drivers.kernel.named_namespaces(),
        bridges=frozenset(lk.name for lk in owned if lk.kind == "bridge"),
        host_veths=frozenset(host_veths),
    )


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    """Sorted by line (problems without one last), each once."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line is None, p.line or 0))


def _problem_error(problems: list[Problem], parsed: spec.Parsed | None) -> UserError:
    from .errors import SpecError

    return SpecError(problems) if parsed is not None and parsed.problems else ResolveError(problems)


def _other_labs(name: str) -> list[state.LabState]:
    """The other labs that are up (a damaged record is left out: it must not block this lab)."""
    return [s for s in (state.LabState.load_or_none(n) for n in state.lab_names() if n != name) if s is not None]


def finish_interrupted_up(name: str, drivers: Drivers, recorded: state.LabState | None) -> None:
    """An ``up`` of this lab that was killed left an intent: remove what it made that the state does not
    record (everything, for a lab that was not up before), so this run starts from a known machine."""
    namespaces, bridges = state.read_intent(name)
    if not namespaces and not bridges:
        return
    if recorded is None:
        failures = teardown(plan_teardown(name, drivers, None, _marked(drivers, name)), drivers)
    else:
        known_ns = {h.namespace for h in recorded.lab.hosts.values()}
        known_br = {n.bridge for n in recorded.lab.networks.values()}
        present = {lk.name for lk in drivers.kernel.owned_links()}
        stray_ns = tuple(n for n in namespaces if n not in known_ns and n in drivers.kernel.named_namespaces())
        stray_br = [b for b in bridges if b not in known_br and b in present]
        failures = drivers.kernel.remove_namespaces(list(stray_ns)) + drivers.kernel.remove_links(stray_br)
    if failures:
        raise TeardownError(failures)
    state.clear_intent(name)


# ----------------------------------------------------------------------------------------------
# Operations by lab name (they work from recorded state, without the lab file)
# ----------------------------------------------------------------------------------------------


class _Marked(Value):
    """What the kernel shows of a lab by its ownership marks."""

    bridges: set[str] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)  # named, with a marked host veth
    orphans: list[str] = field(default_factory=list)  # host veths whose namespace lost its name

    def __bool__(self) -> bool:
        return bool(self.bridges or self.namespaces or self.orphans)


def _marked(drivers: Drivers, name: str) -> _Marked:
    """The lab's objects by their marks, and by the intent of an ``up`` that was killed (a link it made may
    carry nslab's link group but no alias yet; a namespace it made may have no veth yet)."""
    from .naming import namespace_name

    found = _Marked()
    veths: dict[str, list[str]] = {}
    intended_ns, intended_br = state.read_intent(name)
    for link in drivers.kernel.owned_links():
        owner = parse_owner(link.alias)
        if owner is None:
            if link.name in intended_br and link.kind == "bridge":
                found.bridges.add(link.name)
            continue
        if owner.lab != name:
            continue
        if owner.kind == "net" and link.kind == "bridge":
            found.bridges.add(link.name)
        elif owner.kind == "host":
            veths.setdefault(namespace_name(name, owner.name), []).append(link.name)
    named = drivers.kernel.named_namespaces()
    found.namespaces = (set(veths) | set(intended_ns)) & named
    found.orphans = [v for ns, vs in veths.items() if ns not in named for v in vs]
    return found


def plan_teardown(name: str, drivers: Drivers, recorded: state.LabState | None, marked: _Marked) -> Plan:
    """Everything lab ``name`` made: features' ``before`` (services first), the wiring, features' ``after``."""
    lab = recorded.lab if recorded else None
    base = lab or ResolvedLab(name=name, source="", networks={}, hosts={})
    wiring = plan_down(base, marked.namespaces, marked.bridges) if (lab or marked) else Plan()
    namespaces = sorted({h.namespace for h in base.hosts.values()} | marked.namespaces)
    before: list[Action] = []
    after: list[Action] = []
    others = _other_labs(name)
    for module in reversed(features.modules()):
        record = recorded.extra.get(module.KEY) if recorded else None
        feature_plan = module.plan_down(features.DownContext(name, lab, record, others, namespaces, drivers))
        before += feature_plan.before
        after = feature_plan.after + after
    # The bridges are deleted in a worker thread meanwhile: wait for them last, the rest overlaps it.
    awaiting = wiring.of_type(AwaitBridges)
    rest = [a for a in wiring.actions if not isinstance(a, AwaitBridges)]
    return Plan(before) + Plan(rest) + Plan(after) + Plan(awaiting)


def down(name: str, drivers: Drivers | None = None) -> bool:
    """Remove everything lab ``name`` made, also objects found only by their ownership marks.

    Goes on past failures and raises TeardownError listing all of them. Returns False if there was
    nothing to remove. Idempotent.
    """
    own = drivers is None
    drivers = drivers or Drivers.live()
    try:
        with state.machine_lock():
            recorded = state.LabState.load_or_none(name)  # a damaged record: the marks and intent still tell
            with drivers.kernel.observing():
                marked = _marked(drivers, name)
            # Without state (gc): veths whose namespace lost its name but lives on (a process still in it, after
            # `ip netns del`) will not go by themselves. With state they can only be dying: leave them.
            if marked.orphans and recorded is None:
                failures = drivers.kernel.clear_stale_links(marked.orphans)
                if failures:
                    raise TeardownError(failures)
            failures = teardown(plan_teardown(name, drivers, recorded, marked), drivers)
            if failures:
                raise TeardownError(failures)
            if recorded is None and not marked and not os.path.exists(paths.lab_dir(name)):
                return False
            state.remove(name)
            return True
    finally:
        if own:
            drivers.close()


def find_host(host: str, lab: str | None = None) -> tuple[str, str]:
    """``[LAB/]HOST`` -> (lab, host); HOST alone must be unique among the labs that are up."""
    from .ns.targets import lab_host

    target = lab_host(f"{lab}/{host}" if lab else host)
    assert target.lab is not None and target.host is not None  # a lab host target names both
    return target.lab, target.host


def exec_host(lab: str, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` inside ``host`` of lab ``lab`` (network, hostname, /etc/netns files); the caller's
    own namespaces never change (see :func:`nslab.ns.nsenter.spawn_in_target`)."""
    from .ns.targets import resolve

    return nsenter.run_in_target(resolve(f"{lab}/{host}"), argv, **kwargs)


def status(name: str | None = None, drivers: Drivers | None = None) -> dict[str, Any]:
    """The documented ``status --json`` document: labs, hosts, namespaces, interfaces, addresses, routes."""
    from .core.status import lab_status

    states: list[state.LabState | None] = []
    broken: list[str] = []
    if name:
        states = [state.LabState.load(name)]
        if states[0] is None:
            raise TargetError(f"no lab '{name}' is up")
    else:
        from .errors import StateError

        for lab_name in state.lab_names():  # each record read once (a big lab's takes a while)
            try:
                states.append(state.LabState.load(lab_name))
            except StateError as exc:
                broken.append(str(exc))
    doc: dict[str, Any] = {"version": 1, "labs": []}
    if broken:
        doc["damaged"] = broken  # labs whose record cannot be read: one line each, with what to do
    if not any(states):
        return doc  # nothing to look at: no drivers (nor root) needed
    own = drivers is None
    drivers = drivers or Drivers.live()
    try:
        with drivers.kernel.observing():
            doc["labs"] = [lab_status(st, drivers) for st in states if st is not None]
        return doc
    finally:
        if own:
            drivers.close()


__all__ = ["Lab", "UpResult", "down", "exec_host", "find_host", "status", "NslabError"]
