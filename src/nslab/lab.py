"""The typed Python API of a lab: load, up, down, status, exec. The CLI is a thin layer over this.

Owns the order of one operation: lock -> read state -> observe the machine -> resolve -> plan -> apply ->
write state. Nothing here talks to the kernel directly; pyroute2 is imported only when a method needs the
kernel (``exec`` never does).

    >>> with Lab.load("nslab.yaml") as lab:          # up on enter, down on exit
    ...     print(lab.exec("web1", ["ip", "-br", "addr"], capture_output=True).stdout)
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import nsenter, state
from .errors import ConflictError, KernelError, NslabError, ResolveError, TargetError, TeardownError
from .features import features
from .model import OWNER_PREFIX, Occupied
from .model import Lab as ResolvedLab
from .plan import AddHosts, Observed, Plan, RemoveHosts, plan_down, plan_up

if TYPE_CHECKING:  # the spec needs pydantic + yaml (~100 ms): only loading a file pays for it
    from . import spec
    from .targets import Target


@dataclass
class UpResult:
    lab: ResolvedLab
    plan: Plan
    applied: bool
    extra_commands: list[str] = dataclasses.field(default_factory=list)

    def commands(self) -> list[str]:
        """The whole change as commands a person would type (``up --dry-run``)."""
        return self.plan.commands() + self.extra_commands


def _kernel() -> Any:
    from .drivers.netlink import NetlinkKernel
    from .linux import require_root

    require_root()
    return NetlinkKernel()


class Lab:
    """A lab file, loaded and validated (nothing on the machine changes until :meth:`up`)."""

    def __init__(self, lab_spec: spec.LabSpec, source: spec.SourceMap | None = None, path: str = ""):
        from . import spec

        self.spec = lab_spec
        self.source_map = source or spec.SourceMap()
        self.path = path
        self._targets: dict[str, Target] = {}  # host -> where its namespaces are (Lab.exec)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Lab:
        from . import spec

        absolute = str(Path(path).resolve())
        lab_spec, source = spec.load(path)
        lab = cls(lab_spec, source, absolute)
        lab._display_path = str(path)
        return lab

    @classmethod
    def from_text(cls, text: str, path: str = "") -> Lab:
        from . import spec

        lab_spec, source = spec.parse(text, path or "<string>")
        return cls(lab_spec, source, str(Path(path).resolve()) if path else "")

    @property
    def name(self) -> str:
        return self.spec.name

    def _file_label(self) -> str:
        return getattr(self, "_display_path", self.path)

    # ------------------------------------------------------------------------------------------
    def resolve(self, kernel: Any | None = None, recorded: state.LabState | None = None) -> ResolvedLab:
        """Resolve against the machine (its routes/addresses and the other labs), without changing it."""
        from .resolve import resolve

        occupied: list[Occupied] = []
        if kernel is not None:
            occupied += [Occupied(net, who) for net, who in kernel.machine_networks()]
        others = [s for s in (state.LabState.load(n) for n in state.lab_names() if n != self.name) if s is not None]
        for other in others:
            for n in other.lab.networks.values():
                occupied.append(Occupied(n.subnet, f"network '{n.name}' of lab '{other.lab.name}'"))
            for lk in other.lab.links:
                occupied.append(Occupied(lk.subnet, f"a link of lab '{other.lab.name}'"))
        previous = recorded.lab.allocations() if recorded else None
        resolved = resolve(self.spec, self.source_map, self._file_label(), occupied, previous)
        resolved = dataclasses.replace(resolved, source=self.path)
        problems = [p for f in features() for p in f.validate(resolved, self.source_map, self._file_label(), others)]
        if problems:
            raise ResolveError(problems)
        return resolved

    def up(self, dry_run: bool = False, progress: Any = None) -> UpResult:
        """Bring the lab up, or converge it to the file if it is up already. Idempotent."""
        from .apply import Progress, apply_up

        kernel = _kernel()
        try:
            with state.machine_lock():
                recorded = state.LabState.load(self.name)
                if recorded and self.path and recorded.lab.source and recorded.lab.source != self.path:
                    raise ConflictError(
                        f"lab name '{self.name}' is already used by {recorded.lab.source}; "
                        f"rename this lab or run 'nslab down {self.name}' first"
                    )
                desired = self.resolve(kernel, recorded)
                owned = kernel.owned_links()
                host_mark = f"{OWNER_PREFIX}{self.name}:host:"
                observed = Observed(
                    namespaces=kernel.named_namespaces(),
                    bridges=frozenset(lk.name for lk in owned if lk.kind == "bridge"),
                    host_veths=frozenset(lk.name for lk in owned if lk.alias.startswith(host_mark)),
                )
                plan = plan_up(desired, recorded.lab if recorded else None, observed)
                extra = dict(recorded.extra) if recorded else {}
                if dry_run:
                    feature_commands = [c for f in features() for c in f.commands(desired, extra.get(f.KEY))]
                    return UpResult(desired, plan, applied=False, extra_commands=feature_commands)
                try:
                    apply_up(plan, desired, recorded.lab if recorded else None, kernel, Progress(progress))
                except KernelError as exc:
                    current = getattr(exc, "current", None)
                    if current is not None and (current.hosts or current.networks):
                        state.LabState(current, extra).save()
                    elif recorded is None:
                        state.remove(self.name)
                    raise
                # Save the wiring first: if a feature fails below, `down` still knows every namespace.
                state.LabState(desired, extra).save()
                recreated = {h.name for a in plan.actions if isinstance(a, AddHosts) for h in a.hosts}
                try:
                    try:
                        for feature in features():
                            extra[feature.KEY] = feature.up(desired, extra.get(feature.KEY), recreated)
                    finally:  # once, with what every feature that got through recorded (a big lab's state is long)
                        state.LabState(desired, extra).save()
                except NslabError:
                    if recorded is None:  # a fresh lab that cannot come up whole does not stay half-up
                        try:
                            down(self.name)
                        except NslabError:
                            pass
                    raise
                return UpResult(desired, plan, applied=bool(plan) or extra != (recorded.extra if recorded else {}))
        finally:
            kernel.close()

    def down(self) -> None:
        down(self.name)

    def status(self) -> dict[str, Any]:
        return status(self.name)

    def exec(
        self,
        host: str,
        argv: Sequence[str],
        **kwargs: Any,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` inside ``host`` (``subprocess.run`` keywords pass through); returns its result.

        The host's network, hostname and /etc/netns files apply, as with ``nslab exec``; this process stays
        where it is. The host's namespace paths are looked up once per Lab (not per call).
        """
        target = self._targets.get(host)
        if target is None or not os.path.exists(target.net_path):
            from .targets import resolve

            target = self._targets[host] = resolve(f"{self.name}/{host}")
        return nsenter.run_in_target(target, argv, **kwargs)

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


