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
hostnames   a host's hostname namespace (its pin) is gone                          pin it anew (hostnames)
services    the lab's supervisor is not running; a service's process outside its   start it (services); start
            host's network or hostname namespace or its cgroup                     that service again inside
==========  ===================================================================  ===============================

Interfaces put down with ``nslab link`` are intended (features/links.py), not drift. This module only collects:
the wiring answers for bridges, namespaces and default routes (``wiring.drift``), each interface's kind for the
interface and its port (kinds/, e.g. ``kinds.veth.drift``), and each feature with a ``drift(lab, record,
drivers) -> list[Difference]`` hook for its own part (firewall, services, containers; features/__init__.py); the
features' ``plan_up`` then repair them.

Replaces: comparing ``ip -n NS -br addr``, ``ip -n NS route``, ``ip link show master BR``, ``nft list table
inet nslab`` and ``ps`` with what the lab file says, by hand.
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
    from .features import links

    lab = st.lab
    found = wiring.drift(lab, links.down_interfaces(lab, st.extra.get(links.KEY)), drivers, views)
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
        broken_hosts=frozenset(d.host for d in found if d.repair == "host"),
        broken_links=frozenset(d.link for d in found if d.repair == "link"),
        ends_down=ends("up"),
        ends_up=ends("down"),
        routes_missing=ends("route"),
    )
