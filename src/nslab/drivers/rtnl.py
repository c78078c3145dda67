"""The rtnetlink codec: sockets, request packing, ACK draining and dump parsing (no pyroute2 at run time).

Every netlink message nslab sends or reads goes through here; the driver modules (drivers/netlink.py for
labs, discover.py for ``ls``) only decide *what* to ask. Replaces the wire side of ``ip link``, ``ip addr``
and ``ip route``.

- Requests are packed with struct: the shapes are few and fixed, and pyroute2's generic encoder cost 1.4 s of
  a 1000-host ``up``. tests/unit/test_netlink_encode.py decodes every packed request with pyroute2's own
  decoder.
- :class:`Batch` sends many requests per ``send()`` and drains every ACK, reporting each failure with what it
  was for; the receive buffer is forced large so a big batch does not overflow (ENOBUFS).
- :func:`dump` reads a dump to its end, matches sequence numbers and asks again when the kernel marks the
  dump interrupted (``NLM_F_DUMP_INTR``); :func:`parse_attrs` is a small attribute scanner (pyroute2's full
  decode was ~1 ms per link).
"""

from __future__ import annotations

import _thread
import ipaddress
import itertools
import os
import socket
import struct
from collections.abc import Iterable

from ..errors import KernelError
from ..values import Value, field

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import TypeVar

    K = TypeVar("K")
    V = TypeVar("V")

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
IFF_UP = 1
RT_TABLE_MAIN = 254
RT_TABLE_COMPAT = 252  # the header's table field for ids above 255: RTA_TABLE says which
BUFFER = 8 << 20
CHUNK = 48 << 10  # keep each send() well under the socket's send buffer

# Kernel ABI constants (linux/netlink.h, linux/rtnetlink.h).
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 20, 22, 24, 25, 26
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_INFO_KIND = 3, 10, 18, 20, 1
IFLA_LINK, IFLA_CARRIER = 5, 33
IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS = 29, 1 << 3  # link dumps without the counters (less to read)
_NLMSGHDR = struct.Struct("IHHII")
_IFINFOMSG = struct.Struct("BxHiII")


def _raw_link_request(mtype: int, flags: int, name: str | None = None, ext_mask: int = 0) -> bytes:
    """A bare ifinfomsg request, optionally naming a link (for dumps and deletes by name)."""
    attrs = b""
    if name is not None:
        raw = name.encode() + b"\0"
        attrs = struct.pack("HH", 4 + len(raw), IFLA_IFNAME) + raw + b"\0" * (-len(raw) % 4)
    if ext_mask:
        attrs += struct.pack("HHI", 8, IFLA_EXT_MASK, ext_mask)
    length = _NLMSGHDR.size + _IFINFOMSG.size + len(attrs)
    return _NLMSGHDR.pack(length, mtype, flags, 1, 0) + _IFINFOMSG.pack(0, 0, 0, 0, 0) + attrs


#: One datagram at most: a dump's are at most 32 KiB (the kernel caps them), an error echoes a request.
DATAGRAM = 1 << 20
_buffers: dict[int, tuple[bytearray, memoryview]] = {}  # thread -> its receive buffer
_MSG_TRUNC = int(socket.MSG_TRUNC)  # (an int: `&` on the IntFlag member is an enum operation, ~6 µs)


def receive(sock: socket.socket) -> bytes:
    """One netlink datagram. Not ``sock.recv(BUFFER)``: that allocates (and gives back) the whole size on
    every call, an mmap and munmap of megabytes per message, which was most of the time of a small dump
    (3 dumps per host for drift and status)."""
    thread = _thread.get_ident()
    found = _buffers.get(thread)
    if found is None:
        buffer = bytearray(DATAGRAM)
        found = _buffers[thread] = (buffer, memoryview(buffer))
    size, _, flags, _ = sock.recvmsg_into([found[0]])
    if flags & _MSG_TRUNC:
        raise KernelError(f"netlink: a message larger than {DATAGRAM} bytes")
    return bytes(found[1][:size])


def open_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # *BUFFORCE: root may exceed rmem_max
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, opt, BUFFER)
    sock.bind((0, 0))
    return sock



# ---------------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------------


