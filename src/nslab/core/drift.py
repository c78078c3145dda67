"""Drift: what differs between a lab as nslab made it (its recorded state) and the machine now.

Read-only; everything is observed through the drivers. One :class:`Difference` per thing that differs, each
with a one-line text (``status`` prints them, ``status --json`` lists them under ``drift``) and how ``up``
repairs it:

==========  ===================================================================  ===============================
repair      found                                                                ``up`` does
==========  ===================================================================  ===============================
host        namespace gone; an interface, its address or its machine-side port     recreate the host (wiring.py)
            gone; a port no longer attached to its bridge; a container host's
            container not running
link        an end of a point-to-point link or its address gone                    recreate the link
up / down   an interface, port or bridge down that should be up (or up that was    ``ip link set ... up|down``
            put down with ``nslab link``)
route       a host's default route gone (its interface is up)                      ``ip route replace default``
bridge      a network's bridge gone                                                recreate it (and its hosts)
ruleset     nslab's nft table or one of the lab's chains gone                      reload the table (firewall)
services    the lab's supervisor is not running                                    start it (services)
==========  ===================================================================  ===============================

Interfaces put down with ``nslab link`` are intended (features/links.py), not drift. A feature module may
contribute its own checks with a function ``drift(lab, record, drivers) -> list[str]`` (its ``plan_up``
then repairs them).

Replaces: comparing ``ip -n NS -br addr``, ``ip -n NS route``, ``ip link show master BR``, ``nft list table
inet nslab`` and ``ps`` with what the lab file says, by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..values import Value
from . import features

if TYPE_CHECKING:
    from ..drivers import Drivers
    from ..drivers.rtnl import LinkInfo, RouteInfo
    from ..model import Host, Interface, Lab
    from .state import LabState
    from .wiring import Observed

End = tuple[str, str]  # (namespace, or '' for the machine; interface)
#: namespace -> its links and routes (None: no such namespace), as ``Kernel.host_views`` reads them
Views = Mapping[str, "tuple[list[LinkInfo], list[RouteInfo]] | None"]


class Difference(Value):
    text: str
    repair: str  # host | link | up | down | route | bridge | ruleset | services | feature
    host: str = ""  # for host repairs
    link: tuple[str, str, str, str] = ("", "", "", "")  # for link repairs: the link's key
    end: End = ("", "")  # for up/down repairs; for route repairs (namespace, gateway)


def lab_drift(st: LabState, drivers: Drivers, views: Views | None = None) -> list[Difference]:
    """Every difference between lab ``st`` as recorded and the machine (``views``: the hosts' links and routes
    when the caller has just read them, as ``status`` has)."""
    from .features import links

    lab = st.lab
    found = wiring_drift(lab, links.down_interfaces(lab, st.extra.get(links.KEY)), drivers, views)
    found += _firewall(lab, st.extra.get("firewall"), drivers)
    found += _services(st.extra.get("services"), drivers)
    if any(h.container for h in lab.hosts.values()):  # container hosts: a container that stopped is remade
        from .features.containers import container_drift

        found += [Difference(text, "host", host=name) for name, text in container_drift(lab, drivers)]
    for module in features.modules():
        check = getattr(module, "drift", None)
        if check is not None:
            found += [Difference(text, "feature") for text in check(lab, st.extra.get(module.KEY), drivers)]
    return found


def wiring_drift(lab: Lab, meant_down: set[tuple[str, str]], drivers: Drivers,
                 views: Views | None = None) -> list[Difference]:
    """Bridges, namespaces, interfaces (and their up/down state), addresses, bridge ports, default routes."""
    machine = {lk.name: lk for lk in drivers.kernel.machine_links()}
    found: list[Difference] = []
    for n in lab.networks.values():
        bridge = machine.get(n.bridge)
        if bridge is None:
            found.append(Difference(f"network {n.name}: bridge {n.bridge} is missing", "bridge"))
        elif not bridge.up:
            found.append(Difference(f"network {n.name}: bridge {n.bridge} is down", "up", end=("", n.bridge)))
    if views is None:
        views = host_views(lab, drivers)
    for h in lab.hosts.values():
        view = views.get(h.namespace)
        if view is None:
            found.append(Difference(f"host {h.name}: namespace {h.namespace} is missing", "host", host=h.name))
            continue
        found += _host(lab, h, view, machine, meant_down)
    return found


def host_views(lab: Lab, drivers: Drivers) -> Views:
    """Links and routes of every host of ``lab`` whose namespace exists: one pass over the namespaces."""
    named = drivers.kernel.named_namespaces()
    return drivers.kernel.host_views([h.namespace for h in lab.hosts.values() if h.namespace in named])


def _host(lab: Lab, h: Host, view: tuple[list[LinkInfo], list[RouteInfo]], machine: Mapping[str, LinkInfo],
          meant_down: set[tuple[str, str]]) -> list[Difference]:
    inside = {lk.name: lk for lk in view[0]}
    found: list[Difference] = []
    for i in h.interfaces:
        want_up = (h.name, i.name) not in meant_down
        found += _interface(lab, h, i, inside.get(i.name), want_up)
        if i.host_veth and i.network:
            found += _port(lab, h, i, machine, want_up)
    gateway_down = any((h.name, i.name) in meant_down for i in h.interfaces
                       if i.network and lab.networks[i.network].gateway.ip == h.gateway)
    has_default = any(r.destination.prefixlen == 0 and r.gateway == str(h.gateway) for r in view[1])
    if h.gateway and not gateway_down and not has_default:
        lost = any(d.repair == "host" for d in found)  # remade with the host anyway
        found.append(Difference(f"host {h.name}: default route via {h.gateway} is missing",
                                "host" if lost else "route", host=h.name, end=(h.namespace, str(h.gateway))))
    found += _default6(lab, h, view, meant_down, found)
    return found


def _default6(lab: Lab, h: Host, view: Any, meant_down: set[tuple[str, str]], found: list[Difference]
              ) -> list[Difference]:
    """The host's IPv6 default route, missing (not because its interface was put down on purpose)."""
    if h.gateway6 is None:
        return []
    gateways = {n.name: n.gateway6.ip for n in lab.networks.values() if n.gateway6 is not None}
    down = any((h.name, i.name) in meant_down for i in h.interfaces
               if i.network and gateways.get(i.network) == h.gateway6)
    if down or any(r.destination.prefixlen == 0 and r.gateway == str(h.gateway6) for r in view[1]):
        return []
    lost = any(d.repair == "host" for d in found)
    return [Difference(f"host {h.name}: IPv6 default route via {h.gateway6} is missing",
                       "host" if lost else "route", host=h.name, end=(h.namespace, str(h.gateway6)))]


