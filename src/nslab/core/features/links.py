"""Feature 'links' (see features/__init__.py): interfaces put down on purpose with ``nslab link``.

``nslab link LAB/HOST[:IF] down`` sets both ends of the host's interface down: for a bridge port the
interface inside the host and its machine-side veth, for a point-to-point link the interface at each end.
What was put down is recorded here (``{"down": [[host, interface], ...]}``), so that

- ``status`` shows it (and does not call it drift),
- ``up`` keeps it down (also on a host it recreates) instead of "repairing" it,
- ``nslab link ... up`` brings both ends back up and restores the host's default route when it went through
  that interface (IPv4 drops the routes through an interface that goes down).

Replaces: ``ip -n NS link set IF down|up``, ``ip link set PORT down|up``, ``ip -n NS route replace default``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import TargetError
from ...values import Value, field
from . import DownContext, FeaturePlan, UpContext

if TYPE_CHECKING:
    from ...drivers import Drivers
    from ...model import Host, Lab

KEY = "links"
STATUS_KEY = "link_state"


class LinksRecord(Value):
    down: list[tuple[str, str]] = field(default_factory=list)  # (host, interface) as given to `nslab link`

    def to_json(self) -> dict[str, Any]:
        return {"down": [list(d) for d in self.down]}

    @classmethod
    def from_json(cls, data: Any) -> LinksRecord:
        items = (data or {}).get("down", []) if isinstance(data, dict) else []
        return cls([(str(h), str(i)) for h, i in items])


def _exists(lab: Lab, host: str, iface: str) -> bool:
    return host in lab.hosts and any(i.name == iface for i in lab.hosts[host].interfaces)


def ends(lab: Lab, host: str, iface: str) -> list[tuple[str, str]]:
    """Both ends of a host's interface, as (namespace or '' for the machine, interface)."""
    h = lab.hosts[host]
    i = next(i for i in h.interfaces if i.name == iface)
    if i.link is not None:
        from ..kinds import kind

        lk = lab.links[i.link]
        return kind(lk.kind).ends(lab, lk)
    return [(h.namespace, i.name)] + ([("", i.host_veth)] if i.host_veth else [])


def down_interfaces(lab: Lab, record: Any) -> set[tuple[str, str]]:
    """Every (host, interface) meant to be down: those put down and, for links, the other end too."""
    out: set[tuple[str, str]] = set()
    for host, iface in LinksRecord.from_json(record).down:
        if _exists(lab, host, iface):
            i = next(i for i in lab.hosts[host].interfaces if i.name == iface)
            out.add((host, iface))
            if i.link is not None:
                lk = lab.links[i.link]
                out |= {(lk.a, lk.a_ifname), (lk.b, lk.b_ifname)}
    return out


def restored_routes(lab: Lab, host: Host, iface: str) -> tuple[tuple[str, str], ...]:
    """The host's default routes (IPv4, IPv6), those through ``iface`` (dropped when that interface goes down)."""
    i = next(i for i in host.interfaces if i.name == iface)
    if i.network is None:
        return ()
    net = lab.networks[i.network]
    out: list[tuple[str, str]] = []
    if host.gateway is not None and net.gateway.ip == host.gateway:
        out.append((host.namespace, str(host.gateway)))
    if host.gateway6 is not None and net.gateway6 is not None and net.gateway6.ip == host.gateway6:
        out.append((host.namespace, str(host.gateway6)))
    return tuple(out)


def plan_up(ctx: UpContext) -> FeaturePlan:
    from ..wiring import SetLinkState

    lab = ctx.lab
    kept = [(h, i) for h, i in LinksRecord.from_json(ctx.record).down if _exists(lab, h, i)]
    again: list[tuple[str, str]] = []
    for host, iface in kept:
        # A recreated host (or a link recreated with its peer) comes up with every interface up: down again.
        touched = {e[0] for e in ends(lab, host, iface)} & {lab.hosts[h].namespace for h in ctx.recreated
                                                            if h in lab.hosts}
        if touched:
            again += ends(lab, host, iface)
    after = [SetLinkState(tuple(dict.fromkeys(again)), False)] if again else []
    return FeaturePlan(after=list(after), record=LinksRecord(kept))


def plan_down(ctx: DownContext) -> FeaturePlan:
    return FeaturePlan()


def status(lab: Lab, record: Any, drivers: Drivers) -> dict[str, Any]:
    return {"down": [f"{h}:{i}" for h, i in LinksRecord.from_json(record).down]}


def interfaces_of(lab: Lab, host: str, iface: str | None) -> list[str]:
    """The interfaces ``HOST[:IF]`` names: IF, or every interface of the host (UserError-style TargetError)."""
    if host not in lab.hosts:
        from ..which import no_host

        raise no_host(lab.name, host, lab.hosts)
    names = [i.name for i in lab.hosts[host].interfaces]
    if iface is None:
        if not names:
            raise TargetError(f"host '{host}' of lab '{lab.name}' has no interface but lo")
        return names
    if iface not in names:
        raise TargetError(f"host '{host}' of lab '{lab.name}' has no interface '{iface}' "
                          f"(it has: {', '.join(names) or 'none'})")
    return [iface]


def set_link(name: str, host: str, iface: str | None, up: bool, drivers: Drivers) -> list[str]:
    """``nslab link LAB/HOST[:IF] up|down``: set both ends, record the intent; returns ``HOST:IF`` changed."""
    from .. import state
    from ..apply import apply
    from ..plan import Plan
    from ..wiring import SetLinkState

    with state.machine_lock():
        st = state.LabState.load(name)
        if st is None:
            from ..which import not_up

            raise not_up(name)
        lab = st.lab
        names = interfaces_of(lab, host, iface)
        record = LinksRecord.from_json(st.extra.get(KEY))
        wanted = list(dict.fromkeys(e for i in names for e in ends(lab, host, i)))
        # Entries for the same interfaces go (a link may have been put down from its other end).
        down = [d for d in record.down if _exists(lab, *d) and not set(ends(lab, *d)) & set(wanted)]
        routes: tuple[tuple[str, str], ...] = ()
        if up:
            routes = tuple(r for h, i in _interfaces_at(lab, wanted) for r in restored_routes(lab, lab.hosts[h], i))
        else:
            down += [(host, i) for i in names]
        apply(Plan([SetLinkState(tuple(wanted), up, routes)]), drivers)
        st.extra[KEY] = LinksRecord(down).to_json()
        st.save()
        _events(name, host, names, up)
        return [f"{host}:{i}" for i in names]


def _events(lab: str, host: str, names: list[str], up: bool) -> None:
    from ..events import emit

    for iface in names:
        emit(lab, "link-up" if up else "link-down", host, interface=iface)


def _interfaces_at(lab: Lab, wanted: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (host, interface) inside hosts among ``wanted`` ends (both ends of a link)."""
    by_namespace = {h.namespace: h.name for h in lab.hosts.values()}
    return [(by_namespace[ns], name) for ns, name in wanted if ns in by_namespace]
