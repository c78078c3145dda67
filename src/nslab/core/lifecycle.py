"""A lab's life on the machine: ``up`` (and converge), ``down`` and ``status``, each in one fixed order.

    up:   lock -> read state -> finish an interrupted up -> resolve and validate (load.py) -> observe -> plan
          (features' ``before``, wiring, features' ``after``) -> apply with one undo journal -> save state
    down: lock -> read state + ownership marks -> plan the teardown the same way -> run it past failures ->
          forget the state

``down`` and ``status`` work by lab name, from the recorded state, without the lab file. Nothing here talks to
the kernel: everything goes through the :class:`~nslab.drivers.Drivers` bundle, which unit tests replace with
fakes (``drivers.fake.fake_drivers()``). lab.py is the public face of these functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .. import paths
from ..drivers import Drivers
from ..errors import ConflictError, StaleKeptForm, TeardownError
from ..model import Lab
from ..naming import parse_owner
from ..values import Value, field
from . import features, load, state
from .apply import apply, rollback, teardown
from .overlay import AddOverlay, spanning, vxlan_name
from .plan import Action, Plan
from .wiring import AddBridges, AddHosts, AwaitBridges, AwaitLinks, Observed, plan_down, plan_up

if TYPE_CHECKING:
    from .load import LabFile

Progress = Callable[[int, int, str], None]
T = TypeVar("T")


class UpResult(Value):
    lab: Lab
    plan: Plan
    applied: bool
    previous: Lab | None = None  # the lab as it was up before (None: a new lab)
    warnings: tuple[str, ...] = ()  # every warning of the features (e.g. the FORWARD policy)
    repairs: list[str] = field(default_factory=list)  # drift this run repairs (see drift.py)

    def commands(self) -> list[str]:
        """The whole change as commands a person would type (``up --dry-run``)."""
        return self.plan.commands()

    def changes(self) -> list[str]:
        """What this ``up`` changes, one line each: hosts, networks and links added, removed or changed (a changed
        host is made again), then what each feature does (firewall, services restarted...)."""
        before = self.previous or Lab(name=self.lab.name, source="", networks={}, hosts={})
        remade = {h.name for a in self.plan.of_type(AddHosts) for h in a.hosts}
        lines = _named_changes("network", before.networks, self.lab.networks, lambda old, new: old != new)
        # (what a host's features ask is each feature's line below)
        lines += _named_changes("host", before.hosts, self.lab.hosts,
                                lambda old, new: old.wiring_differs(new) or new.name in remade)
        links = {(lk.a, lk.b) for lk in self.lab.links}
        was = {(lk.a, lk.b) for lk in before.links}
        lines += [f"added link {a}-{b}" for a, b in sorted(links - was)]
        lines += [f"removed link {a}-{b}" for a, b in sorted(was - links)]
        lines += [a.summary() for a in self.plan.actions if type(a).__module__.startswith("nslab.core.features")]
        return lines


def _named_changes(kind: str, old: Mapping[str, T], new: Mapping[str, T], changed: Callable[[T, T], bool]
                   ) -> list[str]:
    lines = [f"added {kind} {name}" for name in new if name not in old]
    lines += [f"removed {kind} {name}" for name in old if name not in new]
    return lines + [f"changed {kind} {name}" for name, value in new.items()
                    if name in old and changed(old[name], value)]


class Planned(Value):
    """The desired lab, the plan that brings the machine there, the records to keep once it is applied, and
    the drift it repairs on the way."""

    lab: Lab
    plan: Plan
    records: dict[str, Any]
    repairs: list[str]


# --- up ------------------------------------------------------------------------------------------------------
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


class Subset(Value):
    """Which hosts of the file an ``up`` brings up (features/hoststate.py ``select``): ``only`` these (None: no
    such limit), hosts with ``profiles:`` only with one of ``profiles``."""

    only: tuple[str, ...] | None = None
    profiles: tuple[str, ...] = ()


def plan(lab_file: LabFile, drivers: Drivers, recorded: state.LabState | None, subset: Subset | None = None,
         machine: str | None = None) -> Planned:
    """Resolve and validate ``lab_file`` (every problem raised at once), then plan the machine's change (a lab
    across machines: this machine's part, ``machine`` or the one found, see load.validate)."""
    from .features import hoststate

    subset = subset or Subset()
    desired, not_started = hoststate.select(load.resolved(lab_file, drivers, recorded, machine),
                                            recorded.lab if recorded else None, subset.only, subset.profiles)
    return _planned(desired, not_started, drivers, recorded)