class Batch(Value):
    """Many netlink requests sent together; :meth:`commit` drains every ACK and reports all failures."""

    messages: list[tuple[bytes, str]] = field(default_factory=list)

    def add(self, request: bytes, what: str) -> None:
        """Queue one packed request (sequence numbers are assigned at commit)."""
        self.messages.append((request, what))

    def __len__(self) -> int:
        return len(self.messages)

    def commit(self, sock: socket.socket, tolerate: Iterable[int] = ()) -> list[str]:
        """Send everything; return descriptions of failed requests (errnos in ``tolerate`` are ignored)."""
        tolerate = set(tolerate)
        failures: list[str] = []
        start = 0
        while start < len(self.messages):
            chunk: list[bytes] = []
            by_seq: dict[int, str] = {}
            size = 0
            while start < len(self.messages) and (not chunk or size + len(self.messages[start][0]) <= CHUNK):
                data, what = self.messages[start]
                seq = _next_seq()
                data = data[:8] + struct.pack("II", seq, 0) + data[16:]
                chunk.append(data)
                by_seq[seq] = what
                size += len(data)
                start += 1
            sock.send(b"".join(chunk))
            while by_seq:
                data = receive(sock)
                offset = 0
                while offset < len(data):
                    length, mtype, _flags, seq = struct.unpack_from("IHHI", data, offset)
                    if mtype == NLMSG_ERROR and seq in by_seq:
                        code = -struct.unpack_from("i", data, offset + 16)[0]
                        what = by_seq.pop(seq)
                        if code and code not in tolerate:
                            failures.append(f"{what}: {os.strerror(code)}")
                    offset += (length + 3) & ~3
        self.messages.clear()
        return failures

    def commit_or_raise(self, sock: socket.socket, tolerate: Iterable[int] = ()) -> None:
        failures = self.commit(sock, tolerate)
        if failures:
            raise KernelError("; ".join(failures))


# The requests on the hot path of `up` are packed with struct: pyroute2's generic encoder costs ~0.2 ms per
# message (1.4 s of a 1000-host `up`); these shapes are fixed and checked against pyroute2's decoder in
# tests/unit/test_netlink_encode.py.
IFLA_ADDRESS, IFLA_MTU, IFLA_NET_NS_FD, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 4, 28, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
IFA_F_NODAD = 0x02
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
_IFADDRMSG = struct.Struct("BBBBI")
_RTMSG = struct.Struct("BBBBBBBBI")


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def _string(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("I", value))


def _message(mtype: int, flags: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), mtype, NLM_F_REQUEST | NLM_F_ACK | flags, 0, 0) + body


def _link(index: int = 0, up: bool = False) -> bytes:
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP if up else 0)


IFLA_GROUP = 27


def _mac(mac: str | None) -> bytes:
    return _attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", ""))) if mac else b""


def add_bridge(batch: Batch, name: str, mac: str | None = None, *, group: int = 0) -> None:
    """`ip link add NAME [address MAC] group GROUP type bridge && ip link set NAME up`. The link group is the one
    mark the kernel takes in the creating request (an alias is ignored there), so a link is recognisable from
    the instant it exists."""
    body = _link(up=True) + _string(IFLA_IFNAME, name) + _mac(mac) + (_u32(IFLA_GROUP, group) if group else b"")
    body += _attr(IFLA_LINKINFO, _string(IFLA_INFO_KIND, "bridge"))
    batch.add(_message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body), f"add bridge {name}")


def add_veth(
    batch: Batch, name: str, peer_name: str, peer_ns_fd: int, *, index: int = 0, mtu: int | None = None,
    mac: str | None = None, peer_mac: str | None = None, group: int = 0,
) -> None:
    """A veth pair: ``name`` here (with ifindex ``index`` if non-zero, MAC address ``mac``), ``peer_name`` in the
    peer ns (MAC address ``peer_mac``); ``mtu`` and link ``group`` on both ends.

    Both ends start down: asking for the peer up at creation fails (ENOTCONN); each is brought up where
    it lives.
    """
    size = _u32(IFLA_MTU, mtu) if mtu else b""
    grouped = _u32(IFLA_GROUP, group) if group else b""
    peer = _link() + _string(IFLA_IFNAME, peer_name) + size + _mac(peer_mac) + _u32(IFLA_NET_NS_FD, peer_ns_fd)
    peer += grouped
    info = _string(IFLA_INFO_KIND, "veth") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))
    body = _link(index) + _string(IFLA_IFNAME, name) + size + grouped + _mac(mac) + _attr(IFLA_LINKINFO, info)
    batch.add(_message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body), f"add veth {name} peer {peer_name}")