# ----------------------------------------------------------------------------------------------
# Operations by lab name (they work from recorded state, without the lab file)
# ----------------------------------------------------------------------------------------------


def down(name: str) -> bool:
    """Remove everything lab ``name`` made, also objects found only by their ownership marks.

    Goes on past failures and raises TeardownError listing all of them. Returns False if there was
    nothing to remove. Idempotent.
    """
    from .apply import apply_down

    kernel = _kernel()
    try:
        with state.machine_lock():
            recorded = state.LabState.load(name)
            prefix = f"{OWNER_PREFIX}{name}:"
            marked_bridges, marked_namespaces = set(), set()
            host_veths: dict[str, list[str]] = {}
            for lk in kernel.owned_links():
                if not lk.alias.startswith(prefix):
                    continue
                parts = lk.alias[len(prefix) :].split(":")
                if parts[0] == "net" and lk.kind == "bridge":
                    marked_bridges.add(lk.name)
                elif parts[0] == "host" and len(parts) >= 2:
                    host_veths.setdefault(f"{name}-{parts[1]}", []).append(lk.name)
            named = kernel.named_namespaces()
            marked_namespaces = set(host_veths) & named
            # Without state (gc): veths whose namespace lost its name but lives on (a process still in it,
            # after `ip netns del`) will not go by themselves (dying ones are waited for, not deleted one by one).
            # With state they can only be dying: leave them.
            orphans = [] if recorded else [v for ns, vs in host_veths.items() if ns not in named for v in vs]
            if orphans:
                failures = kernel.clear_stale_links(orphans)
                if failures:
                    raise TeardownError(failures)
            if recorded is None and not marked_bridges and not marked_namespaces and not orphans:
                # Features may still hold something (e.g. a firewall chain) after a crash: let them look.
                leftovers = [x for f in features() for x in f.down(name, None, None)]
                if leftovers:
                    raise TeardownError(leftovers)
                return False
            base = recorded.lab if recorded else ResolvedLab(name=name, source="", networks={}, hosts={})
            extra = recorded.extra if recorded else {}
            lab = recorded.lab if recorded else None
            def features_down(before_namespaces: bool) -> list[str]:
                return [
                    failure
                    for f in features()
                    if f.BEFORE_NAMESPACES == before_namespaces
                    for failure in f.down(name, extra.get(f.KEY), lab)
                ]

            plan = plan_down(base, marked_namespaces, marked_bridges)
            doomed = [ns for a in plan.actions if isinstance(a, RemoveHosts) for ns in a.namespaces]

            def before_namespaces() -> list[str]:
                return features_down(True) + _stop_processes_inside(doomed)

            failures = apply_down(plan, kernel, before=before_namespaces, after=lambda: features_down(False))
            if failures:
                raise TeardownError(failures)
            state.remove(name)
            return True
    finally:
        kernel.close()


