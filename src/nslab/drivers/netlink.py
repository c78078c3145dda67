"""The netlink driver: named network namespaces, links, addresses and routes, spoken over raw netlink
sockets (no pyroute2 at run time: importing it cost ~150 ms of every ``up``).

Replaces: ``ip netns add/del``, ``ip link add ... type veth peer ... netns``, ``ip link add type bridge``,
``ip link set ... master/up``, ``ip addr add``, ``ip route add default via``, and the read side
(``ip -j link/addr/route``) that ``status`` and IPAM need.

How it stays fast (see shared/DESIGN.md for the measured costs):
- a namespace is made without a fork: one worker thread ``unshare(CLONE_NEWNET)``s, bind-mounts
  ``/proc/thread-self/ns/net`` onto ``/run/netns/NAME``, opens a netlink socket there (a socket stays bound
  to the namespace it was opened in) and ``setns`` back — about 1 ms per namespace;
- the veth peer is created directly inside its namespace (``IFLA_NET_NS_FD`` in the peer info) and brought
  up there, the machine side is created already enslaved to its bridge and up;
- interfaces inside hosts get no automatic IPv6 link-local address (:func:`_no_ipv6_autoconf`): a big lab's
  bridge otherwise floods every host's IPv6 housekeeping packets to every other host;
- requests are sent many per ``send()`` (:class:`Batch`); the ACKs are drained and every failure is
  reported with what it was for. The few fixed request shapes are packed with struct (pyroute2's generic
  encoder was 1.4 s of a 1000-host ``up``; tests/unit/test_netlink_encode.py checks them with pyroute2's
  decoder), and dumps are read with a small attribute scanner (:func:`_attrs`);
- ``down`` deletes bridges in a worker thread while namespaces are unpinned (:meth:`NetlinkKernel.
  remove_links_later`); ``up`` waits for veths of namespaces still being dismantled instead of deleting them
  one by one (:meth:`NetlinkKernel.clear_stale_links`).

Read-only callers use :func:`open_namespace`, which never creates anything (pyroute2's own helpers default
to O_CREAT and would silently create a namespace).
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .. import linux
from ..errors import KernelError
from ..model import OWNER_PREFIX, Host, Lab, Link, Network, owner_alias

NETNS_DIR = "/run/netns"
NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
IFF_UP = 1
RT_TABLE_MAIN = 254
BUFFER = 8 << 20
CHUNK = 48 << 10  # keep each send() well under the socket's send buffer

# Kernel ABI constants (linux/netlink.h, linux/rtnetlink.h).
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE, RTM_GETROUTE = 20, 22, 24, 26
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_INFO_KIND = 3, 10, 18, 20, 1
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


def _netlink_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # *BUFFORCE: root may exceed rmem_max
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, opt, BUFFER)
    sock.bind((0, 0))
    return sock


@dataclass
class Namespace:
    """An open named namespace: its nsfs fd (for IFLA_NET_NS_FD) and a netlink socket inside it."""

    name: str
    fd: int
    sock: socket.socket

    @property
    def path(self) -> str:
        return namespace_path(self.name)

    def close(self) -> None:
        self.sock.close()
        os.close(self.fd)


def namespace_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run fn in a fresh thread: namespace switches there never affect the caller's thread."""
    result: dict[str, Any] = {}

    def body() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed back to the caller below
            result["error"] = exc

    worker = threading.Thread(target=body, name="nslab-netns")
    worker.start()
    worker.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def ensure_netns_dir() -> None:
    """Make /run/netns a shared mount point, as `ip netns add` does, so every mount namespace sees names."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    try:
        linux.mount("none", NETNS_DIR, None, linux.MS_SHARED | linux.MS_REC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise KernelError(f"cannot prepare {NETNS_DIR}: {exc.strerror}") from exc
        linux.mount(NETNS_DIR, NETNS_DIR, "none", linux.MS_BIND | linux.MS_REC)
        linux.mount("none", NETNS_DIR, None, linux.MS_SHARED | linux.MS_REC)


def create_namespaces(names: Iterable[str]) -> dict[str, Namespace]:
    """Create named namespaces (all in one worker thread, no fork). All-or-nothing."""
    names = list(names)
    ensure_netns_dir()

    def work() -> dict[str, Namespace]:
        made: dict[str, Namespace] = {}
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            for name in names:
                path = namespace_path(name)
                try:
                    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
                except FileExistsError:
                    raise KernelError(f"namespace {name} already exists (not made by this lab)") from None
                try:
                    linux.unshare(linux.CLONE_NEWNET)
                    _no_ipv6_autoconf()
                    linux.mount("/proc/thread-self/ns/net", path, "none", linux.MS_BIND)
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        sock = _netlink_socket()
                    except OSError:
                        os.close(fd)
                        raise
                    made[name] = Namespace(name, fd, sock)
                except OSError as exc:
                    _remove_namespace_file(path)
                    raise KernelError(f"cannot create namespace {name}: {exc.strerror}") from exc
                finally:
                    linux.setns(home, linux.CLONE_NEWNET)
        except BaseException:
            for ns in made.values():
                ns.close()
                _remove_namespace_file(ns.path)
            raise
        finally:
            os.close(home)
        return made

    return _in_thread(work)


def _no_ipv6_autoconf() -> None:
    """In the calling thread's (new) namespace: interfaces made from now on get no automatic IPv6 link-local
    address (``addr_gen_mode`` 1 = none; IPv6 itself stays on, addresses can be added by hand).

    Lab hosts are IPv4. With link-local addresses every host's DAD, router solicitation and MLD packets were
    flooded by the bridge to every other host: O(N^2) packets that kept both CPUs busy for seconds after the
    ``up`` of a big lab (``down`` of 1000 hosts 1.05 s -> 0.43 s, ``up`` 2.1 s -> 1.6 s, measured). ``lo``
    keeps ``::1``.
    """
    try:
        fd = os.open("/proc/sys/net/ipv6/conf/default/addr_gen_mode", os.O_WRONLY)
    except OSError:  # IPv6 disabled on this kernel: nothing to turn off
        return
    try:
        os.write(fd, b"1")
    except OSError:
        pass
    finally:
        os.close(fd)


def open_namespace(name_or_path: str) -> Namespace:
    """Open an existing namespace (a name under /run/netns or any nsfs path). Never creates one."""
    path = name_or_path if "/" in name_or_path else namespace_path(name_or_path)

    def work() -> Namespace:
        fd = os.open(path, os.O_RDONLY)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            linux.setns(fd, linux.CLONE_NEWNET)
            try:
                return Namespace(os.path.basename(path), fd, _netlink_socket())
            finally:
                linux.setns(home, linux.CLONE_NEWNET)
        except OSError:
            os.close(fd)
            raise
        finally:
            os.close(home)

    try:
        return _in_thread(work)
    except OSError as exc:
        raise KernelError(f"cannot open namespace {path}: {exc.strerror}") from exc


def root_socket() -> socket.socket:
    """A netlink socket in the caller's (the machine's) namespace."""
    return _netlink_socket()


def _remove_namespace_file(path: str) -> None:
    try:
        linux.umount(path)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def delete_namespace(name: str) -> bool:
    """`ip netns del`: drop the name; the kernel frees the namespace (and its veths) when unused.

    Returns False when there was no such name.
    """
    path = namespace_path(name)
    try:
        linux.umount(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        if exc.errno != errno.EINVAL:  # EINVAL: not mounted (a half-made name); the file still goes
            raise KernelError(f"cannot unmount {path}: {exc.strerror}") from exc
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise KernelError(f"cannot remove {path}: {exc.strerror}") from exc
    return True


def list_named_namespaces() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


# ---------------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------------


@dataclass
class Batch:
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
                data = sock.recv(BUFFER)
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
IFLA_MTU, IFLA_NET_NS_FD, IFLA_INFO_DATA, VETH_INFO_PEER = 4, 28, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
_IFADDRMSG = struct.Struct("BBBBI")
_RTMSG = struct.Struct("BBBBBBBBI")


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def _string(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("I", value))


def _ipv4(kind: int, address: ipaddress.IPv4Address) -> bytes:
    return _attr(kind, address.packed)


def _message(mtype: int, flags: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), mtype, NLM_F_REQUEST | NLM_F_ACK | flags, 0, 0) + body


def _link(index: int = 0, up: bool = False) -> bytes:
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP if up else 0)


def add_bridge(batch: Batch, name: str) -> None:
    """`ip link add NAME type bridge && ip link set NAME up`."""
    body = _link(up=True) + _string(IFLA_IFNAME, name) + _attr(IFLA_LINKINFO, _string(IFLA_INFO_KIND, "bridge"))
    batch.add(_message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body), f"add bridge {name}")


def add_veth(batch: Batch, name: str, peer_name: str, peer_ns_fd: int, *, index: int = 0) -> None:
    """A veth pair: ``name`` here (with ifindex ``index`` if non-zero), ``peer_name`` in the peer ns.

    Both ends start down: asking for the peer up at creation fails (ENOTCONN); each is brought up where
    it lives.
    """
    peer = _link() + _string(IFLA_IFNAME, peer_name) + _u32(IFLA_NET_NS_FD, peer_ns_fd)
    info = _string(IFLA_INFO_KIND, "veth") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))
    body = _link(index) + _string(IFLA_IFNAME, name) + _attr(IFLA_LINKINFO, info)
    batch.add(_message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body), f"add veth {name} peer {peer_name}")


def attach_port(batch: Batch, name: str, master: int, alias: str) -> None:
    """`ip link set NAME master BRIDGE alias ALIAS up`, by name."""
    body = _link(up=True) + _string(IFLA_IFNAME, name) + _u32(IFLA_MASTER, master) + _string(IFLA_IFALIAS, alias)
    batch.add(_message(RTM_NEWLINK, 0, body), f"attach {name} to its bridge")


IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA, IFLA_BRPORT_MODE = 4, 5, 4


def set_hairpin(batch: Batch, name: str, on: bool) -> None:
    """`ip link set NAME type bridge_slave hairpin on|off`: frames may leave by the port they came in by."""
    data = _attr(IFLA_BRPORT_MODE, bytes([1 if on else 0]))
    info = _string(IFLA_INFO_SLAVE_KIND, "bridge") + _attr(IFLA_INFO_SLAVE_DATA, data)
    body = _link() + _string(IFLA_IFNAME, name) + _attr(IFLA_LINKINFO, info)
    batch.add(_message(RTM_NEWLINK, 0, body), f"hairpin {'on' if on else 'off'} for {name}")


def set_up(batch: Batch, index: int, what: str) -> None:
    batch.add(_message(RTM_NEWLINK, 0, _link(index, up=True)), f"set {what} up")


def set_alias(batch: Batch, index: int, alias: str) -> None:
    batch.add(_message(RTM_NEWLINK, 0, _link(index) + _string(IFLA_IFALIAS, alias)), f"set alias {alias}")


def delete_link(batch: Batch, name: str) -> None:
    batch.add(_raw_link_request(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, name), f"delete link {name}")


def add_address(batch: Batch, index: int, address: ipaddress.IPv4Interface, what: str) -> None:
    """`ip addr add ADDRESS/PREFIX [broadcast +] dev IF`."""
    prefix = address.network.prefixlen
    body = _IFADDRMSG.pack(socket.AF_INET, prefix, 0, 0, index)
    body += _ipv4(IFA_LOCAL, address.ip) + _ipv4(IFA_ADDRESS, address.ip)
    if prefix < 31:
        body += _ipv4(IFA_BROADCAST, address.network.broadcast_address)
    batch.add(_message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, body), f"add address {address} to {what}")


def add_default_route(batch: Batch, gateway: ipaddress.IPv4Address, what: str) -> None:
    """`ip route replace default via GATEWAY` (main table, proto static, scope universe, unicast)."""
    body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, 4, 0, 1, 0) + _ipv4(RTA_GATEWAY, gateway)
    batch.add(
        _message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body), f"add default route via {gateway} in {what}"
    )


# ---------------------------------------------------------------------------------------------------
# Observation
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    kind: str
    alias: str
    master: int
    up: bool
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...] = ()


@dataclass(frozen=True)
class RouteInfo:
    destination: ipaddress.IPv4Network
    gateway: str | None
    device: str


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    out = {}
    while offset + 4 <= end:
        length, kind = struct.unpack_from("HH", data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


NLM_F_DUMP_INTR = 0x10
DUMP_ATTEMPTS = 5
_sequence = itertools.count(1 << 16)  # one number space for dumps and batches on every socket


def _next_seq() -> int:
    return next(_sequence) & 0xFFFFFFFF


def _raw_dump(sock: socket.socket, request: bytes) -> list[tuple[bytes, int, int]]:
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
            data = sock.recv(BUFFER)
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


def _link_list(sock: socket.socket) -> list[LinkInfo]:
    """The link dump, read with a small attribute scanner: pyroute2's full decode of every attribute costs
    ~1 ms per link (and importing pyroute2 ~150 ms), which dominated `down` of a 1000-host lab."""
    out: list[LinkInfo] = []
    request = _raw_link_request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, ext_mask=RTEXT_FILTER_SKIP_STATS)
    for data, offset, length in _raw_dump(sock, request):
        _family, _type, index, flags = struct.unpack_from("BxHiI", data, offset + 16)
        attrs = _attrs(data, offset + 32, offset + length)
        info = attrs.get(IFLA_LINKINFO)
        kind = _attrs(info, 0, len(info)).get(IFLA_INFO_KIND, b"") if info else b""
        out.append(
            LinkInfo(
                index=index,
                name=attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace"),
                kind=kind.rstrip(b"\0").decode(errors="replace"),
                alias=attrs.get(IFLA_IFALIAS, b"").rstrip(b"\0").decode(errors="replace"),
                master=struct.unpack("I", attrs[IFLA_MASTER])[0] if IFLA_MASTER in attrs else 0,
                up=bool(flags & IFF_UP),
            )
        )
    return out


def _addresses(sock: socket.socket) -> dict[int, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]]:
    """`ip addr`: link index -> its addresses (IPv4 and IPv6)."""
    request = _NLMSGHDR.pack(_NLMSGHDR.size + _IFADDRMSG.size, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    request += _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    out: dict[int, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = {}
    for data, offset, length in _raw_dump(sock, request):
        _family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(data, offset + 16)
        attrs = _attrs(data, offset + 16 + _IFADDRMSG.size, offset + length)
        raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
        if raw:
            out.setdefault(index, []).append(ipaddress.ip_interface(f"{ipaddress.ip_address(raw)}/{prefixlen}"))
    return out


def links(sock: socket.socket, with_addresses: bool = True) -> list[LinkInfo]:
    """`ip -j addr`: every link in the socket's namespace, with its addresses."""
    found = _link_list(sock)
    if not with_addresses:
        return found
    addresses = _addresses(sock)
    return [replace(lk, addresses=tuple(addresses[lk.index])) if lk.index in addresses else lk for lk in found]


