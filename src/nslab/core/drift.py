"""Drift: what differs between a lab as nslab made it (its recorded state) and the machine now.

Read-only; everything is observed through the drivers. One :class:`Difference` per thing that differs, each
with a one-line text (``status`` prints them, ``status --json`` lists them under ``drift``) and how ``up``
repairs it:

===========  ==================================================================  ================================
repair       found                                                               ``up`` does
===========  ==================================================================  ================================
host         namespace gone; an interface, its address or its machine-side port    recreate the host (wiring.py)
             gone; its MTU changed; an IPv4 address nslab did not give on it; a port no
             longer attached to its bridge; a container host's container gone
container    a container host's container stopped (not with ``nslab stop``)       start it; remake the host's wiring
link         an end of a point-to-point link or its address gone (or one added)    recreate the link
up / down    an interface, port, bridge or a host's ``lo`` down that should be     ``ip link set ... up|down``
             up (or up that was put down with ``nslab link``)
route        a host's default route gone (its interface is up)                     ``ip route replace default``
reconfigure  one of a host's ``routes:`` gone, one of its ``sysctls:`` changed     write it again (ConfigureHosts)
bridge       a network's bridge gone                                               recreate it (and its hosts)
files        a host's ``/etc/netns`` file missing or not what dns renders          write it again (dns)
hostname     a host's hostname changed or its kept UTS namespace gone              pin it again (hostnames)
ruleset      nslab's nft table, one of the lab's chains, or one of its rules       reload the table (firewall)
             (counted by comment) gone or added
overlay      a spanning network's VXLAN device gone, down, off its bridge, or one    make it again with its entries
             of its forwarding entries lost (a lab across machines, overlay.py)
sysctl       the machine's forwarding or a publishing bridge's route_localnet      set it to 1 again (firewall)
             no longer 1
services     the lab's supervisor is not running; a service's process outside its    start it (services); start
             host's network or hostname namespace or its cgroup                    that service again inside
===========  ==================================================================  ================================

Interfaces put down with ``nslab link`` (features/links.py) or of a host stopped with ``nslab stop``
(features/hoststate.py) are intended, not drift; hosts ``up --only`` left out are not in the record at all.
This module only collects: the wiring answers for bridges, namespaces, ``lo``, routes and the hosts' sysctls
(``wiring.drift``; the sysctls read in one thread that enters each namespace, no fork), each interface's kind
for the interface and its port (kinds/, e.g. ``kinds.veth.drift``), and each feature with a ``drift(lab,
record, drivers) -> list[Difference]`` hook for its own part (dns, containers, hostnames, firewall, services;
features/__init__.py); each feature's ``plan_up`` observes what its drift observes, and so repairs it.

Replaces: comparing ``ip -n NS -br addr``, ``ip -n NS route``, ``ip link show master BR``, ``ip netns exec NS
sysctl``, ``/etc/netns/NS/*``, ``nsenter --uts=PIN hostname``, ``nft list table inet nslab`` and ``ps`` with what
the lab file says, by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import features
from .difference import Difference, End, Views

if TYPE_CHECKING:
    from ..drivers import Drivers
    from .state import LabState
    from .wiring import Observed

def lab_drift(st: LabState, drivers: Drivers, views: Views | None = None) -> list[Difference]:
    """Every difference between lab ``st`` as recorded and the machine (``views``: the hosts' links and routes
    when the caller has just read them, as ``status`` has): the wiring's (each interface's by its kind), then
    each feature's that has a ``drift`` hook, in :data:`~nslab.core.features.FEATURES` order."""
    from . import wiring
    from .features import hoststate, links

    lab = st.lab
    meant_down = (links.down_interfaces(lab, st.extra.get(links.KEY))
                  | hoststate.meant_down(lab, st.extra.get(hoststate.KEY)))
    found = wiring.drift(lab, meant_down, drivers, views)
    if lab.machine is not None:  # a lab across machines: this part's VXLAN devices and their entries
        from . import overlay

        found += overlay.drift(lab, drivers)
    for module in features.modules():
        check = getattr(module, "drift", None)
        if check is not None:
            found += check(lab, st.extra.get(module.KEY), drivers)
    return found


def with_repairs(observed: Observed, found: list[Difference]) -> Observed:
    """``observed`` with the wiring repairs of ``found`` added (wiring.plan_up plans them)."""
    from .wiring import Observed

    def ends(kind: str) -> tuple[End, ...]:
        return tuple(dict.fromkeys(d.end for d in found if d.repair == kind))

    return Observed(
        namespaces=observed.namespaces,
        bridges=observed.bridges,
        host_veths=observed.host_veths,
        broken_hosts=frozenset(d.host for d in found if d.repair in ("host", "container")),
        resumed=frozenset(d.host for d in found if d.repair == "container"),
        broken_links=frozenset(d.link for d in found if d.repair == "link"),
        ends_down=ends("up"),
        ends_up=ends("down"),
        routes_missing=ends("route"),
        reconfigure=ends("reconfigure"),
        broken_overlay=frozenset(d.end[1] for d in found if d.repair == "overlay"),
    )
