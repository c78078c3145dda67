"""The pcapng file format, written (and read back, for tests and tools) without any library.

One Section Header Block, then one Interface Description Block per ``target:interface`` (``if_name`` says
which namespace saw the packet, e.g. ``lab/web1:eth0``; ``if_tsresol`` = 9: nanosecond timestamps), then one
Enhanced Packet Block per packet (``epb_flags`` carries the direction). Interface blocks may come at any point
before the first packet that names them, so interfaces seen later (``any``) are added on the fly.
Little-endian, every block and option padded to 32 bits, as the format requires.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

SHB = 0x0A0D0D0A
IDB = 0x00000001
EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_END = 0
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
SHB_USERAPPL = 4
EPB_FLAGS = 2
INBOUND, OUTBOUND = 1, 2


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _options(options: list[tuple[int, bytes]]) -> bytes:
    if not options:
        return b""
    out = b"".join(struct.pack("<HH", code, len(value)) + _pad(value) for code, value in options)
    return out + struct.pack("<HH", OPT_END, 0)


def block(kind: int, body: bytes) -> bytes:
    body = _pad(body)
    total = len(body) + 12
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


class Writer:
    """Writes a pcapng stream; ``flush`` after each packet when the reader is live (``-w -``)."""

    def __init__(self, stream: BinaryIO, application: str = "nslab capture", flush: bool = False) -> None:
        self.stream = stream
        self.flush = flush
        self.interfaces: dict[str, int] = {}
        body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options([(SHB_USERAPPL, application.encode())])
        self._write(block(SHB, body))

    def _write(self, data: bytes) -> None:
        self.stream.write(data)
        if self.flush:
            self.stream.flush()

    def interface(self, name: str, linktype: int, snaplen: int = 262144, description: str = "") -> int:
        """The id of interface ``name``, writing its description block the first time."""
        if name in self.interfaces:
            return self.interfaces[name]
        options = [(IF_NAME, name.encode()), (IF_TSRESOL, bytes([9]))]
        if description:
            options.append((IF_DESCRIPTION, description.encode()))
        self._write(block(IDB, struct.pack("<HHI", linktype, 0, snaplen) + _options(options)))
        self.interfaces[name] = len(self.interfaces)
        return self.interfaces[name]

    def packet(self, interface: int, timestamp_ns: int, data: bytes, original_length: int = 0,
               direction: int = 0) -> None:
        options = [(EPB_FLAGS, struct.pack("<I", direction))] if direction else []
        head = struct.pack(
            "<IIIII", interface, timestamp_ns >> 32, timestamp_ns & 0xFFFFFFFF, len(data),
            max(original_length, len(data)),
        )
        self._write(block(EPB, head + _pad(data) + _options(options)))


# ----------------------------------------------------------------------------------------------
# Reading back (tests, and anyone checking a file)
# ----------------------------------------------------------------------------------------------


def parse_options(data: bytes) -> list[tuple[int, bytes]]:
    out, offset = [], 0
    while offset + 4 <= len(data):
        code, length = struct.unpack_from("<HH", data, offset)
        if code == OPT_END:
            break
        out.append((code, data[offset + 4: offset + 4 + length]))
        offset += 4 + length + (-length % 4)
    return out


def blocks(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(block type, body)`` of each block; checks both length fields of every block."""
    offset = 0
    while offset < len(data):
        kind, total = struct.unpack_from("<II", data, offset)
        if total < 12 or total % 4 or offset + total > len(data):
            raise ValueError(f"bad block length {total} at offset {offset}")
        (trailer,) = struct.unpack_from("<I", data, offset + total - 4)
        if trailer != total:
            raise ValueError(f"block at offset {offset}: length {total} but trailer {trailer}")
        yield kind, data[offset + 8: offset + total - 4]
        offset += total


def interface_names(data: bytes) -> list[str]:
    names = []
    for kind, body in blocks(data):
        if kind == IDB:
            opts = dict(parse_options(body[8:]))
            names.append(opts.get(IF_NAME, b"").decode())
    return names


def packets(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(interface id, timestamp ns, data)`` of every Enhanced Packet Block."""
    out = []
    for kind, body in blocks(data):
        if kind == EPB:
            iface, high, low, captured, _ = struct.unpack_from("<IIIII", body)
            out.append((iface, (high << 32) | low, body[20: 20 + captured]))
    return out
