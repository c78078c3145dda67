"""``nslab capture``: packets of one or more namespaces, taken by nslab itself, into pcapng or one line each.

Seams: :mod:`.packet` (the kernel: AF_PACKET sockets opened inside a target's namespace), :mod:`.bpf` (the
filter, compiled by libpcap through ctypes), :mod:`.pcapng` (the file format), :mod:`.summary` (the line per
packet). This module parses ``TARGET[:IF]``, opens the sockets and runs the loop (``select`` over every
socket) until COUNT packets, the duration, or Ctrl-C; then it reads each socket's kernel drop counter.

Replaces ``nsenter --net=/proc/PID/ns/net tcpdump -i eth0 -w -`` per namespace and a ``mergecap`` of the
files, without tcpdump on the machine or anything in the target. Each ``target:interface`` gets its own
pcapng interface (``lab/web1:eth0``), so Wireshark shows which namespace saw each packet.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Sequence

from ...errors import UserError
from ...ns.targets import KINDS, Target, resolve
from . import bpf, packet, pcapng, summary

ANY = "any"


def split_spec(text: str) -> tuple[str, str | None]:
    """``web1:eth0`` -> ``('web1', 'eth0')``; ``pid:42`` -> ``('pid:42', None)``;
    ``netns:a:any`` -> ``('netns:a', 'any')``."""
    kind, sep, rest = text.partition(":")
    if sep and kind in KINDS:
        inner, sep2, ifname = rest.rpartition(":")
        if sep2 and inner and ifname and "/" not in ifname:
            return f"{kind}:{inner}", ifname
        return text, None
    if sep:
        if not rest:
            raise UserError(f"{text}: nothing after ':' (write TARGET:INTERFACE)")
        return kind, rest
    return text, None


def where(target: Target, ifname: str) -> str:
    """The pcapng interface name: ``lab/web1:eth0``, ``container:app:eth0``, ``netns:blue:veth1``."""
    base = target.label if target.host else (f"container:{target.container}" if target.container else target.text)
    return f"{base}:{ifname}"


class Source:
    """One socket and what it captures; ``ifname`` ``""`` means every interface of the target."""

    def __init__(self, target: Target, sock: packet.PacketSocket) -> None:
        self.target, self.sock = target, sock


def open_sources(specs: Sequence[tuple[Target, str | None]], expression: str = "") -> list[Source]:
    """One socket per ``target:interface`` (no interface: every one but lo; ``any``: one socket for all)."""
    program = bpf.compile_filter(expression) if expression.strip() else None
    sources: list[Source] = []
    try:
        for target, ifname in specs:
            names = [ifname] if ifname else [n for n in packet.interfaces(target) if n != "lo"]
            if not names:
                raise UserError(f"{target.text}: no interface but lo (write {target.text}:lo or {target.text}:any)")
            for name in names:
                sock = packet.open_socket(target, "" if name == ANY else name, program)
                sources.append(Source(target, sock))
    except BaseException:
        for source in sources:
            source.sock.close()
        raise
    return sources


def resolve_specs(texts: Sequence[str]) -> list[tuple[Target, str | None]]:
    out = []
    for text in texts:
        name, ifname = split_spec(text)
        out.append((resolve(name), ifname))
    return out


Sink = Callable[[Source, str, bytes, int, bool, int], None]


def pcapng_sink(writer: pcapng.Writer) -> Sink:
    def write(source: Source, ifname: str, frame: bytes, stamp: int, outgoing: bool, hatype: int) -> None:
        interface = writer.interface(where(source.target, ifname), packet.linktype(hatype), packet.SNAPLEN,
                                     description=source.target.text)
        direction = pcapng.OUTBOUND if outgoing else pcapng.INBOUND
        writer.packet(interface, stamp, frame, len(frame), direction)

    return write


def line_sink(emit: Callable[[str], None]) -> Sink:
    def show(source: Source, ifname: str, frame: bytes, stamp: int, outgoing: bool, hatype: int) -> None:
        link = hatype != packet.ARPHRD_NONE
        emit(summary.line(stamp, where(source.target, ifname), frame, outgoing, link_header=link))

    return show


class Result:
    def __init__(self) -> None:
        self.packets = 0
        self.drops = 0


def run(sources: Sequence[Source], sink: Sink, count: int = 0, duration: float = 0.0) -> Result:
    """Read every socket until ``count`` packets (0: no limit), ``duration`` seconds (0: none) or Ctrl-C."""
    result = Result()
    deadline = time.monotonic() + duration if duration else None
    by_fd = {s.sock.fileno(): s for s in sources}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    try:
        while not count or result.packets < count:
            timeout = None
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
            for fd, _ in poller.poll(None if timeout is None else timeout * 1000):
                source = by_fd[fd]
                frame, stamp, ifname, outgoing, hatype = source.sock.receive()
                sink(source, ifname, frame, stamp if stamp is not None else time.time_ns(), outgoing, hatype)
                result.packets += 1
                if count and result.packets >= count:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        for source in sources:
            result.drops += source.sock.drops()
            source.sock.close()
    return result