# The primitive every link kind (core/kinds/) makes its links with: the kind describes the link, the netlink
# driver opens the namespaces, sends the creating request and then each end's addresses, routes and up.

Address = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class LinkEnd(Value):
    """One end of a link to make: the namespace it lives in (a named namespace, any nsfs path, or "" for the
    machine's own), its name and
    marks (link ``group``, given in the creating request; ``alias``, set after it: the kernel ignores an alias
    there), ``mtu`` and ``mac`` (None: the kernel's), and what follows in its namespace once it exists: its
    ``addresses`` (an IPv6 one turns on its link-local address too), its ``routes`` (to, via), and up."""

    namespace: str
    name: str
    addresses: tuple[Address, ...] = ()
    routes: tuple[tuple[Net, Addr], ...] = ()
    mac: str | None = None
    mtu: int | None = None
    group: int = 0
    alias: str | None = None


class NewLink(Value):
    """A link of any kind to make: ``ip -n END.namespace link add END.name ... type KIND [DATA] [peer PEER]``.

    ``data``: the kind's IFLA_INFO_DATA attributes, packed with :func:`attr`, :func:`attr_u32` and
    :func:`attr_string`; ``peer``: the other end of a veth-like kind, created in its own namespace by the same
    request (its attributes go in the kind's data, as ``VETH_INFO_PEER``). ``made_in``: where the request is
    sent when not in the end's namespace ("" the machine's): the link is made there, where what it stands on
    lives (a macvlan's parent, a VXLAN's underlay socket), and moved into the end's namespace by the same
    request; ``lower``: the link it stands on (IFLA_LINK, a macvlan's parent), by name where it is made."""

    kind: str
    end: LinkEnd
    data: bytes = b""
    peer: LinkEnd | None = None
    made_in: str | None = None
    lower: str | None = None


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute (padded): a kind's data is a run of these, nested ones included."""
    return _attr(kind, payload)


def attr_u32(kind: int, value: int) -> bytes:
    return _u32(kind, value)


def attr_string(kind: int, value: str) -> bytes:
    return _string(kind, value)


def _link_attrs(end: LinkEnd) -> bytes:
    return (_string(IFLA_IFNAME, end.name) + (_u32(IFLA_MTU, end.mtu) if end.mtu else b"")
            + (_u32(IFLA_GROUP, end.group) if end.group else b"") + _mac(end.mac))


def add_link(batch: Batch, link: NewLink, peer_ns_fd: int = -1, ns_fd: int = -1, lower: int = 0) -> None:
    """The creating request of ``link``, sent where it is made; its peer (if any) made inside the namespace open
    at ``peer_ns_fd``; ``ns_fd``: the namespace it moves into once made (-1: it stays); ``lower``: the index of
    the link it stands on. Both ends start down (see :func:`add_veth`). For a veth the same bytes as
    :func:`add_veth` (tests/unit/test_netlink_encode.py)."""
    data = link.data
    if link.peer is not None:
        peer = link.peer
        inner = _link() + _string(IFLA_IFNAME, peer.name) + (_u32(IFLA_MTU, peer.mtu) if peer.mtu else b"")
        inner += _mac(peer.mac) + _u32(IFLA_NET_NS_FD, peer_ns_fd) + (_u32(IFLA_GROUP, peer.group) if peer.group
                                                                       else b"")
        data += _attr(VETH_INFO_PEER, inner)
    info = _string(IFLA_INFO_KIND, link.kind) + (_attr(IFLA_INFO_DATA, data) if data else b"")
    body = _link() + _link_attrs(link.end) + (_u32(IFLA_LINK, lower) if lower else b"")
    body += (_u32(IFLA_NET_NS_FD, ns_fd) if ns_fd >= 0 else b"") + _attr(IFLA_LINKINFO, info)
    what = f"add {link.kind} {link.end.name}" + (f" peer {link.peer.name}" if link.peer else "")
    batch.add(_message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body), what)


def configure_end(batch: Batch, index: int, end: LinkEnd) -> None:
    """What follows the creation of ``end`` (at ``index``) in its namespace: alias, addresses, up, routes."""
    what = f"{end.name} in {end.namespace}"
    if end.alias:
        set_alias(batch, index, end.alias)
    six = False
    for address in end.addresses:
        if address.version == 6 and not six:  # IPv6 on: a link-local address too (it comes with up)
            set_addr_gen_mode(batch, index, IN6_ADDR_GEN_MODE_EUI64, what)
            six = True
        add_address(batch, index, address, what)
    set_up(batch, index, what)
    for to, via in end.routes:
        add_route(batch, to, via, end.namespace)


IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA, IFLA_BRPORT_MODE = 4, 5, 4


def set_hairpin(batch: Batch, name: str, on: bool) -> None:
    """`ip link set NAME type bridge_slave hairpin on|off`: frames may leave by the port they came in by."""
    data = _attr(IFLA_BRPORT_MODE, bytes([1 if on else 0]))
    info = _string(IFLA_INFO_SLAVE_KIND, "bridge") + _attr(IFLA_INFO_SLAVE_DATA, data)
    body = _link() + _string(IFLA_IFNAME, name) + _attr(IFLA_LINKINFO, info)
    batch.add(_message(RTM_NEWLINK, 0, body), f"hairpin {'on' if on else 'off'} for {name}")


def set_up(batch: Batch, index: int, what: str) -> None:
    batch.add(_message(RTM_NEWLINK, 0, _link(index, up=True)), f"set {what} up")


def set_state(batch: Batch, name: str, up: bool, what: str) -> None:
    """`ip link set NAME up|down`, by name (only IFF_UP changes)."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, IFF_UP if up else 0, IFF_UP) + _string(IFLA_IFNAME, name)
    batch.add(_message(RTM_NEWLINK, 0, body), f"set {what} {'up' if up else 'down'}")


def set_alias(batch: Batch, index: int, alias: str) -> None:
    batch.add(_message(RTM_NEWLINK, 0, _link(index) + _string(IFLA_IFALIAS, alias)), f"set alias {alias}")


def delete_link(batch: Batch, name: str) -> None:
    batch.add(_raw_link_request(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, name), f"delete link {name}")


def add_address(
    batch: Batch, index: int, address: ipaddress.IPv4Interface | ipaddress.IPv6Interface, what: str
) -> None:
    """`ip addr add ADDRESS/PREFIX [broadcast +] dev IF`; an IPv6 address with ``nodad`` (IPAM made it unique,
    and a tentative address would not answer for a second)."""
    prefix = address.network.prefixlen
    if address.version == 6:
        body = _IFADDRMSG.pack(socket.AF_INET6, prefix, IFA_F_NODAD, 0, index)
        body += _attr(IFA_LOCAL, address.ip.packed) + _attr(IFA_ADDRESS, address.ip.packed)
    else:
        body = _IFADDRMSG.pack(socket.AF_INET, prefix, 0, 0, index)
        body += _attr(IFA_LOCAL, address.ip.packed) + _attr(IFA_ADDRESS, address.ip.packed)
        if prefix < 31:
            body += _attr(IFA_BROADCAST, address.network.broadcast_address.packed)
    batch.add(_message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, body), f"add address {address} to {what}")


IFLA_AF_SPEC, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_EUI64, IN6_ADDR_GEN_MODE_NONE = 26, 8, 0, 1


def set_addr_gen_mode(batch: Batch, index: int, mode: int, what: str) -> None:
    """`ip link set IF addrgenmode eui64|none` (before the link is up: its link-local address comes with up)."""
    batch.add(_message(RTM_NEWLINK, 0, _link(index) + _addr_gen_mode(mode)), f"set addrgenmode of {what}")


def _addr_gen_mode(mode: int) -> bytes:
    return _attr(IFLA_AF_SPEC, _attr(socket.AF_INET6, _attr(IFLA_INET6_ADDR_GEN_MODE, bytes([mode]))))


def attach_port(batch: Batch, name: str, master: int, alias: str, no_link_local: bool = False) -> None:
    """[`ip link set NAME addrgenmode none`;] `ip link set NAME master BRIDGE alias ALIAS up`, by name.

    ``no_link_local``: a bridge port needs no IPv6 address of its own. With one, each port's link-local address
    and its routes went into the machine's table, which the kernel walks whole whenever a link comes up
    (``fib6_ifup``), and each port's DAD, router solicitation and MLD packets were flooded to every host of its
    bridge. A request of its own, before the one that brings the port up (the kernel applies IFF_UP first, and
    the address comes with up). Only where the port has IPv6 (the kernel has it and the MTU is >= 1280): the
    kernel refuses it otherwise.
    """
    if no_link_local:
        body = _link() + _string(IFLA_IFNAME, name) + _addr_gen_mode(IN6_ADDR_GEN_MODE_NONE)
        batch.add(_message(RTM_NEWLINK, 0, body), f"set addrgenmode none on {name}")
    body = _link(up=True) + _string(IFLA_IFNAME, name) + _u32(IFLA_MASTER, master) + _string(IFLA_IFALIAS, alias)
    batch.add(_message(RTM_NEWLINK, 0, body), f"attach {name} to its bridge")


RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
NDA_DST, NDA_LLADDR = 1, 2
NTF_SELF = 0x02
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
NLM_F_APPEND = 0x800
_NDMSG = struct.Struct("BxxxiHBB")


def add_fdb(batch: Batch, index: int, mac: str, dst: Addr, append: bool) -> None:
    """``bridge fdb append|replace MAC dev IF dst DST self permanent``: a VXLAN device's forwarding entry (the
    all-zero MAC is appended: one per destination; a host's MAC replaces what was there)."""
    body = _NDMSG.pack(socket.AF_BRIDGE, index, NUD_NOARP | NUD_PERMANENT, NTF_SELF, 0)
    body += _attr(NDA_LLADDR, bytes.fromhex(mac.replace(":", ""))) + _attr(NDA_DST, dst.packed)
    flags = NLM_F_CREATE | (NLM_F_APPEND if append else NLM_F_REPLACE)
    batch.add(_message(RTM_NEWNEIGH, flags, body), f"add forwarding entry {mac} dst {dst}")


