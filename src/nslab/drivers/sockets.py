"""The machine's listening sockets (``ss -lntu``), read from ``/proc/net/{tcp,udp}{,6}``, and who owns one;
every port any socket holds (``ss -antu``) and the ephemeral range (``sysctl net.ipv4.ip_local_port_range
net.ipv4.ip_local_reserved_ports``).

Published ports are checked against them before any change (a port in use is refused, naming the process);
a host port nslab picks (``publish: ["80"]``) is one no socket holds, from the ephemeral range.
"""

from __future__ import annotations

import ipaddress
import os

from ..model import IPv4Addr

Listener = tuple[str, "IPv4Addr | None", int, int]  # (proto, address or None = any, port, socket inode)


def _hex_address(text: str) -> tuple[IPv4Addr | None, int, bool]:
    """``0100007F:1F90`` -> (127.0.0.1, 8080, True); an IPv6 address that takes no IPv4: (None, port, False)."""
    addr, port_hex = text.split(":")
    port = int(port_hex, 16)
    if len(addr) == 8:
        ip = IPv4Addr(int.from_bytes(bytes.fromhex(addr), "little"))
        return (None if ip.is_unspecified else ip), port, True
    raw = bytes.fromhex(addr)
    ip6 = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    if ip6.is_unspecified:
        return None, port, True
    if ip6.ipv4_mapped is not None:
        return ip6.ipv4_mapped, port, True
    return None, port, False


_TABLES = (("tcp", "tcp", "0A"), ("tcp6", "tcp", "0A"), ("udp", "udp", "07"), ("udp6", "udp", "07"))


def listening_sockets(root: str = "/proc/net") -> list[Listener]:
    """TCP listeners and bound UDP sockets of the caller's namespace that take IPv4."""
    out: list[Listener] = []
    for name, proto, wanted_state in _TABLES:
        try:
            with open(os.path.join(root, name)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10 or fields[3] != wanted_state:
                continue
            address, port, ipv4 = _hex_address(fields[1])
            if ipv4:
                out.append((proto, address, port, int(fields[9])))
    return out


def bound_ports(proto: str, root: str = "/proc/net") -> set[int]:
    """The local port of every ``proto`` socket (IPv4 and IPv6, any state: listening, connected, TIME-WAIT)."""
    out: set[int] = set()
    for name in (proto, proto + "6"):
        try:
            with open(os.path.join(root, name)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 1 and ":" in fields[1]:
                out.add(int(fields[1].rsplit(":", 1)[1], 16))
    return out


def parse_port_list(text: str) -> set[int]:
    """``ip_local_reserved_ports``: ``"8080,9000-9002"`` -> {8080, 9000, 9001, 9002}; junk is skipped."""
    out: set[int] = set()
    for part in text.replace("\n", ",").split(","):
        first, _, last = part.strip().partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            out.update(range(int(first), int(last or first) + 1))
    return out


def ephemeral_ports(sys_root: str = "/proc/sys/net/ipv4") -> tuple[int, int, frozenset[int]]:
    """The machine's ephemeral range (``ip_local_port_range``; Linux's default 32768-60999 when unreadable)
    and the ports reserved out of it (``ip_local_reserved_ports``)."""
    low, high = 32768, 60999
    try:
        with open(os.path.join(sys_root, "ip_local_port_range")) as f:
            words = f.read().split()
        if len(words) == 2 and all(w.isdigit() for w in words) and 0 < int(words[0]) <= int(words[1]) <= 65535:
            low, high = int(words[0]), int(words[1])
    except OSError:
        pass
    try:
        with open(os.path.join(sys_root, "ip_local_reserved_ports")) as f:
            reserved = frozenset(parse_port_list(f.read()))
    except OSError:
        reserved = frozenset()
    return low, high, reserved


class LiveMachine:
    def listeners(self) -> list[Listener]:
        return listening_sockets()

    def bound_ports(self, proto: str) -> set[int]:
        return bound_ports(proto)

    def ephemeral_ports(self) -> tuple[int, int, frozenset[int]]:
        return ephemeral_ports()

    def socket_owner(self, inode: int) -> str:
        from . import procfs

        return procfs.socket_owner(inode)
