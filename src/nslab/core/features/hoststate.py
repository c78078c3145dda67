"""Feature 'hoststate' (see features/__init__.py): hosts stopped on purpose, and hosts of the file not started.

``nslab stop LAB/HOST`` stops the host's services (the lab's supervisor is handed a config without them: the
other services run on, same PIDs) and puts every interface of the host down at both ends, as ``nslab link
LAB/HOST down`` does, so ``check`` expects it unreachable. ``nslab start`` brings the interfaces back up (not
those put down with ``nslab link``, nor a link to another stopped host) and starts its services; ``nslab
restart`` stops and starts its services (new PIDs), and starts a stopped host.

A container host's container is stopped too (``docker stop``: its filesystem stays; its namespace keeps its
name, and the host's interfaces, down). It comes back in a new network namespace: ``start`` and ``restart``
leave it stopped and not meant to be, which is drift (features/containers.py), and the caller then converges the
lab as recorded (lifecycle.change_hosts): the wiring starts the container again and remakes the host as for
any host made again (its name on the new namespace, interfaces, addresses, routes, links, /etc files). The record,
``{"stopped": [...], "not_started": [...]}``, makes

- ``status`` say ``stopped`` (not drift: its interfaces are meant down, as :func:`meant_down` tells drift.py and
  tools/reach.py),
- ``up`` keep a stopped host stopped: services skip it (``UpContext.stopped``), a recreated one goes down again.

``up --only HOST,..`` and ``up --profile NAME`` (hosts with ``profiles:`` come up only with one of theirs) bring
up a subset (:func:`select`): the chosen hosts and the networks and links between them; the hosts up already stay
as they are. The rest is recorded as ``not_started``: absent from the recorded lab, so drift and ``check`` do not
see them, and ``status`` lists them as ``not started``.

Replaces: ``kill`` of a host's processes and ``ip -n NS link set IF down|up`` by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ...errors import TargetError
from ...values import Value, field, replace
from . import DownContext, FeaturePlan, UpContext, links

if TYPE_CHECKING:
    from ...drivers import Drivers
    from ...model import Host, Lab, Network
    from ..plan import Action
    from ..state import LabState

KEY = "hoststate"
STATUS_KEY = "host_state"


class HostStateRecord(Value):
    stopped: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"stopped": self.stopped, "not_started": self.not_started}

    @classmethod
    def from_json(cls, data: Any) -> HostStateRecord:
        data = data if isinstance(data, dict) else {}
        return cls([str(h) for h in data.get("stopped", [])], [str(h) for h in data.get("not_started", [])])


def stopped(record: Any) -> frozenset[str]:
    return frozenset(HostStateRecord.from_json(record).stopped)


def meant_down(lab: Lab, record: Any) -> set[tuple[str, str]]:
    """Every (host, interface) down because a host is stopped: its own and the other end of its links."""
    entries = [[h, i.name] for h in stopped(record) if h in lab.hosts for i in lab.hosts[h].interfaces]
    return links.down_interfaces(lab, {"down": entries})


# --- subsets -------------------------------------------------------------------------------------------------
def select(lab: Lab, recorded: Lab | None, only: Iterable[str] | None, profiles: Iterable[str]
           ) -> tuple[Lab, frozenset[str]]:
    """The part of ``lab`` this ``up`` brings up, and the hosts it leaves out (not started): with ``only``
    those hosts, else the hosts without ``profiles:`` and those with one of ``profiles``; in both cases also
    the hosts up already (a later ``up`` adds hosts, it never takes one away that the file still has)."""
    only = list(only) if only is not None else None
    unknown = [h for h in only or () if h not in lab.hosts]
    if unknown:
        raise TargetError(f"lab '{lab.name}' has no host {', '.join(repr(h) for h in unknown)} "
                          f"(it has: {', '.join(lab.hosts)})")
    up = set(recorded.hosts) if recorded is not None else set()
    keep = {h.name for h in lab.hosts.values() if h.name in up or _chosen(h, only, set(profiles))}
    left_out = frozenset(h for h in lab.hosts if h not in keep)
    return (subset(lab, keep) if left_out else lab), left_out


def _chosen(host: Host, only: list[str] | None, profiles: set[str]) -> bool:
    if only is not None:
        return host.name in only
    return not host.profiles or bool(profiles & set(host.profiles))


def subset(lab: Lab, keep: set[str]) -> Lab:
    """``lab`` with only the hosts ``keep``, the networks they are on, the links and partitions between them (a
    lab across machines: also the links from a kept host to a host on another machine)."""
    kept_links = [n for n, lk in enumerate(lab.links) if _ends_kept(lk.a, lk.b, keep, lab.remote)]
    index = {old: new for new, old in enumerate(kept_links)}
    hosts = {name: _host_subset(h, index) for name, h in lab.hosts.items() if name in keep}
    used = {i.network for h in hosts.values() for i in h.interfaces if i.network}
    sides = set(hosts) | used  # a partition of the file holds once both its sides are up
    return replace(lab, hosts=hosts, networks={n: net for n, net in lab.networks.items() if n in used},
                   remote_networks=_networks_away(lab, used),
                   links=tuple(lab.links[n] for n in kept_links),
                   partitions=tuple(p for p in lab.partitions if set(p) <= sides))


def _networks_away(lab: Lab, used: set[str]) -> Mapping[str, Network]:
    """Across machines, the networks of the lab not built here (those left out by the subset too): still named."""
    if lab.machine is None:
        return lab.remote_networks
    return {**lab.remote_networks, **{n: net for n, net in lab.networks.items() if n not in used}}


def _ends_kept(a: str, b: str, keep: set[str], remote: Mapping[str, Host]) -> bool:
    return all(end in keep or end in remote for end in (a, b))


def _host_subset(host: Host, index: dict[int, int]) -> Host:
    """The host without its interfaces to hosts left out (and the routes through them)."""
    interfaces = tuple(i if i.link is None else replace(i, link=index[i.link]) for i in host.interfaces
                       if i.link is None or i.link in index)
    if len(interfaces) == len(host.interfaces):
        return replace(host, interfaces=interfaces)
    nets = [i.address.network for i in interfaces] + [i.address6.network for i in interfaces if i.address6]
    routes = tuple(r for r in host.routes if any(r.via in n for n in nets))
    return replace(host, interfaces=interfaces, routes=routes)


# --- plans ---------------------------------------------------------------------------------------------------
def plan_up(ctx: UpContext) -> FeaturePlan:
    from ..wiring import SetLinkState

    lab = ctx.lab
    kept = sorted(h for h in ctx.stopped if h in lab.hosts)
    # A stopped host the wiring recreates (or whose link peer it recreates) comes up with its interfaces up.
    recreated = {lab.hosts[h].namespace for h in ctx.recreated if h in lab.hosts}
    again = [e for h in kept for i in lab.hosts[h].interfaces for e in links.ends(lab, h, i.name)
             if {ns for ns, _ in links.ends(lab, h, i.name)} & recreated]
    after: list[Action] = [SetLinkState(tuple(dict.fromkeys(again)), False)] if again else []
    return FeaturePlan(after=after, record=HostStateRecord(kept, sorted(ctx.not_started)))


def plan_down(ctx: DownContext) -> FeaturePlan:
    return FeaturePlan()


def status(lab: Lab, record: Any, drivers: Drivers) -> dict[str, Any]:
    found = HostStateRecord.from_json(record)
    return {"stopped": found.stopped, "not_started": found.not_started}


# --- stop, start, restart ------------------------------------------------------------------------------------
def change(name: str, hosts: list[str], verb: str, drivers: Drivers) -> list[str]:
    """``nslab stop|start|restart LAB/HOST,..``: services and interfaces of ``hosts`` (and containers stopped),
    one undo journal, then the record; returns the container hosts to start again (the caller converges the
    lab, which starts them and wires them anew)."""
    from .. import state
    from ..apply import apply, rollback
    from ..plan import Plan

    with state.machine_lock():
        st = state.LabState.load(name)
        if st is None:
            raise TargetError(f"no lab '{name}' is up")
        _check(st.lab, hosts)
        record = HostStateRecord.from_json(st.extra.get(KEY))
        before = set(record.stopped)
        after = before | set(hosts) if verb == "stop" else before - set(hosts)
        first = after | set(hosts) if verb in ("stop", "restart") else before
        journal: list[Action] = []
        try:
            journal += _services(st, first, drivers)  # (stop: services go before the interfaces)
            journal += apply(Plan(_interfaces(st, before, after)), drivers)
            journal += apply(Plan(_containers(st, hosts if verb != "start" else [], before)), drivers)
            journal += _services(st, after, drivers)  # (start, restart: after the interfaces are up)
        except BaseException:
            rollback(journal, drivers)
            raise
        record.stopped = sorted(after)
        st.extra[KEY] = record.to_json()
        resumed = _record_containers(st, hosts, after)
        st.save()
    from ..events import emit

    for host in hosts:  # (`restart`: its services stopped, then started)
        for event in {"stop": ["stop"], "start": ["start"], "restart": ["stop", "start"]}[verb]:
            emit(name, event, host)
    return resumed


def _check(lab: Lab, hosts: list[str]) -> None:
    unknown = [h for h in hosts if h not in lab.hosts]
    if unknown:
        raise TargetError(f"lab '{lab.name}' has no host {', '.join(repr(h) for h in unknown)} "
                          f"(it has: {', '.join(lab.hosts)})")


def _services(st: LabState, stopped_hosts: set[str], drivers: Drivers) -> list[Action]:
    """The lab's services as they run with ``stopped_hosts`` stopped (services.py plans it as ``up`` does),
    applied; the services record follows."""
    from .. import load
    from ..apply import apply
    from ..plan import Plan
    from . import services

    ctx = UpContext(lab=st.lab, recorded=st.lab, record=st.extra.get(services.KEY),
                    others=load.other_labs(st.lab.name), recreated=frozenset(), new_bridges=frozenset(),
                    drivers=drivers, stopped=frozenset(stopped_hosts))
    planned = services.plan_up(ctx)
    journal = apply(Plan(planned.before + planned.after), drivers)
    st.extra[services.KEY] = planned.record.to_json()
    return journal


def _interfaces(st: LabState, before: set[str], after: set[str]) -> list[Action]:
    """Interfaces of hosts that stop go down at both ends; of hosts that start, up (but not those meant down:
    put down with ``nslab link``, or a link to a host still stopped), with their default routes."""
    from ..wiring import SetLinkState

    lab = st.lab
    down = [e for h in sorted(after - before) for i in lab.hosts[h].interfaces for e in links.ends(lab, h, i.name)]
    meant = links.down_interfaces(lab, st.extra.get(links.KEY)) | meant_down(lab, {"stopped": sorted(after)})
    starting = [(h, i.name) for h in sorted(before - after) for i in lab.hosts[h].interfaces
                if (h, i.name) not in meant and lab.hosts[h].container is None]  # (a container's: wired anew)
    up = [e for h, i in starting for e in links.ends(lab, h, i)]
    routes = tuple(r for h, i in starting for r in links.restored_routes(lab, lab.hosts[h], i))
    actions: list[Action] = []
    if down:
        actions.append(SetLinkState(tuple(dict.fromkeys(down)), False))
    if up:
        actions.append(SetLinkState(tuple(dict.fromkeys(up)), True, routes))
    return actions


def _containers(st: LabState, hosts: list[str], before: set[str]) -> list[Action]:
    """``docker stop`` of the running container hosts among ``hosts`` (after their interfaces went down):
    ``stop`` keeps them so, ``restart`` has them started again by the converge that follows."""
    from .containers import StopContainers

    lab = st.lab
    running = tuple(lab.hosts[h] for h in hosts if lab.hosts[h].container is not None and h not in before)
    return [StopContainers(lab, running)] if running else []


def _record_containers(st: LabState, hosts: list[str], stopped_hosts: set[str]) -> list[str]:
    """The containers record's stopped hosts: ``stopped_hosts``' containers. Returns the container hosts among
    ``hosts`` that are to run (``start``, ``restart``): their containers are stopped, and no longer meant to be."""
    from . import containers

    record = containers.ContainersRecord.from_json(st.extra.get(containers.KEY))
    record.stopped = sorted(h for h in stopped_hosts if h in record.hosts)
    st.extra[containers.KEY] = record.to_json()
    return [h for h in hosts if h in record.hosts and h not in stopped_hosts]