def del_fdb(batch: Batch, index: int, mac: str, dst: Addr) -> None:
    """``bridge fdb del MAC dev IF dst DST self``: one forwarding entry of a VXLAN device (of the all-zero MAC,
    only the one to ``dst``)."""
    body = _NDMSG.pack(socket.AF_BRIDGE, index, 0, NTF_SELF, 0)
    body += _attr(NDA_LLADDR, bytes.fromhex(mac.replace(":", ""))) + _attr(NDA_DST, dst.packed)
    batch.add(_message(RTM_DELNEIGH, 0, body), f"remove forwarding entry {mac} dst {dst}")


def fdb(sock: socket.socket, indexes: frozenset[int]) -> list[tuple[int, str, str]]:
    """The forwarding entries with a destination (VXLAN's) of the links ``indexes``: (index, MAC, dst). One dump
    per link, each of that link's entries only: the request carries an ifinfomsg naming the link (the kernel
    reads a request of ifinfomsg size as ``bridge fdb show dev``), not the whole machine's bridge entries."""
    out = []
    for wanted in sorted(indexes):
        out += _fdb_of(sock, wanted)
    return out


def fdb_request(index: int) -> bytes:
    """RTM_GETNEIGH dump of link ``index``'s forwarding entries (AF_BRIDGE, an ifinfomsg with its index)."""
    request = _NLMSGHDR.pack(_NLMSGHDR.size + _IFINFOMSG.size, RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    return request + _IFINFOMSG.pack(socket.AF_BRIDGE, 0, index, 0, 0)


def _fdb_of(sock: socket.socket, wanted: int) -> list[tuple[int, str, str]]:
    out = []
    for data, offset, length in dump(sock, fdb_request(wanted)):
        _family, index, _state, _flags, _type = _NDMSG.unpack_from(data, offset + 16)
        if index != wanted:
            continue
        attrs = parse_attrs(data, offset + 16 + _NDMSG.size, offset + length, frozenset({NDA_DST, NDA_LLADDR}))
        if NDA_DST in attrs and NDA_LLADDR in attrs:
            mac = ":".join(f"{b:02x}" for b in attrs[NDA_LLADDR][:6])
            out.append((index, mac, str(ipaddress.ip_address(attrs[NDA_DST]))))
    return out


def add_default_route(batch: Batch, gateway: ipaddress.IPv4Address | ipaddress.IPv6Address, what: str) -> None:
    """`ip [-6] route replace default via GATEWAY` (main table, proto static, scope universe, unicast)."""
    add_route(batch, _DEFAULT6 if gateway.version == 6 else _DEFAULT, gateway, what)


_DEFAULT = ipaddress.IPv4Network("0.0.0.0/0")
_DEFAULT6 = ipaddress.IPv6Network("::/0")
Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _route(to: Net, gateway: Addr) -> bytes:
    family = socket.AF_INET6 if gateway.version == 6 else socket.AF_INET
    body = _RTMSG.pack(family, to.prefixlen, 0, 0, RT_TABLE_MAIN, 4, 0, 1, 0)
    if to.prefixlen:
        body += _attr(RTA_DST, to.network_address.packed)
    return body + _attr(RTA_GATEWAY, gateway.packed)


def add_route(batch: Batch, to: Net, gateway: Addr, what: str) -> None:
    """`ip route replace TO via GATEWAY proto static` (main table, scope universe, unicast)."""
    label = "default" if not to.prefixlen else str(to)
    batch.add(
        _message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, _route(to, gateway)),
        f"add {label} route via {gateway} in {what}",
    )


