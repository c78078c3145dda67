"""The capture's kernel boundary: AF_PACKET sockets opened inside a target's network namespace.

A short-lived thread enters the namespace (:func:`nslab.ns.nsenter.run_in`),
creates the socket and lists the interfaces there, and leaves; a socket belongs to the namespace it was made
in for its whole life, so the caller reads it from home. Replaces ``nsenter --net=... tcpdump -i IF``:
nothing runs in the target and no tool is needed inside it.

Order matters so that nothing unfiltered slips in: the socket is made with protocol 0 (it receives nothing),
the BPF program is attached, and only then is it bound to the interface with ``ETH_P_ALL``. ``any`` cannot
be bound by name (Python's AF_PACKET address needs an interface), so that socket is made with ``ETH_P_ALL``
at once, and what it received before the filter was attached is read and thrown away.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from ...errors import KernelError, UserError
from ...ns.targets import Target
from . import bpf

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
ARPHRD_ETHER, ARPHRD_NONE = 1, 65534
RECEIVE_BUFFER = 8 << 20
SNAPLEN = 262144


def linktype(hatype: int) -> int:
    """pcap LINKTYPE of an ARPHRD hardware type (Ethernet and loopback carry an Ethernet header)."""
    return bpf.LINKTYPE_RAW if hatype == ARPHRD_NONE else bpf.LINKTYPE_ETHERNET


def _in_namespace(target: Target, work: Any) -> Any:
    from ...ns import nsenter

    return nsenter.run_in(target, work, name=f"nslab-capture {target.text}")


def interfaces(target: Target) -> list[str]:
    """Every interface of the target's network namespace, in index order."""
    return [name for _, name in sorted(_in_namespace(target, socket.if_nameindex))]


class PacketSocket:
    """One AF_PACKET socket; ``ifname`` empty means every interface (``any``)."""

    def __init__(self, sock: socket.socket, target: Target, ifname: str, hatype: int) -> None:
        self.sock, self.target, self.ifname, self.hatype = sock, target, ifname, hatype

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> tuple[bytes, int | None, str, bool, int]:
        """``(frame, kernel timestamp ns or None, interface name, outgoing, hatype)``."""
        data, ancillary, _, address = self.sock.recvmsg(SNAPLEN, socket.CMSG_SPACE(16))
        stamp = None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanos = struct.unpack_from("qq", value)
                stamp = seconds * 1_000_000_000 + nanos
        return data, stamp, address[0], address[2] == PACKET_OUTGOING, address[3]

    def drops(self) -> int:
        """The packets the kernel dropped since the last call (PACKET_STATISTICS resets its counters)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        _packets, drops = struct.unpack("II", raw)
        return int(drops)

    def close(self) -> None:
        self.sock.close()


def _drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recv(SNAPLEN)
    except BlockingIOError:
        pass
    sock.setblocking(True)


def _make(target: Target, ifname: str, program: list[bpf.Instruction] | None) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0 if ifname else socket.htons(ETH_P_ALL))
    try:
        if program is not None:
            attached = bpf.Attached(program)
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, attached.fprog)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        if ifname:
            sock.bind((ifname, ETH_P_ALL))
        else:
            _drain(sock)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENODEV:
            raise UserError(f"{target.text}: no interface '{ifname}' (its interfaces: "
                            f"{', '.join(interfaces(target))})") from None
        raise KernelError(f"{target.text}: cannot capture on {ifname or 'any'}: {exc.strerror}") from None
    return sock


def open_socket(target: Target, ifname: str, program: list[bpf.Instruction] | None) -> PacketSocket:
    """A socket capturing on ``ifname`` (``""``: all interfaces) of the target's namespace."""
    sock = _in_namespace(target, lambda: _make(target, ifname, program))
    hatype = sock.getsockname()[3] if ifname else ARPHRD_ETHER
    return PacketSocket(sock, target, ifname, hatype)
