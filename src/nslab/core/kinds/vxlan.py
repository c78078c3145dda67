"""Kind 'vxlan' (see kinds/__init__.py): a point-to-point link between hosts on two machines of a lab across
machines (core/overlay.py). Resolve picks it for a link whose ends are on different machines; the lab file never
names it.

Each machine makes its own end only: a VXLAN device made in the machine's namespace (its UDP socket lives
there: local = this machine's address, remote = the other end's machine, the lab's UDP port, the link's VNI,
learning off) and moved by the same request into the local host's namespace as the link's interface, with
its derived MAC, the overlay MTU, its addresses, up. Deleting the end removes it (the other machine's end is
that machine's).

Schema (:func:`schema`): spec.LinkSpec's fields and ``mtu`` (kept when smaller than the overlay's). Record:
:class:`~nslab.model.Link` with ``kind="vxlan"`` and ``options`` ``(("vni", N),)``.

Replaces: ``ip link add IF netns NS type vxlan id VNI local ADDR remote ADDR dstport PORT nolearning``, ``ip -n
NS addr add``, ``ip -n NS link set IF up``, ``ip -n NS link del IF``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from ...model import Host, Interface, Lab, Link
from ...naming import mac_address
from ..plan import Action, broadcast_plus, raise_on
from . import veth

if TYPE_CHECKING:
    from ...drivers import Drivers
    from ...drivers.rtnl import LinkInfo, NewLink
    from ..difference import Difference
    from ..resolve import _Resolution
    from ..spec import LinkSpec

KIND = "vxlan"

_schema: list[type[LinkSpec]] = []


def schema() -> type[LinkSpec]:
    """``links:`` entries of this kind (pydantic imported on the first call)."""
    if not _schema:
        from ..spec import LinkSpec, Mtu

        class VxlanSpec(LinkSpec):
            """A point-to-point link between hosts on two machines (core/kinds/vxlan.py)."""

            kind: Literal["vxlan"] = "vxlan"
            mtu: Mtu | None = None

        _schema.append(VxlanSpec)
    return _schema[0]


def resolve(resolution: _Resolution, written: veth.Written, a_ifname: str, b_ifname: str,
            subnet: ipaddress.IPv4Network, subnet6: ipaddress.IPv6Network | None) -> Link:
    """As a veth link, with the overlay's MTU (or a smaller one written) and the link's VNI."""
    from ...values import replace

    link = veth.resolve(resolution, written, a_ifname, b_ifname, subnet, subnet6)
    a, b = written.endpoints
    return replace(link, kind=KIND, mtu=resolution.spanning_mtu(link.mtu),
                   options=(("vni", resolution.next_vni("link", f"{a}|{b}|{a_ifname}|{b_ifname}")),))


def add(lab: Lab, links: tuple[Link, ...]) -> Action:
    return AddVxlanLinks(lab, links)


def remove(lab: Lab, links: tuple[Link, ...]) -> Action:
    return RemoveVxlanLinks(lab, links)


def _hosts(lab: Lab) -> Mapping[str, Host]:
    return {**lab.hosts, **lab.remote}


def local_ends(lab: Lab, link: Link) -> list[tuple[Host, str, Host]]:
    """(host here, its interface, the host at the other end) of ``link``: this machine's end only."""
    hosts = _hosts(lab)
    a, b = hosts[link.a], hosts[link.b]
    out = []
    if link.a in lab.hosts:
        out.append((a, link.a_ifname, b))
    if link.b in lab.hosts:
        out.append((b, link.b_ifname, a))
    return out


def ends(lab: Lab, link: Link) -> list[tuple[str, str]]:
    return [(h.namespace, ifname) for h, ifname, _ in local_ends(lab, link)]


def _vni(link: Link) -> int:
    return int(dict(link.options)["vni"])


def _addresses(link: Link, host: str) -> tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]:
    mine = (link.a_address, link.a_address6) if host == link.a else (link.b_address, link.b_address6)
    return tuple(a for a in mine if a is not None)


def new_link(lab: Lab, link: Link, here: Host, ifname: str, there: Host) -> NewLink:
    """The VXLAN end made in the machine's namespace and moved into ``here``'s."""
    from ...drivers.rtnl import LinkEnd, NewLink
    from ..overlay import vxlan_data

    assert here.machine is not None and there.machine is not None
    data = vxlan_data(_vni(link), lab.machines[here.machine].address, lab.overlay_port,
                      lab.machines[there.machine].address)
    end = LinkEnd(here.namespace, ifname, _addresses(link, here.name), mac=mac_address(lab.name, "host", here.name,
                                                                                         ifname), mtu=link.mtu)
    return NewLink(KIND, end, data, made_in="")


class AddVxlanLinks(Action):
    """This machine's end of each link between machines."""

    lab: Lab
    links: tuple[Link, ...]

    def commands(self) -> list[str]:
        out: list[str] = []
        for lk in self.links:
            for here, ifname, there in local_ends(self.lab, lk):
                assert here.machine is not None and there.machine is not None
                ns, mtu = here.namespace, f" mtu {lk.mtu}" if lk.mtu else ""
                # (made from the machine's namespace, where its socket lives, straight into the host's)
                out.append(f"ip link add {ifname} netns {ns} address "
                           f"{mac_address(self.lab.name, 'host', here.name, ifname)}{mtu} type vxlan id {_vni(lk)} "
                           f"local {self.lab.machines[here.machine].address} remote "
                           f"{self.lab.machines[there.machine].address} dstport {self.lab.overlay_port} nolearning")
                out += [f"ip -n {ns} addr add {a}{broadcast_plus(a) if a.version == 4 else ' nodad'} dev {ifname}"
                        for a in _addresses(lk, here.name)]
                out.append(f"ip -n {ns} link set {ifname} up")
        return out

    def summary(self) -> str:
        return f"add {len(self.links)} link(s) across machines"

    def apply(self, drivers: Drivers) -> Action | None:
        undo = RemoveVxlanLinks(self.lab, self.links)
        try:
            drivers.kernel.add_links([new_link(self.lab, lk, here, ifname, there) for lk in self.links
                                      for here, ifname, there in local_ends(self.lab, lk)])
        except BaseException:
            drivers.kernel.remove_link_ends(undo.ends())
            raise
        return undo


class RemoveVxlanLinks(Action):
    lab: Lab
    links: tuple[Link, ...]

    def ends(self) -> list[tuple[str, str]]:
        return [end for lk in self.links for end in ends(self.lab, lk)]

    def commands(self) -> list[str]:
        return [f"ip -n {ns} link del {ifname}" for ns, ifname in self.ends()]

    def summary(self) -> str:
        return f"remove {len(self.links)} link(s) across machines"

    def apply(self, drivers: Drivers) -> Action | None:
        raise_on(drivers.kernel.remove_link_ends(self.ends()))
        return AddVxlanLinks(self.lab, self.links)


def drift(lab: Lab, host: Host, interface: Interface, seen: LinkInfo | None, machine: Mapping[str, LinkInfo],
          want_up: bool) -> list[Difference]:
    """As a veth link's end: missing, down, an address lost or added, its MTU changed (then made again)."""
    return veth.drift(lab, host, interface, seen, machine, want_up)