def delete_route(batch: Batch, to: Net, gateway: Addr, what: str) -> None:
    """`ip route del TO via GATEWAY proto static`."""
    batch.add(_message(RTM_DELROUTE, 0, _route(to, gateway)), f"delete route {to} via {gateway} in {what}")


# ---------------------------------------------------------------------------------------------------
# Observation
# ---------------------------------------------------------------------------------------------------


# Traffic control: the ``clsact`` qdisc and one eBPF filter on its ingress (drivers/tc.py, impairments).
RTM_NEWQDISC, RTM_NEWTFILTER = 36, 44
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_FD, TCA_BPF_NAME, TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT = 6, 7, 8, 1
TC_H_CLSACT, TC_H_INGRESS_FILTERS = 0xFFFFFFF1, 0xFFFFFFF2  # clsact's parent; the parent of its ingress filters
ETH_P_ALL = 0x0003
_TCMSG = struct.Struct("BBHiIII")


def add_clsact(batch: Batch, index: int, what: str) -> None:
    """``tc qdisc replace dev IF clsact``."""
    body = _TCMSG.pack(socket.AF_UNSPEC, 0, 0, index, 0xFFFF0000, TC_H_CLSACT, 0) + _string(TCA_KIND, "clsact")
    batch.add(_message(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE, body), what)


def add_ingress_bpf(batch: Batch, index: int, fd: int, name: str, what: str) -> None:
    """``tc filter replace dev IF ingress pref 1 handle 1 bpf direct-action`` of the loaded program ``fd``."""
    info = (1 << 16) | socket.htons(ETH_P_ALL)  # preference 1, every protocol
    options = _u32(TCA_BPF_FD, fd) + _string(TCA_BPF_NAME, name) + _u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT)
    body = (_TCMSG.pack(socket.AF_UNSPEC, 0, 0, index, 1, TC_H_INGRESS_FILTERS, info) + _string(TCA_KIND, "bpf")
            + _attr(TCA_OPTIONS | 0x8000, options))  # (NLA_F_NESTED)
    batch.add(_message(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_REPLACE, body), what)


class LinkInfo(Value):
    index: int
    name: str
    kind: str
    alias: str
    master: int
    up: bool
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...] = ()
    mtu: int = 0
    carrier: bool = True  # IFLA_CARRIER: a veth whose peer is down, a bridge without ports up, report False
    peer: int = 0  # IFLA_LINK: a veth's peer index (in this namespace or another)
    group: int = 0  # IFLA_GROUP: nslab's links are in naming.LINK_GROUP from their creation
    vni: int = 0  # a VXLAN device's network identifier
    vxlan_port: int = 0  # a VXLAN device's UDP port (the kernel refuses two devices of one VNI AND port)


class RouteInfo(Value):
    destination: ipaddress.IPv4Network | ipaddress.IPv6Network  # (the family asked for)
    gateway: str | None
    device: str


_ATTR = struct.Struct("HH")


def parse_attrs(data: bytes, offset: int, end: int, wanted: frozenset[int] | None = None) -> dict[int, bytes]:
    """The attributes in ``data[offset:end]`` by type (``wanted``: only those; a link has ~45 of them)."""
    out = {}
    unpack = _ATTR.unpack_from
    while offset + 4 <= end:
        length, kind = unpack(data, offset)
        if length < 4:
            break
        kind &= 0x3FFF
        if wanted is None or kind in wanted:
            out[kind] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


NLM_F_DUMP_INTR = 0x10
DUMP_ATTEMPTS = 5
_sequence = itertools.count(1 << 16)  # one number space for dumps and batches on every socket


def _next_seq() -> int:
    return next(_sequence) & 0xFFFFFFFF


