"""What drift found (:class:`Difference`, each with the repair ``up`` plans) and what it reads of the hosts.

A module of its own below drift.py: the wiring, each interface kind and each feature describe their own drift
with these types, and drift.py, which collects them, imports those modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..values import Value

if TYPE_CHECKING:
    from ..drivers import Drivers
    from ..drivers.rtnl import LinkInfo, RouteInfo
    from ..model import Lab

End = tuple[str, str]  # (namespace, or '' for the machine; interface)
#: namespace -> its links and routes (None: no such namespace), as ``Kernel.host_views`` reads them
Views = Mapping[str, "tuple[list[LinkInfo], list[RouteInfo]] | None"]


class Difference(Value):
    text: str
    # host | container (a host made again, its stopped container started) | link | up | down | route |
    # reconfigure | bridge | ruleset | files | hostname | services
    repair: str
    host: str = ""  # for host repairs
    link: tuple[str, str, str, str] = ("", "", "", "")  # for link repairs: the link's key
    # for up/down repairs; for route repairs (namespace, gateway); for reconfigure repairs (namespace,
    # "route TO via VIA" | "sysctl KEY")
    end: End = ("", "")



def host_views(lab: Lab, drivers: Drivers) -> Views:
    """Links and routes of every host of ``lab`` whose namespace exists: one pass over the namespaces."""
    named = drivers.kernel.named_namespaces()
    return drivers.kernel.host_views([h.namespace for h in lab.hosts.values() if h.namespace in named])