def routes(sock: socket.socket) -> list[RouteInfo]:
    """`ip -j route` (IPv4, main table)."""
    names = {link.index: link.name for link in links(sock, with_addresses=False)}
    request = _NLMSGHDR.pack(_NLMSGHDR.size + _RTMSG.size, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    request += _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    out = []
    for data, offset, length in _raw_dump(sock, request):
        family, dst_len, _src, _tos, table, _proto, _scope, _type, _flags = _RTMSG.unpack_from(data, offset + 16)
        if family != socket.AF_INET:
            continue
        attrs = _attrs(data, offset + 16 + _RTMSG.size, offset + length)
        if table != RT_TABLE_MAIN and attrs.get(RTA_TABLE) != struct.pack("I", RT_TABLE_MAIN):
            continue
        dst = ipaddress.IPv4Address(attrs[RTA_DST]) if RTA_DST in attrs else ipaddress.IPv4Address(0)
        gateway = str(ipaddress.IPv4Address(attrs[RTA_GATEWAY])) if RTA_GATEWAY in attrs else None
        oif = struct.unpack("I", attrs[RTA_OIF])[0] if RTA_OIF in attrs else 0
        out.append(
            RouteInfo(
                destination=ipaddress.IPv4Network(f"{dst}/{dst_len}", strict=False),
                gateway=gateway,
                device=names.get(oif, ""),
            )
        )
    return out


# ---------------------------------------------------------------------------------------------------
# The operations apply.py needs (drivers/fake.py has the same surface for unit tests)
# ---------------------------------------------------------------------------------------------------

#: Hosts made at once: bounds the open fds (one nsfs fd + one socket per namespace).
HOST_CHUNK = 256
#: How long ``up`` waits for the kernel to dismantle the veths of namespaces just unpinned (seconds): in all,
#: and without any of them disappearing.
STALE_WAIT = 10.0
STALE_STALL = 1.0


def port_index(position: int) -> int:
    """The ifindex a host's n-th bridge port gets inside its fresh namespace (lo is 1): no lookup needed."""
    return 10 + position


class NetlinkKernel:
    """Lab-level operations, each batched; each either completes or raises/reports what failed."""

    def __init__(self) -> None:
        self._root: socket.socket | None = None

    @property
    def root(self) -> socket.socket:
        if self._root is None:
            self._root = root_socket()
        return self._root

    def close(self) -> None:
        if self._root is not None:
            self._root.close()
            self._root = None

    # -- observation ----------------------------------------------------------------------------
    def owned_links(self) -> list[LinkInfo]:
        return [lk for lk in links(self.root, with_addresses=False) if lk.alias.startswith(OWNER_PREFIX)]

    def named_namespaces(self) -> frozenset[str]:
        return frozenset(list_named_namespaces())

    def machine_networks(self) -> list[tuple[ipaddress.IPv4Network, str]]:
        """Routes and addresses of the machine that are not nslab's own, as (network, who)."""
        all_links = links(self.root)
        ours = {lk.name for lk in all_links if lk.alias.startswith(OWNER_PREFIX)}
        out: list[tuple[ipaddress.IPv4Network, str]] = []
        for route in routes(self.root):
            if route.destination.prefixlen == 0 or route.device in ours:
                continue
            out.append((route.destination, f"route on {route.device or 'the machine'}"))
        for lk in all_links:
            if lk.name in ours:
                continue
            for addr in lk.addresses:
                if addr.version == 4 and not addr.ip.is_loopback:
                    out.append((addr.network, f"address {addr} on {lk.name}"))
        return out

    # -- networks -------------------------------------------------------------------------------
    def add_bridges(self, lab: Lab, networks: list[Network]) -> None:
        batch = Batch()
        for n in networks:
            add_bridge(batch, n.bridge)
        batch.commit_or_raise(self.root)
        for n in networks:
            index = socket.if_nametoindex(n.bridge)
            set_alias(batch, index, owner_alias(lab.name, "net", n.name))  # ignored at creation: set it now
            add_address(batch, index, n.gateway, n.bridge)
        batch.commit_or_raise(self.root)

    def remove_links(self, names: list[str]) -> list[str]:
        batch = Batch()
        for name in names:
            delete_link(batch, name)
        return batch.commit(self.root, tolerate=(errno.ENODEV,))

    def remove_links_later(self, names: list[str]) -> Callable[[], list[str]]:
        """Start removing machine links in a worker thread (its own socket); the returned function waits
        and gives the failures. Deleting a bridge detaches its ports one by one in the kernel (~0.25 ms each,
        the GIL released meanwhile), so the caller does other work in the time."""
        result: list[str] = []

        def work() -> None:
            try:
                sock = root_socket()
                try:
                    batch = Batch()
                    for name in names:
                        delete_link(batch, name)
                    result.extend(batch.commit(sock, tolerate=(errno.ENODEV,)))
                finally:
                    sock.close()
            except OSError as exc:
                result.append(f"deleting {', '.join(names)}: {exc.strerror or exc}")
            except Exception as exc:  # noqa: BLE001 - reported by wait(), never lost with the thread
                result.append(f"deleting {', '.join(names)}: {exc}")

        worker = threading.Thread(target=work, name="nslab-dellink")
        worker.start()

        def wait() -> list[str]:
            worker.join()
            return result

        return wait

    def clear_stale_links(self, names: list[str], wait: float = STALE_WAIT, stall: float = STALE_STALL) -> list[str]:
        """Wait for machine links of dying namespaces to disappear, then delete what is left.

        Waiting beats deleting: the kernel dismantles all dying namespaces in one batch, while deleting a veth
        pair on its own costs ~20 ms (measured). The wait ends when nothing has disappeared for ``stall``
        seconds (a process keeps that namespace alive) or after ``wait`` seconds in all.
        """
        wanted = set(names)
        start = progress = time.monotonic()
        remaining = len(wanted)
        while True:
            left = wanted & {lk.name for lk in links(self.root, with_addresses=False)}
            now = time.monotonic()
            if len(left) < remaining:
                remaining, progress = len(left), now
            if not left or now - progress >= stall or now - start >= wait:
                break
            time.sleep(0.01)
        return self.remove_links(sorted(left)) if left else []

    # -- hosts ----------------------------------------------------------------------------------
    def add_hosts(self, lab: Lab, hosts: list[Host]) -> None:
        """Create each host's namespace, veths to its bridges, addresses and default route.

        Each veth is created from inside its host's namespace with a chosen ifindex (so the address, up and
        route requests follow in the same batch, no lookup) and its peer placed in the machine's namespace.
        All peers are enslaved to their bridges at the very end, in one batch: attaching ports between
        creations made a 1000-host lab ~2x slower (measured). All-or-nothing.
        """
        made: list[str] = []
        machine_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            for start in range(0, len(hosts), HOST_CHUNK):  # bounds the open fds, not the batching
                chunk = hosts[start : start + HOST_CHUNK]
                opened = create_namespaces(h.namespace for h in chunk)
                made += opened
                try:
                    for h in chunk:
                        inside = Batch()
                        set_up(inside, 1, f"lo in {h.namespace}")
                        for pos, port in enumerate(i for i in h.interfaces if i.network):
                            add_veth(inside, port.name, port.host_veth, machine_ns, index=port_index(pos))
                            add_address(inside, port_index(pos), port.address, f"{port.name} in {h.namespace}")
                            set_up(inside, port_index(pos), f"{port.name} in {h.namespace}")
                        if h.gateway is not None:
                            add_default_route(inside, h.gateway, h.namespace)
                        inside.commit_or_raise(opened[h.namespace].sock)
                finally:
                    for ns in opened.values():
                        ns.close()
            ports = Batch()
            bridge_index: dict[str, int] = {}
            for h in hosts:
                for port in (i for i in h.interfaces if i.network):
                    bridge = lab.networks[port.network].bridge
                    if bridge not in bridge_index:
                        bridge_index[bridge] = socket.if_nametoindex(bridge)
                    alias = owner_alias(lab.name, "host", h.name, port.name)
                    attach_port(ports, port.host_veth, bridge_index[bridge], alias)
            ports.commit_or_raise(self.root)
        except BaseException:
            for name in made:
                delete_namespace(name)
            raise
        finally:
            os.close(machine_ns)

    def remove_namespaces(self, names: list[str]) -> list[str]:
        failures: list[str] = []
        for name in names:
            try:
                delete_namespace(name)
            except KernelError as exc:
                failures.append(str(exc))
        return failures

    # -- links between hosts --------------------------------------------------------------------
    def add_links(self, lab: Lab, items: list[Link]) -> None:
        opened: dict[str, Namespace] = {}
        try:
            for lk in items:
                for host in (lk.a, lk.b):
                    ns = lab.hosts[host].namespace
                    if ns not in opened:
                        opened[ns] = open_namespace(ns)
            for lk in items:
                a, b = opened[lab.hosts[lk.a].namespace], opened[lab.hosts[lk.b].namespace]
                batch = Batch()
                add_veth(batch, lk.a_ifname, lk.b_ifname, b.fd)
                batch.commit_or_raise(a.sock)
                for ns, ifname, address in ((a, lk.a_ifname, lk.a_address), (b, lk.b_ifname, lk.b_address)):
                    index = _index_in(ns, ifname)
                    add_address(batch, index, address, f"{ifname} in {ns.name}")
                    set_up(batch, index, f"{ifname} in {ns.name}")
                    batch.commit_or_raise(ns.sock)
        finally:
            for ns in opened.values():
                ns.close()

    def remove_link_ends(self, ends: list[tuple[str, str]]) -> list[str]:
        failures = []
        for namespace, ifname in ends:
            if not os.path.exists(namespace_path(namespace)):
                continue  # the namespace is gone, and its links with it
            ns = open_namespace(namespace)
            try:
                batch = Batch()
                delete_link(batch, ifname)
                failures += batch.commit(ns.sock, tolerate=(errno.ENODEV,))
            finally:
                ns.close()
        return failures


def _index_in(ns: Namespace, ifname: str) -> int:
    for link in links(ns.sock, with_addresses=False):
        if link.name == ifname:
            return link.index
    raise KernelError(f"{ifname} not found in {ns.name}")