def _remake(lab: Lab, h: Host, i: Interface, text: str) -> Difference:
    """What is lost with an interface: the host (bridge ports) or the link (point-to-point ends)."""
    if i.link is None:
        return Difference(text, "host", host=h.name)
    lk = lab.links[i.link]
    return Difference(text, "link", host=h.name, link=(lk.a, lk.b, lk.a_ifname, lk.b_ifname))


def _interface(lab: Lab, h: Host, i: Interface, seen: LinkInfo | None, want_up: bool) -> list[Difference]:
    where = f"host {h.name}: interface {i.name}"
    if seen is None:
        return [_remake(lab, h, i, f"{where} is missing")]
    found = []
    if seen.up != want_up:
        text = f"{where} is down" if want_up else f"{where} is up (it was put down with nslab link)"
        found.append(Difference(text, "up" if want_up else "down", host=h.name, end=(h.namespace, i.name)))
    for address in (i.address, i.address6):
        if address is not None and address not in seen.addresses:
            found.append(_remake(lab, h, i, f"{where} lacks its address {address}"))
            break
    return found


def _port(lab: Lab, h: Host, i: Interface, machine: Mapping[str, LinkInfo], want_up: bool) -> list[Difference]:
    assert i.host_veth is not None and i.network is not None
    where = f"host {h.name}: bridge port {i.host_veth} ({i.name})"
    port, bridge = machine.get(i.host_veth), machine.get(lab.networks[i.network].bridge)
    if port is None:
        return [Difference(f"{where} is missing", "host", host=h.name)]
    found = []
    if port.up != want_up:
        text = f"{where} is down" if want_up else f"{where} is up (it was put down with nslab link)"
        found.append(Difference(text, "up" if want_up else "down", host=h.name, end=("", i.host_veth)))
    if bridge is not None and port.master != bridge.index:
        found.append(Difference(f"{where} is not attached to bridge {bridge.name}", "host", host=h.name))
    return found


def _firewall(lab: Lab, record: Any, drivers: Drivers) -> list[Difference]:
    from .features.firewall.record import FirewallRecord
    from .features.firewall.render import FAMILY, TABLE, Observed, lab_chains

    rec = FirewallRecord.from_json(record)
    wanted = lab_chains(lab.name, rec)
    if not wanted:
        return []
    seen = Observed.from_ruleset(drivers.nft.ruleset())
    if not seen.table_exists:
        return [Difference(f"firewall: table {FAMILY} {TABLE} is missing", "ruleset")]
    return [Difference(f"firewall: chain {c} of table {FAMILY} {TABLE} is missing", "ruleset")
            for c in sorted(wanted - seen.chains)]


def _services(record: Any, drivers: Drivers) -> list[Difference]:
    supervisor = (record or {}).get("supervisor") if isinstance(record, dict) else None
    if not isinstance(supervisor, dict):
        return []
    if drivers.processes.is_alive(supervisor.get("pid"), supervisor.get("start")):
        return []
    return [Difference(f"services: the lab's supervisor (pid {supervisor.get('pid')}) is not running", "services")]


def with_repairs(observed: Observed, found: list[Difference]) -> Observed:
    """``observed`` with the wiring repairs of ``found`` added (wiring.plan_up plans them)."""
    from .wiring import Observed

    def ends(kind: str) -> tuple[End, ...]:
        return tuple(dict.fromkeys(d.end for d in found if d.repair == kind))

    return Observed(
        namespaces=observed.namespaces,
        bridges=observed.bridges,
        host_veths=observed.host_veths,
        broken_hosts=frozenset(d.host for d in found if d.repair == "host"),
        broken_links=frozenset(d.link for d in found if d.repair == "link"),
        ends_down=ends("up"),
        ends_up=ends("down"),
        routes_missing=ends("route"),
    )