def _planned(desired: Lab, not_started: frozenset[str], drivers: Drivers, recorded: state.LabState | None
             ) -> Planned:
    """The plan that takes the machine to ``desired`` (hosts ``not_started`` left out), from ``recorded``."""
    from .features import hoststate

    observed = observe(drivers, desired.name)
    repairs: list[str] = []
    if recorded is not None:  # what drifted from the lab as made is repaired on the way
        from .drift import lab_drift, with_repairs

        found = lab_drift(recorded, drivers)
        observed, repairs = with_repairs(observed, found), [d.text for d in found]
    wiring = plan_up(desired, recorded.lab if recorded else None, observed)
    ctx = features.UpContext(
        lab=desired,
        recorded=recorded.lab if recorded else None,
        record=None,
        others=load.other_labs(desired.name),
        recreated=frozenset(h.name for a in wiring.of_type(AddHosts) for h in a.hosts),
        new_bridges=frozenset(n.bridge for a in wiring.of_type(AddBridges) for n in a.networks),
        drivers=drivers,
        stopped=hoststate.stopped(recorded.extra.get(hoststate.KEY)) if recorded else frozenset(),
        not_started=not_started,
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
    return Planned(desired, Plan(before) + wiring + Plan(after), records, repairs)


def up(lab_file: LabFile, drivers: Drivers | None = None, dry_run: bool = False,
       progress: Progress | None = None, subset: Subset | None = None, machine: str | None = None) -> UpResult:
    """Bring the lab up, or converge it to the file if it is up already. Idempotent. If anything fails,
    everything this run did is undone: the lab that was up stays as it was; a new lab leaves nothing.
    ``machine``: of a lab across machines, the part to build (None: the recorded one, else the machine whose
    address is local)."""
    own = drivers is None
    drivers = drivers or Drivers.live()
    try:
        with state.machine_lock():
            recorded = state.LabState.load(lab_file.name)
            _same_machine(recorded, machine, up=True)
            if recorded and lab_file.path and recorded.lab.source and recorded.lab.source != lab_file.path:
                raise ConflictError(
                    f"lab name '{lab_file.name}' is already used by {recorded.lab.source}; "
                    f"rename this lab or run 'nslab down {lab_file.name}' first"
                )
            if not dry_run:
                finish_interrupted_up(lab_file.name, drivers, recorded)
            with drivers.kernel.observing():  # nothing changes the machine while the plan is made
                planned = plan(lab_file, drivers, recorded, subset, machine)
            previous = recorded.lab if recorded else None
            warnings = tuple(w for r in planned.records.values() for w in getattr(r, "warnings", ()))
            if not dry_run:
                _apply(drivers, planned, recorded, progress)
                _repaired_events(planned)
            applied = bool(planned.plan) and not dry_run
            return UpResult(planned.lab, planned.plan, applied, previous, warnings, list(planned.repairs))
    finally:
        if own:
            drivers.close()


def _same_machine(recorded: state.LabState | None, machine: str | None, up: bool = False) -> None:
    """``--machine NAME`` for a lab recorded as another machine's part (or as not across machines): refused."""
    if recorded is None or machine is None or recorded.lab.machine == machine:
        return
    from ..errors import MachineError

    was = f"machine {recorded.lab.machine}'s part" if recorded.lab.machine else "not across machines"
    hint = f": 'nslab down {recorded.lab.name}' first" if up else ""
    raise MachineError(f"lab {recorded.lab.name} is up here as {was}, not machine {machine}'s{hint}")


def _repaired_events(planned: Planned) -> None:
    """The drift this ``up`` found, and that it repaired it, in the lab's event stream (core/events.py)."""
    from .events import emit

    for text in planned.repairs:
        emit(planned.lab.name, "drift", None, text=text)
        emit(planned.lab.name, "repaired", None, text=text)


def up_file(path: str, drivers: Drivers | None = None, dry_run: bool = False,
            progress: Progress | None = None, subset: Subset | None = None, machine: str | None = None) -> UpResult:
    """``up`` of the lab file ``path``: from its kept form when that answers for this run, else read the full
    way (``nslab up``); ``subset``: only part of its hosts (``up --only``/``--profile``)."""
    lab_file = load.kept_file(path)
    if lab_file is not None:
        try:
            return up(lab_file, drivers, dry_run, progress, subset, machine)
        except StaleKeptForm:
            pass  # raised before any change (while validating): the full way starts from the same machine
    return up(load.read(path), drivers, dry_run, progress, subset, machine)


def wait_healthy(name: str, timeout: float, poll: float = 0.1) -> dict[str, str]:
    """``up --wait``: until every healthcheck of lab ``name`` passes (its supervisor's status says so), at most
    ``timeout`` seconds. Returns the hosts that are not healthy by then, each with its last probe's output."""
    import time

    from ..drivers import files

    config = files.read_json(paths.supervisor_config(name)) or {}
    hosts = sorted({s["host"] for s in config.get("services", []) if s.get("health")})
    deadline = time.monotonic() + timeout
    while True:
        live = files.read_json(paths.services_status(name)) or {}
        pending = _not_healthy(hosts, live.get("health") or {})
        if not pending or time.monotonic() >= deadline or live.get("stopped"):
            return pending
        time.sleep(poll)


def _not_healthy(hosts: list[str], said: dict[str, Any]) -> dict[str, str]:
    """The ``hosts`` whose health (as the supervisor ``said``) is not healthy, with their last probe's output."""
    out = {}
    for host in hosts:
        entry = said.get(host) or {}
        if entry.get("status") != "healthy":
            out[host] = entry.get("output") or f"still {entry.get('status', 'starting')}, no probe answered"
    return out


def _apply(drivers: Drivers, planned: Planned, recorded: state.LabState | None, progress: Progress | None) -> None:
    """Write the intent, apply the plan, save the state; if any of it fails, nothing this run did stays."""
    name, desired, actions = planned.lab.name, planned.lab, planned.plan
    namespaces = [h.namespace for a in actions.of_type(AddHosts) for h in a.hosts]
    bridges = [n.bridge for a in actions.of_type(AddBridges) for n in a.networks]
    bridges += [vxlan_name(name, n.name) for a in actions.of_type(AddOverlay) for n in a.networks]
    journal: list[Action] = []
    try:
        if actions:
            state.write_intent(name, namespaces, bridges)  # durable before the first kernel change
        journal = apply(actions, drivers, progress)
        extra = {key: record.to_json() for key, record in planned.records.items()}
        if actions or recorded is None or recorded.lab != desired or recorded.extra != extra:
            state.LabState(desired, extra).save()  # (an up that changes nothing leaves the record be)
    except BaseException:
        rollback(journal, drivers)  # (apply rolled its own failure back: then the journal is empty)
        if recorded is None:  # the lab's own directory (hostname tmpfs, logs, intent) goes too
            drivers.uts.drop_dir(paths.uts_dir(name))
            state.remove(name)
        else:
            state.clear_intent(name)
        raise
    state.clear_intent(name)


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
        known_br |= {vxlan_name(name, n.name) for n in spanning(recorded.lab)}
        present = {lk.name for lk in drivers.kernel.owned_links()}
        stray_ns = tuple(n for n in namespaces if n not in known_ns and n in drivers.kernel.named_namespaces())
        stray_br = [b for b in bridges if b not in known_br and b in present]
        # what it borrowed goes back first (a stray bridge would take the addresses moved to it along)
        from .features import external

        failures = external.give_back_interrupted(name, drivers)
        failures += drivers.kernel.remove_namespaces(list(stray_ns)) + drivers.kernel.remove_links(stray_br)
    if failures:
        raise TeardownError(failures)
    state.clear_intent(name)


# --- stop, start, restart one host --------------------------------------------------------------------------
def change_hosts(name: str, hosts: list[str], verb: str, drivers: Drivers) -> None:
    """``nslab stop|start|restart LAB/HOST,..`` (features/hoststate.py); a container host that starts comes
    back in a new network namespace: the lab as recorded is then converged, which starts its container and
    wires the host anew (as ``up`` repairs a container stopped by hand)."""
    from .features import hoststate

    if hoststate.change(name, hosts, verb, drivers):
        converge(name, drivers)


def converge(name: str, drivers: Drivers) -> None:
    """``up`` of lab ``name`` as recorded, no lab file read: what drifted is repaired, nothing else changes."""
    from .features import hoststate
    from .which import not_up

    with state.machine_lock():
        recorded = state.LabState.load(name)
        if recorded is None:
            raise not_up(name)
        finish_interrupted_up(name, drivers, recorded)
        left_out = frozenset(hoststate.HostStateRecord.from_json(recorded.extra.get(hoststate.KEY)).not_started)
        with drivers.kernel.observing():
            planned = _planned(recorded.lab, left_out, drivers, recorded)
        _apply(drivers, planned, recorded, None)
        _repaired_events(planned)


# --- down ----------------------------------------------------------------------------------------------------
class Marked(Value):
    """What the kernel shows of a lab by its ownership marks."""

    bridges: set[str] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)  # named, with a marked host veth
    orphans: list[str] = field(default_factory=list)  # host veths whose namespace lost its name

    def __bool__(self) -> bool:
        return bool(self.bridges or self.namespaces or self.orphans)