def dump(sock: socket.socket, request: bytes) -> list[tuple[bytes, int, int]]:
    """Send one dump request; (buffer, offset, length) of each answer message, read to the end.

    Read completely before returning, so an error in a caller never leaves half a dump on a shared socket;
    answers to other sequence numbers (left over by an interrupted earlier exchange) are skipped; a dump
    the kernel marks as interrupted (links came or went meanwhile, NLM_F_DUMP_INTR) is asked again.
    """
    for _attempt in range(DUMP_ATTEMPTS):
        seq = _next_seq()
        sock.send(request[:8] + struct.pack("I", seq) + request[12:])
        answers: list[tuple[bytes, int, int]] = []
        interrupted = False
        done = False
        while not done:
            data = receive(sock)
            offset = 0
            while offset < len(data):
                length, rtype, flags, rseq = struct.unpack_from("IHHI", data, offset)
                if length < 16:
                    raise KernelError("netlink dump: malformed answer")
                if rseq == seq:
                    interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
                    if rtype in (NLMSG_DONE, NLMSG_ERROR):
                        code = -struct.unpack_from("i", data, offset + 16)[0] if length >= 20 else 0
                        if code > 0:
                            raise KernelError(f"netlink dump failed: {os.strerror(code)}")
                        done = True
                        break
                    answers.append((data, offset, length))
                offset += (length + 3) & ~3
        if not interrupted:
            return answers
    raise KernelError(f"netlink dump interrupted {DUMP_ATTEMPTS} times in a row (links changing meanwhile)")


Addresses = dict[int, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]]  # link index -> its addresses


#: Every attribute _link_list reads (the others, ~40 per link, are skipped unparsed): add a new one here too.
_LINK_ATTRS = frozenset({IFLA_IFNAME, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_MASTER, IFLA_GROUP, IFLA_MTU, IFLA_CARRIER,
                         IFLA_LINK})


def _link_list(sock: socket.socket, addresses: Addresses | None = None) -> list[LinkInfo]:
    """The link dump, read with a small attribute scanner: pyroute2's full decode of every attribute costs
    ~1 ms per link (and importing pyroute2 ~150 ms), which dominated `down` of a 1000-host lab."""
    out: list[LinkInfo] = []
    request = _raw_link_request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, ext_mask=RTEXT_FILTER_SKIP_STATS)
    for data, offset, length in dump(sock, request):
        _family, _type, index, flags = struct.unpack_from("BxHiI", data, offset + 16)
        attrs = parse_attrs(data, offset + 32, offset + length, _LINK_ATTRS)
        info = attrs.get(IFLA_LINKINFO)
        linkinfo = parse_attrs(info, 0, len(info)) if info else {}
        kind = linkinfo.get(IFLA_INFO_KIND, b"")
        out.append(
            LinkInfo(
                index=index,
                name=attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace"),
                kind=kind.rstrip(b"\0").decode(errors="replace"),
                alias=attrs.get(IFLA_IFALIAS, b"").rstrip(b"\0").decode(errors="replace"),
                master=struct.unpack("I", attrs[IFLA_MASTER])[0] if IFLA_MASTER in attrs else 0,
                up=bool(flags & IFF_UP),
                group=_u32_attr(attrs, IFLA_GROUP),
                mtu=_u32_attr(attrs, IFLA_MTU),
                carrier=attrs.get(IFLA_CARRIER, b"\1")[:1] != b"\0",
                peer=_u32_attr(attrs, IFLA_LINK),
                addresses=tuple(addresses.get(index, ())) if addresses else (),
                vni=_vni(kind, linkinfo),
                vxlan_port=_vxlan_port(kind, linkinfo),
            )
        )
    return out


def _vni(kind: bytes, linkinfo: dict[int, bytes]) -> int:
    """A VXLAN device's network identifier (IFLA_VXLAN_ID in its IFLA_INFO_DATA); 0 for any other link."""
    if kind.rstrip(b"\0") != b"vxlan" or IFLA_INFO_DATA not in linkinfo:
        return 0
    data = linkinfo[IFLA_INFO_DATA]
    return _u32_attr(parse_attrs(data, 0, len(data)), 1)


def _vxlan_port(kind: bytes, linkinfo: dict[int, bytes]) -> int:
    """A VXLAN device's UDP port (IFLA_VXLAN_PORT, network byte order); 0 for any other link."""
    if kind.rstrip(b"\0") != b"vxlan" or IFLA_INFO_DATA not in linkinfo:
        return 0
    data = linkinfo[IFLA_INFO_DATA]
    raw = parse_attrs(data, 0, len(data)).get(15, b"")
    return struct.unpack("!H", raw[:2])[0] if len(raw) >= 2 else 0


