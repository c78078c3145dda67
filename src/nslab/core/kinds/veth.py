"""Kind 'veth' (see kinds/__init__.py): a veth pair, in its two uses.

- A host's **port on a network**: a veth made from inside the host's namespace (``ethN``, at a fixed ifindex) with
  its peer placed on the machine (``<lab>-<host>-N``-style names, naming.py), enslaved to the network's bridge
  and given the ownership alias. The netlink driver makes the ports in each host's one batch with its namespace,
  addresses and default routes (``Kernel.add_hosts``, planned as wiring.AddHosts); this module renders them
  (:func:`port_commands`) and finds their drift.
- A **point-to-point link** between two hosts (``links:``): ``a`` creates the pair with the peer inside ``b``
  (``Kernel.add_links`` with a ``NewLink`` of kernel kind ``veth`` and a peer: one request per link, one batch
  per end), each end with its address (a /30 of the link pool, or ``subnet:``; ``::1``/``::2`` of its
  ``subnet6`` on a dual-stack link) and up. Deleting one end removes both.

Schema (:func:`schema`): spec.LinkSpec's fields (``endpoints``, ``subnet``, ``ipv6``, ``subnet6``) and ``mtu``;
``kind: veth`` may be left out. Record: :class:`~nslab.model.Link` with ``kind="veth"``.

Replaces: ``ip -n A link add IF type veth peer name IF netns B``, ``ip -n NS addr add``, ``ip -n NS link set IF
up``, ``ip -n NS link del IF``; ``ip link set PORT master BR alias ... up``; for drift, comparing ``ip -n NS -br
addr`` and ``ip link show master BR`` with the lab.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, Protocol

from ...model import Host, Interface, Lab, Link
from ...naming import LINK_GROUP, mac_address, owner_alias
from ..difference import Difference
from ..plan import Action, broadcast_plus, raise_on

if TYPE_CHECKING:
    from ...drivers import Drivers
    from ...drivers.rtnl import Address, LinkInfo, NewLink
    from ..resolve import _Resolution
    from ..spec import LinkSpec

KIND = "veth"
#: What the dry-run calls the machine's own network namespace (the shell running the script is in it).
MACHINE_NETNS = "/proc/$$/ns/net"


# --- schema ------------------------------------------------------------------------------------------------

_schema: list[type[LinkSpec]] = []


def schema() -> type[LinkSpec]:
    """``links:`` entries of this kind: the common link fields and ``mtu`` (made on the first call: pydantic is
    imported then, never on the kept path)."""
    if not _schema:
        from ..spec import LinkSpec, Mtu

        class VethSpec(LinkSpec):
            """A point-to-point veth between two hosts (core/kinds/veth.py)."""

            kind: Literal["veth"] = "veth"
            mtu: Mtu | None = None  # of both ends (else the smaller mtu of its two hosts, if they give one)

        _schema.append(VethSpec)
    return _schema[0]


class Written(Protocol):
    """What :func:`resolve` reads of a link written in the lab file (:func:`schema`'s model)."""

    @property
    def endpoints(self) -> tuple[str, str]: ...
    @property
    def mtu(self) -> int | None: ...


# --- resolve -----------------------------------------------------------------------------------------------

def resolve(resolution: _Resolution, written: Written, a_ifname: str, b_ifname: str,
            subnet: ipaddress.IPv4Network, subnet6: ipaddress.IPv6Network | None) -> Link:
    """The link between ``written.endpoints``: ``a`` takes the subnet's first address, ``b`` the second (``::1``
    and ``::2`` of ``subnet6``); its MTU is written, else the smaller MTU its two hosts give, else the kernel's."""
    a, b = written.endpoints
    ips = list(subnet.hosts()) if subnet.prefixlen < 31 else list(subnet)
    hosts = resolution.spec.hosts
    return Link(
        a=a,
        b=b,
        a_ifname=a_ifname,
        b_ifname=b_ifname,
        subnet=subnet,
        a_address=ipaddress.IPv4Interface(f"{ips[0]}/{subnet.prefixlen}"),
        b_address=ipaddress.IPv4Interface(f"{ips[1]}/{subnet.prefixlen}"),
        mtu=written.mtu or min((m for m in (hosts[a].mtu, hosts[b].mtu) if m), default=None),
        subnet6=subnet6,
        a_address6=ipaddress.IPv6Interface(f"{subnet6[1]}/{subnet6.prefixlen}") if subnet6 else None,
        b_address6=ipaddress.IPv6Interface(f"{subnet6[2]}/{subnet6.prefixlen}") if subnet6 else None,
        kind=KIND,
    )


# --- actions -----------------------------------------------------------------------------------------------

def add(lab: Lab, links: tuple[Link, ...]) -> Action:
    return AddLinks(lab, links)


def remove(lab: Lab, links: tuple[Link, ...]) -> Action:
    return RemoveLinks(lab, links)


def ends(lab: Lab, link: Link) -> list[tuple[str, str]]:
    return [(lab.hosts[link.a].namespace, link.a_ifname), (lab.hosts[link.b].namespace, link.b_ifname)]


class AddLinks(Action):
    """Each pair made from ``a``'s namespace with its peer in ``b``'s, then both ends' addresses, up."""

    lab: Lab
    links: tuple[Link, ...]

    def commands(self) -> list[str]:
        return [line for lk in self.links for line in _link_commands(self.lab, lk)]

    def summary(self) -> str:
        return f"add {len(self.links)} link(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        undo = RemoveLinks(self.lab, self.links)
        try:
            drivers.kernel.add_links([new_link(self.lab, lk) for lk in self.links])
        except BaseException:  # the pairs made so far go, this step left nothing
            drivers.kernel.remove_link_ends(undo.ends())
            raise
        return undo


def new_link(lab: Lab, lk: Link) -> NewLink:
    """What the netlink driver makes of ``lk``: the pair from ``a``'s namespace with its peer in ``b``'s, each end
    with its derived MAC, the link's MTU, its addresses, up."""
    from ...drivers.rtnl import LinkEnd, NewLink  # (when applied: planning and drift need no sockets)

    a, b = lab.hosts[lk.a], lab.hosts[lk.b]
    return NewLink(
        kind=KIND,
        end=LinkEnd(a.namespace, lk.a_ifname, _addresses(lk.a_address, lk.a_address6),
                    mac=mac_address(lab.name, "host", lk.a, lk.a_ifname), mtu=lk.mtu),
        peer=LinkEnd(b.namespace, lk.b_ifname, _addresses(lk.b_address, lk.b_address6),
                     mac=mac_address(lab.name, "host", lk.b, lk.b_ifname), mtu=lk.mtu),
    )


def _addresses(*addresses: Address | None) -> tuple[Address, ...]:
    return tuple(a for a in addresses if a is not None)


class RemoveLinks(Action):
    """Links of the lab that changed: deleting one end removes the pair."""

    lab: Lab
    links: tuple[Link, ...]

    def ends(self) -> list[tuple[str, str]]:
        return [(self.lab.hosts[lk.a].namespace, lk.a_ifname) for lk in self.links]

    def commands(self) -> list[str]:
        return [f"ip -n {ns} link del {ifname}" for ns, ifname in self.ends()]

    def summary(self) -> str:
        return f"remove {len(self.links)} link(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        raise_on(drivers.kernel.remove_link_ends(self.ends()))
        return AddLinks(self.lab, self.links)


def _link_commands(lab: Lab, lk: Link) -> list[str]:
    a, b = lab.hosts[lk.a].namespace, lab.hosts[lk.b].namespace
    mtu = f" mtu {lk.mtu}" if lk.mtu else ""
    return [
        f"ip -n {a} link add {lk.a_ifname} address {mac_address(lab.name, 'host', lk.a, lk.a_ifname)}{mtu} type veth "
        f"peer name {lk.b_ifname} address {mac_address(lab.name, 'host', lk.b, lk.b_ifname)}{mtu} netns {b}",
        f"ip -n {a} addr add {lk.a_address}{broadcast_plus(lk.a_address)} dev {lk.a_ifname}",
        f"ip -n {b} addr add {lk.b_address}{broadcast_plus(lk.b_address)} dev {lk.b_ifname}",
        *([f"ip -n {a} link set {lk.a_ifname} addrgenmode eui64",
           f"ip -n {a} addr add {lk.a_address6} dev {lk.a_ifname} nodad",
           f"ip -n {b} link set {lk.b_ifname} addrgenmode eui64",
           f"ip -n {b} addr add {lk.b_address6} dev {lk.b_ifname} nodad"] if lk.subnet6 else []),
        f"ip -n {a} link set {lk.a_ifname} up",
        f"ip -n {b} link set {lk.b_ifname} up",
    ]


def port_commands(lab: Lab, host: Host, position: int, interface: Interface) -> list[str]:
    """The host's ``position``-th port on a network: the veth made inside (at :func:`port_index`), its peer on
    the machine, addresses, up, and the peer enslaved to the bridge with its ownership alias."""
    ns, i = host.namespace, interface
    bridge = lab.networks[i.network].bridge if i.network else ""
    mac = f" address {i.mac or mac_address(lab.name, 'host', host.name, i.name)}"  # the lab file's wins
    mtu = f" mtu {i.mtu}" if i.mtu else ""
    out = [
        f"ip -n {ns} link add {i.name} index {port_index(position)}{mac}{mtu} group {LINK_GROUP} type veth "
        f"peer name {i.host_veth}{mtu} group {LINK_GROUP} netns {MACHINE_NETNS}",
        f"ip -n {ns} addr add {i.address}{broadcast_plus(i.address)} dev {i.name}",
    ]
    if i.address6:  # IPv6 on: a link-local address on this interface too (the namespace's default: none)
        out += [f"ip -n {ns} link set {i.name} addrgenmode eui64",
                f"ip -n {ns} addr add {i.address6} dev {i.name} nodad"]
    out.append(f"ip -n {ns} link set {i.name} up")
    if (i.mtu or 1500) >= 1280:  # a bridge port: no IPv6 address of its own (drivers/rtnl.attach_port)
        out.append(f"ip link set {i.host_veth} addrgenmode none")
    alias = owner_alias(lab.name, "host", host.name, i.name)
    return [*out, f"ip link set {i.host_veth} master {bridge} alias {alias} up"]


def port_index(position: int) -> int:
    """The ifindex a host's n-th bridge port gets inside its fresh namespace (lo is 1): no lookup needed."""
    return 10 + position


# --- drift -------------------------------------------------------------------------------------------------

def drift(lab: Lab, host: Host, interface: Interface, seen: LinkInfo | None, machine: Mapping[str, LinkInfo],
          want_up: bool) -> list[Difference]:
    """The interface inside the host (missing, lacking an address, up or down against ``want_up``) and, for a
    port on a network, its peer on the machine (missing, up or down, not on its bridge)."""
    found = _inside(lab, host, interface, seen, want_up)
    if interface.host_veth and interface.network:
        found += _port(lab, host, interface, machine, want_up)
    return found


def _remake(lab: Lab, h: Host, i: Interface, text: str) -> Difference:
    """What is lost with an interface: the host (bridge ports) or the link (point-to-point ends)."""
    if i.link is None:
        return Difference(text, "host", host=h.name)
    lk = lab.links[i.link]
    return Difference(text, "link", host=h.name, link=(lk.a, lk.b, lk.a_ifname, lk.b_ifname))


def _inside(lab: Lab, h: Host, i: Interface, seen: LinkInfo | None, want_up: bool) -> list[Difference]:
    where = f"host {h.name}: interface {i.name}"
    if seen is None:
        return [_remake(lab, h, i, f"{where} is missing")]
    found = []
    if seen.up != want_up:
        text = f"{where} is down" if want_up else f"{where} is up (it was put down with nslab link)"
        found.append(Difference(text, "up" if want_up else "down", host=h.name, end=(h.namespace, i.name)))
    remade = _remade(lab, h, i, seen, where)
    return found + remade[:1]  # (the interface is made again once, whatever else differs)


def _remade(lab: Lab, h: Host, i: Interface, seen: LinkInfo, where: str) -> list[Difference]:
    """What makes the interface be made again: an address lost; its MTU changed; an IPv4 address added by hand
    (IPv6 ones may come from router advertisements that a lab's own radvd sends, on purpose)."""
    lost = [a for a in (i.address, i.address6) if a is not None and a not in seen.addresses]
    mtu = i.mtu or (lab.links[i.link].mtu if i.link is not None else None)
    extra = [a for a in seen.addresses if a.version == 4 and a != i.address]
    texts = [f"{where} lacks its address {a}" for a in lost[:1]]
    texts += [f"{where} has MTU {seen.mtu}, not {mtu}"] if mtu and seen.mtu and seen.mtu != mtu else []
    texts += [f"{where} has an address nslab did not give it: {a}" for a in extra[:1]]
    return [_remake(lab, h, i, text) for text in texts]


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