def _marked(drivers: Drivers, name: str) -> Marked:
    """The lab's objects by their marks, and by the intent of an ``up`` that was killed (a link it made may
    carry nslab's link group but no alias yet; a namespace it made may have no veth yet)."""
    from ..naming import namespace_name

    found = Marked()
    veths: dict[str, list[str]] = {}
    intended_ns, intended_br = state.read_intent(name)
    for link in drivers.kernel.owned_links():
        owner = parse_owner(link.alias)
        if owner is None:
            if link.name in intended_br and link.kind in ("bridge", "vxlan"):
                found.bridges.add(link.name)
            continue
        if owner.lab != name:
            continue
        if owner.kind == "net" and link.kind in ("bridge", "vxlan"):
            found.bridges.add(link.name)
        elif owner.kind == "host":
            veths.setdefault(namespace_name(name, owner.name), []).append(link.name)
    named = drivers.kernel.named_namespaces()
    found.namespaces = (set(veths) | set(intended_ns)) & named
    found.orphans = [v for ns, vs in veths.items() if ns not in named for v in vs]
    return found


def plan_teardown(name: str, drivers: Drivers, recorded: state.LabState | None, marked: Marked) -> Plan:
    """Everything lab ``name`` made: features' ``before`` (services first), the wiring, features' ``after``."""
    lab = recorded.lab if recorded else None
    base = lab or Lab(name=name, source="", networks={}, hosts={})
    wiring = plan_down(base, marked.namespaces, marked.bridges) if (lab or marked) else Plan()
    namespaces = sorted({h.namespace for h in base.hosts.values()} | marked.namespaces)
    before: list[Action] = []
    after: list[Action] = []
    others = load.other_labs(name)
    for module in reversed(features.modules()):
        record = recorded.extra.get(module.KEY) if recorded else None
        feature_plan = module.plan_down(features.DownContext(name, lab, record, others, namespaces, drivers))
        before += feature_plan.before
        after = feature_plan.after + after
    # The bridges are deleted in a worker thread meanwhile: wait for them last, the rest overlaps it; then for
    # the host veths that go with their namespaces (asynchronously): `down` returns when the lab's links are gone.
    awaiting = wiring.of_type(AwaitBridges)
    rest = [a for a in wiring.actions if not isinstance(a, AwaitBridges)]
    return Plan(before) + Plan(rest) + Plan(after) + Plan(awaiting) + Plan([AwaitLinks(name)] if wiring else [])