def _u32_attr(attrs: dict[int, bytes], kind: int) -> int:
    raw = attrs.get(kind)
    return struct.unpack("I", raw[:4])[0] if raw and len(raw) >= 4 else 0


def _addresses(sock: socket.socket) -> Addresses:
    """`ip addr`: link index -> its addresses (IPv4 and IPv6)."""
    request = _NLMSGHDR.pack(_NLMSGHDR.size + _IFADDRMSG.size, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    request += _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    out: dict[int, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = {}
    for data, offset, length in dump(sock, request):
        _family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(data, offset + 16)
        attrs = parse_attrs(data, offset + 16 + _IFADDRMSG.size, offset + length)
        raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
        if raw:  # from (bytes, prefix): a third of the cost of parsing "a.b.c.d/p" (status reads every host)
            address = _INTERFACES.get((raw, prefixlen))
            if address is None:
                kind = ipaddress.IPv4Interface if len(raw) == 4 else ipaddress.IPv6Interface
                address = _remember(_INTERFACES, (raw, prefixlen), kind((raw, prefixlen)))
            out.setdefault(index, []).append(address)
    return out


# Addresses, networks and gateways made from their raw bytes, kept: every host has the same loopback addresses,
# default route, lab subnet and gateway, and an ipaddress object takes ~10 us to make (drift and status read
# every host of a lab). The objects are immutable; each table is emptied when it reaches _PARSED_LIMIT entries.
_INTERFACES: dict[tuple[bytes, int], ipaddress.IPv4Interface | ipaddress.IPv6Interface] = {}
_NETWORKS: dict[tuple[bytes, int], ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
_GATEWAYS: dict[bytes, str] = {}
_PARSED_LIMIT = 1 << 14


def _remember(table: dict[K, V], key: K, value: V) -> V:
    if len(table) >= _PARSED_LIMIT:
        table.clear()
    table[key] = value
    return value


def links(sock: socket.socket, with_addresses: bool = True) -> list[LinkInfo]:
    """`ip -j addr`: every link in the socket's namespace, with its addresses."""
    return _link_list(sock, _addresses(sock) if with_addresses else None)  # (not replace(): 300 links in drift)


def routes(
    sock: socket.socket, known: Iterable[LinkInfo] | None = None, family: int = socket.AF_INET
) -> list[RouteInfo]:
    """`ip -j route` (IPv4, or IPv6 with ``family``, main table); ``known``: the namespace's links if just dumped
    (for device names)."""
    names = {link.index: link.name for link in (known if known is not None else links(sock, with_addresses=False))}
    request = _NLMSGHDR.pack(_NLMSGHDR.size + _RTMSG.size, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    request += _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    out = []
    for data, offset, length in dump(sock, request):
        got, dst_len, _src, _tos, table, _proto, _scope, _type, _flags = _RTMSG.unpack_from(data, offset + 16)
        if got != family or table not in (RT_TABLE_MAIN, RT_TABLE_COMPAT):
            continue  # (the local table, most of a namespace's routes: not even parsed)
        attrs = parse_attrs(data, offset + 16 + _RTMSG.size, offset + length)
        if table != RT_TABLE_MAIN and attrs.get(RTA_TABLE) != struct.pack("I", RT_TABLE_MAIN):
            continue
        zero = b"\0" * (4 if family == socket.AF_INET else 16)
        key = (attrs.get(RTA_DST, zero), dst_len)
        destination = _NETWORKS.get(key)
        if destination is None:
            dst = ipaddress.ip_address(key[0])
            destination = _remember(_NETWORKS, key, ipaddress.ip_network((dst, dst_len), strict=False))
        raw_gateway = attrs.get(RTA_GATEWAY)
        gateway = None if raw_gateway is None else _GATEWAYS.get(raw_gateway) or _remember(
            _GATEWAYS, raw_gateway, str(ipaddress.ip_address(raw_gateway)))
        oif = struct.unpack("I", attrs[RTA_OIF])[0] if RTA_OIF in attrs else 0
        out.append(
            RouteInfo(
                destination=destination,
                gateway=gateway,
                device=names.get(oif, ""),
            )
        )
    return out
