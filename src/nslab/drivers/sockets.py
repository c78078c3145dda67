"""The machine's listening sockets (``ss -lntu``), read from ``/proc/net/{tcp,udp}{,6}``, and who owns one.

Published ports are checked against them before any change (a port in use is refused, naming the process).
"""

from __future__ import annotations

import ipaddress
import os

from .. import publish
from ..model import IPv4Addr

Listener = tuple[str, "IPv4Addr | None", int, int]  # (proto, address or None = any, port, socket inode)


def _hex_address(text: str) -> tuple[IPv4Addr | None, int, bool]:
    """``0100007F:1F90`` -> (127.0.0.1, 8080, True); an IPv6 address that takes no IPv4: (None, port, False)."""
    addr, port_hex = text.split(":")
    port = int(port_hex, 16)
    if len(addr) == 8:
        ip = IPv4Addr(int.from_bytes(bytes.fromhex(addr), "little"))
        return (None if ip == publish.ANY else ip), port, True
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


class LiveMachine:
    def listeners(self) -> list[Listener]:
        return listening_sockets()

    def socket_owner(self, inode: int) -> str:
        from . import procfs

        return procfs.socket_owner(inode)