def down(name: str, drivers: Drivers | None = None, machine: str | None = None) -> bool:
    """Remove everything lab ``name`` made, also objects found only by their ownership marks (a lab across
    machines: this machine's part; ``machine`` given, it must be the part recorded here).

    Goes on past failures and raises TeardownError listing all of them. Returns False if there was
    nothing to remove. Idempotent.
    """
    own = drivers is None
    drivers = drivers or Drivers.live()
    try:
        with state.machine_lock():
            recorded = state.LabState.load_or_none(name)  # a damaged record: the marks and intent still tell
            _same_machine(recorded, machine)
            with drivers.kernel.observing():
                marked = _marked(drivers, name)
            # Without state (gc): veths whose namespace lost its name but lives on (a process still in it, after
            # `ip netns del`) will not go by themselves. With state they can only be dying: leave them.
            if marked.orphans and recorded is None:
                failures = drivers.kernel.clear_stale_links(marked.orphans)
                if failures:
                    raise TeardownError(failures)
            if recorded is not None:
                _announce_down(name)
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


def _announce_down(name: str) -> None:
    """The intent of this ``down`` (readers say the lab is being changed, not that it drifted); a state
    directory that cannot take it (full) does not stop the ``down``."""
    from ..errors import StateError

    try:
        state.write_intent(name, *state.read_intent(name), command="down")
    except StateError:
        pass


