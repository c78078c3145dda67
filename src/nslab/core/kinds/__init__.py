"""Kinds of interface nslab gives a host or a network, one module each, registered in :data:`KINDS`.

==========  =================================================================================================
kind        what it makes
==========  =================================================================================================
veth        a host's port on a network (a veth from the host's namespace, its peer on the machine, enslaved
            to the network's bridge) and a point-to-point link between two hosts (a veth pair)
vxlan       a point-to-point link between hosts on two machines: on each machine a VXLAN device to the other,
            made in the machine's namespace and moved into its host's (resolve picks it, never the file)
==========  =================================================================================================

A kind module provides (:class:`Kind` types them; tests/unit/test_kinds.py checks every registered module):

- its **schema**: ``schema()``, the pydantic model of one entry of ``links:`` of its kind, built on the first
  call (pydantic is imported there, never when the module is: the kept path imports the kinds without it) on
  core/spec.py's ``LinkSpec`` (``endpoints``, ``subnet``, ``ipv6``, ``subnet6``: what resolve.py's shared link
  IPAM reads) with ``kind: Literal["NAME"]``; spec.py makes ``links:`` a union of every registered kind's schema,
  told apart by the ``kind:`` key (absent: :data:`LINK_KIND`);
- ``resolve(resolution, written, a_ifname, b_ifname, subnet, subnet6) -> Link``: the link as written, with the
  names and subnets resolve.py gave it (interface names and the link IPAM are shared by every kind), as a typed
  model value whose ``kind`` is the kind's name (its own settings in ``Link.options``);
- its **actions** (each an :class:`~nslab.core.plan.Action`: ``commands()``, ``apply()`` -> inverse,
  ``teardown()``): ``add(lab, links)`` and ``remove(lab, links)``, which the wiring places in its plan; the
  kernel work is the netlink driver's one link primitive, ``Kernel.add_links`` (a drivers.rtnl.NewLink per link:
  kernel kind, ends, the kind's own IFLA_INFO_DATA packed with rtnl's packers), and ``Kernel.remove_link_ends``;
- ``ends(lab, link)``: the ``(namespace, interface)`` of each end (the wiring's repairs, ``nslab link``);
- its **drift**: ``drift(lab, host, interface, seen, machine, want_up)`` — what differs on the machine for one
  interface of a host (``seen``: that interface as found inside the host, ``machine``: the machine's links by
  name), as :class:`~nslab.core.difference.Difference` values that ``status`` prints and ``up`` repairs;
- its **record**: the model values it resolves to (model.Link with its ``kind`` and ``options``), kept in the
  lab's state.

The port kind (:data:`PORT_KIND`, a host's port on a network) also renders the ports the netlink driver makes in
each host's one batch: ``port_commands(lab, host, position, interface)`` (:class:`PortKind`).

Adding a kind: its module here, one line in :data:`KINDS`, its tests (docs/architecture.md, "Adding a link
kind"). A kind kept elsewhere (a test's) is added with :func:`register`, the one entry point.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    import ipaddress

    from ...drivers.rtnl import LinkInfo
    from ...model import Host, Interface, Lab, Link
    from ..difference import Difference
    from ..plan import Action

#: kind -> its module (a name starting with "." is in this package). A host's port on a network is of
#: :data:`PORT_KIND`; a link written without ``kind:`` of :data:`LINK_KIND`.
KINDS: dict[str, str] = {
    "veth": ".veth",  # veth pairs: a host's port on a bridge, a point-to-point link between two hosts
    "vxlan": ".vxlan",  # a point-to-point link between hosts on two machines (a lab across machines)
}

#: The kind of every host's port on a network (the lab file has no other form of it yet).
PORT_KIND = "veth"
#: The kind of a link written without ``kind:`` (and of the short form ``[a, b]``).
LINK_KIND = "veth"


class Kind(Protocol):
    """What a kind module holds (module-level functions)."""

    def schema(self) -> type[Any]: ...
    def resolve(self, resolution: Any, written: Any, a_ifname: str, b_ifname: str,
                subnet: ipaddress.IPv4Network, subnet6: ipaddress.IPv6Network | None) -> Link: ...
    def add(self, lab: Lab, links: tuple[Link, ...]) -> Action: ...
    def remove(self, lab: Lab, links: tuple[Link, ...]) -> Action: ...
    def ends(self, lab: Lab, link: Link) -> list[tuple[str, str]]: ...
    def drift(self, lab: Lab, host: Host, interface: Interface, seen: LinkInfo | None,
              machine: Mapping[str, LinkInfo], want_up: bool) -> list[Difference]: ...


class PortKind(Kind, Protocol):
    """The port kind: also the dry-run lines of a host's port on a network."""

    def port_commands(self, lab: Lab, host: Host, position: int, interface: Interface) -> list[str]: ...


def register(name: str, module: str) -> None:
    """Make ``module`` (an importable name) the kind ``name`` of the lab file's ``links:``: what a test or a
    kind kept outside this package calls; this package's own kinds are the lines of :data:`KINDS`."""
    KINDS[name] = module
    _loaded.pop(name, None)


_loaded: dict[str, Kind] = {}


def kind(name: str) -> Kind:
    """The module of kind ``name`` (imported on first use; drift asks once per interface)."""
    module = _loaded.get(name)
    if module is None:
        module = _loaded[name] = cast("Kind", importlib.import_module(KINDS[name], __name__))
    return module


def port_kind() -> PortKind:
    """The module of :data:`PORT_KIND`."""
    return cast("PortKind", kind(PORT_KIND))


def of_interface(lab: Lab, interface: Interface) -> Kind:
    """The kind of a host's interface: its link's, or the port kind for an interface on a network."""
    return kind(lab.links[interface.link].kind if interface.link is not None else PORT_KIND)


def by_kind(links: tuple[Link, ...] | list[Link]) -> dict[str, tuple[Link, ...]]:
    """``links`` grouped by kind, each group in the given order, the groups in :data:`KINDS` order."""
    return {name: group for name in KINDS if (group := tuple(lk for lk in links if lk.kind == name))}