def _stop_processes_inside(namespaces: list[str]) -> list[str]:
    """What still runs in the lab's hosts after its services stopped (``nslab exec -d``, a shell, the
    children of an interrupted ``nslab run``) is stopped like a container's processes: SIGTERM, then SIGKILL.
    Otherwise it would keep the namespace, and with it the host's veth, alive after ``down``."""
    from .drivers import process

    inodes = set()
    for namespace in namespaces:
        try:
            inodes.add(os.stat(os.path.join(nsenter.NETNS_DIR, namespace)).st_ino)
        except OSError:
            continue
    tracker = process.NamespaceTracker(inodes)
    if not tracker.members():
        return []
    survivors = process.stop_trees([tracker])
    return [f"processes still running inside the lab: {process.describe(p)}" for t in survivors for p in t.members()]


def find_host(host: str, lab: str | None = None) -> tuple[str, str]:
    """``[LAB/]HOST`` -> (lab, host); HOST alone must be unique among the labs that are up."""
    if lab is None and "/" in host:
        lab, host = host.split("/", 1)
    if lab is not None:
        recorded = state.LabState.load(lab)
        if recorded is None:
            raise TargetError(f"no lab '{lab}' is up")
        if host not in recorded.lab.hosts:
            known = ", ".join(recorded.lab.hosts) or "none"
            raise TargetError(f"lab '{lab}' has no host '{host}' (hosts: {known})")
        return lab, host
    owners = [s.lab.name for s in state.all_states() if host in s.lab.hosts]
    if not owners:
        raise TargetError(f"no lab that is up has a host '{host}'")
    if len(owners) > 1:
        raise TargetError(f"host '{host}' is in several labs ({', '.join(owners)}): write LAB/{host}")
    return owners[0], host


def exec_host(lab: str, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run`` inside ``host`` of lab ``lab`` (network, hostname, /etc/netns files); the caller's
    own namespaces never change (see :func:`nslab.nsenter.spawn_in_target`)."""
    from .targets import resolve

    return nsenter.run_in_target(resolve(f"{lab}/{host}"), argv, **kwargs)


def status(name: str | None = None) -> dict[str, Any]:
    """The documented ``status --json`` document: labs, hosts, namespaces, interfaces, addresses, routes."""
    from .drivers import netlink

    states = [state.LabState.load(name)] if name else state.all_states()
    if name and states[0] is None:
        raise TargetError(f"no lab '{name}' is up")
    root = netlink.root_socket()
    try:
        machine_links = {lk.name: lk for lk in netlink.links(root)}
    finally:
        root.close()
    labs = []
    for st in states:
        assert st is not None
        lab = st.lab
        networks = [
            {
                "name": n.name,
                "bridge": n.bridge,
                "subnet": str(n.subnet),
                "gateway": str(n.gateway.ip),
                "internal": n.internal,
                "present": n.bridge in machine_links,
            }
            for n in lab.networks.values()
        ]
        hosts = []
        for h in lab.hosts.values():
            entry: dict[str, Any] = {
                "name": h.name,
                "namespace": h.namespace,
                "hostname": h.hostname,
                "present": False,
                "interfaces": [],
                "routes": [],
            }
            try:
                ns = netlink.open_namespace(h.namespace)
            except NslabError:
                hosts.append(entry)
                continue
            try:
                entry["present"] = True
                wanted = {i.name: i for i in h.interfaces}
                for lk in netlink.links(ns.sock):
                    if lk.name == "lo":
                        continue
                    iface = wanted.get(lk.name)
                    entry["interfaces"].append(
                        {
                            "name": lk.name,
                            "up": lk.up,
                            "addresses": [str(a) for a in lk.addresses if a.version == 4],
                            "network": iface.network if iface else None,
                            "link_peer": _link_peer(lab, h.name, iface.link)
                            if iface and iface.link is not None
                            else None,
                        }
                    )
                entry["routes"] = [
                    {
                        "destination": "default" if r.destination.prefixlen == 0 else str(r.destination),
                        "gateway": r.gateway,
                        "device": r.device,
                    }
                    for r in netlink.routes(ns.sock)
                ]
            finally:
                ns.close()
            hosts.append(entry)
        labs.append(
            {
                "name": lab.name,
                "source": lab.source,
                "networks": networks,
                "hosts": hosts,
                **{f.KEY: f.status(lab, st.extra.get(f.KEY)) for f in features()},
                "links": [
                    {
                        "endpoints": [lk.a, lk.b],
                        "interfaces": [lk.a_ifname, lk.b_ifname],
                        "subnet": str(lk.subnet),
                        "addresses": [str(lk.a_address), str(lk.b_address)],
                    }
                    for lk in lab.links
                ],
            }
        )
    return {"version": 1, "labs": labs}


def _link_peer(lab: ResolvedLab, host: str, index: int) -> str:
    lk = lab.links[index]
    return lk.b if lk.a == host else lk.a