# --- status --------------------------------------------------------------------------------------------------
def status(name: str | None = None, drivers: Drivers | None = None, machine: str | None = None) -> dict[str, Any]:
    """The documented ``status --json`` document: labs, hosts, namespaces, interfaces, addresses, routes
    (``machine``: every lab shown must be up here as that machine's part of a lab across machines)."""
    from .status import lab_status

    building = state.changing_labs(name)  # (labs being made have no state yet: said, not an error)
    states, broken, seen = _states(name, building)
    for st in states:
        _same_machine(st, machine)
    doc: dict[str, Any] = {"version": 1, "labs": []}
    made = {st.lab.name for st in states}
    if set(building) - made:  # labs an nslab process is making (no state yet)
        doc["changing"] = [line for lab, line in building.items() if lab not in made]
    if broken:
        doc["damaged"] = broken  # labs whose record cannot be read: one line each, with what to do
    if not states:
        return doc  # nothing to look at: no drivers (nor root) needed
    own = drivers is None
    drivers = drivers or Drivers.live()
    try:
        with drivers.kernel.observing():  # (the machine's links read once for every lab)
            first = [(st, lab_status(st, drivers)) for st in states]
        found = [_settled(st, seen.get(st.lab.name), lab, drivers) for st, lab in first]
        doc["labs"] = [lab for lab in found if lab is not None]
        return doc
    finally:
        if own:
            drivers.close()


def _states(name: str | None, building: dict[str, str]
            ) -> tuple[list[state.LabState], list[str], dict[str, tuple[int, int] | None]]:
    """(the states of lab ``name`` or of every lab, the damaged ones' lines, which save of each was read)."""
    from ..errors import StateError

    states: list[state.LabState] = []
    broken: list[str] = []
    seen: dict[str, tuple[int, int] | None] = {}
    for lab_name in [name] if name else state.lab_names():  # each record read once (a big lab's takes a while)
        seen[lab_name] = state.identity(lab_name)
        try:
            st = state.LabState.load(lab_name)
        except StateError as exc:
            if name:
                raise
            broken.append(str(exc))
            continue
        if st is not None:
            states.append(st)
        elif name and name not in building:
            from .which import not_up

            raise not_up(name)
    return states, broken, seen


def _settled(st: state.LabState, seen: tuple[int, int] | None, doc: dict[str, Any], drivers: Drivers
             ) -> dict[str, Any] | None:
    """``doc`` (the lab's status as of the save of its state that was read) if that is still the lab's state;
    read again when another nslab process saved it meanwhile (an ``up`` or ``down`` that started and ended
    while the kernel was read: what was seen is half of each); None when the lab went down meanwhile."""
    from .status import lab_status

    for _ in range(3):
        now = state.identity(st.lab.name)
        if now == seen or doc.get("changing"):
            return doc
        fresh = state.LabState.load_or_none(st.lab.name) if now is not None else None
        if fresh is None:
            return None
        st, seen = fresh, now
        with drivers.kernel.observing():
            doc = lab_status(st, drivers)
    return {**doc, "drift": [], "changing": f"lab {st.lab.name} is being changed by another nslab process"}
