"""The ``status --json`` document of one lab: what is recorded, next to what the kernel shows now.

Read-only: it observes through the drivers (``ip -n NS -j addr``/``route`` of every host, the machine's links)
and never creates anything. Each feature adds its part under its ``STATUS_KEY``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import features

if TYPE_CHECKING:
    from ..drivers import Drivers
    from ..drivers.rtnl import LinkInfo, RouteInfo
    from ..model import Host
    from ..model import Lab as ResolvedLab
    from .features.hoststate import HostStateRecord
    from .state import LabState


def lab_status(st: LabState, drivers: Drivers) -> dict[str, Any]:
    """The lab's document; while another nslab process changes the lab (its intent names it, before or after
    the kernel is read), ``changing`` says so and ``drift`` is empty: a half-made lab is not drift."""
    from .state import changing

    busy = changing(st.lab.name)
    doc = _lab_status(st, drivers)
    busy = busy or changing(st.lab.name)
    if busy:
        doc["changing"], doc["drift"] = busy, []
    return doc


def _across(doc: dict[str, Any], lab: ResolvedLab) -> None:
    """A lab across machines: which machine's part this is, the whole lab's digest, the machines, the hosts that
    live elsewhere, each network's home, machines and VNI."""
    doc["machine"], doc["digest"] = lab.machine, lab.digest
    doc["machines"] = {m.name: str(m.address) for m in lab.machines.values()}
    doc["remote"] = [{"name": h.name, "machine": h.machine} for h in lab.remote.values()]
    for entry, n in zip(doc["networks"], lab.networks.values(), strict=True):
        entry.update(home=n.home, machines=list(n.machines), **({"vni": n.vni} if n.vni else {}))


def _lab_status(st: LabState, drivers: Drivers) -> dict[str, Any]:
    from .difference import host_views
    from .drift import lab_drift
    from .features import hoststate

    lab = st.lab
    views = host_views(lab, drivers)  # read once: the hosts' entries and the drift both use them
    machine_links = {lk.name for lk in drivers.kernel.machine_links()}
    doc: dict[str, Any] = {
        "name": lab.name,
        "source": lab.source,
        "networks": [
            {"name": n.name, "bridge": n.bridge, "subnet": str(n.subnet), "gateway": str(n.gateway.ip),
             "internal": n.internal, "present": n.bridge in machine_links,
             **({"subnet6": str(n.subnet6), "gateway6": str(n.gateway6.ip)} if n.subnet6 and n.gateway6 else {})}
            for n in lab.networks.values()
        ],
        "hosts": [_host(lab, h, views.get(h.namespace)) for h in lab.hosts.values()],
    }
    if lab.machine is not None:
        _across(doc, lab)
    _host_states(doc, lab, hoststate.HostStateRecord.from_json(st.extra.get(hoststate.KEY)))
    for module in features.modules():
        doc.setdefault(module.STATUS_KEY, {}).update(module.status(lab, st.extra.get(module.KEY), drivers))
    health = (doc.get("hostsetup") or {}).get("health") or {}
    for entry in doc["hosts"]:
        if entry["name"] in health:
            entry["health"] = health[entry["name"]]["status"]
    doc["drift"] = [d.text for d in lab_drift(st, drivers, views)]
    doc["links"] = [
        {"endpoints": [lk.a, lk.b], "interfaces": [lk.a_ifname, lk.b_ifname], "subnet": str(lk.subnet),
         "addresses": [str(lk.a_address), str(lk.b_address)]}
        for lk in lab.links
    ]
    return doc


def _host_states(doc: dict[str, Any], lab: ResolvedLab, record: HostStateRecord) -> None:
    """Each host's ``state``: stopped with ``nslab stop`` or running; and the hosts of the file an ``up
    --only``/``--profile`` left out, as ``not started``."""
    from ..naming import namespace_name

    for entry in doc["hosts"]:
        entry["state"] = "stopped" if entry["name"] in record.stopped else "running"
    doc["hosts"] += [{"name": n, "namespace": namespace_name(lab.name, n), "hostname": n, "present": False,
                      "interfaces": [], "routes": [], "state": "not started"} for n in record.not_started]


def _host(lab: ResolvedLab, h: Host, view: tuple[list[LinkInfo], list[RouteInfo]] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": h.name, "namespace": h.namespace, "hostname": h.hostname, "present": False,
                             "interfaces": [], "routes": []}
    if view is None:
        return entry
    links, routes = view
    wanted = {i.name: i for i in h.interfaces}
    entry["present"] = True
    for lk in links:
        if lk.name == "lo":
            continue
        iface = wanted.get(lk.name)
        peer = None
        if iface is not None and iface.link is not None:
            link = lab.links[iface.link]
            peer = link.b if link.a == h.name else link.a
        entry["interfaces"].append({
            "name": lk.name, "up": lk.up,
            "addresses": [str(a) for a in lk.addresses if a.version == 4 or not a.ip.is_link_local],
            "network": iface.network if iface else None, "link_peer": peer,
        })
    entry["routes"] = [
        {"destination": "default" if r.destination.prefixlen == 0 else str(r.destination), "gateway": r.gateway,
         "device": r.device}
        for r in routes
    ]
    return entry
