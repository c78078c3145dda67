"""Published ports on the machine's IPv6 loopback (``[::1]:PORT``): a small TCP and UDP relay run by the lab's
supervisor (supervise.py), the one piece of publishing that the firewall cannot do.

Why a relay: IPv4 localhost publish is DNAT in the output hook plus ``route_localnet=1`` on the bridge (the
kernel then routes 127/8 replies arriving on it). IPv6 has no ``route_localnet``: a DNATed connection from ::1
sends its SYN (masqueraded), but the lab host's answer, once conntrack turns its destination back into ::1,
is dropped by the kernel before the input hook because it came in on a bridge (measured on kernel 6.18: the
SYN-ACK reaches the prerouting hook, never the input hook, the client times out). Docker uses its userland
proxy for the same case. The firewall leaves ``::1`` out of its IPv6 publish jump so connections reach this
relay instead.

Each entry listens on ``::1`` (IPV6_V6ONLY) and relays to the host's IPv6 address; all sockets are
non-blocking in the supervisor's selector, with per-direction buffers (a slow side never stalls the loop).
Replaces ``socat TCP6-LISTEN:PORT,bind=[::1],fork TCP6:[ADDR]:PORT`` per published port.
"""

from __future__ import annotations

import selectors
import socket
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

UDP_IDLE = 30.0  # seconds a UDP client's upstream socket lives without traffic
CHUNK = 65536


def listener(entry: dict[str, Any]) -> socket.socket:
    """A socket bound to ``entry``'s ``listen`` address and ``port`` (listening, for TCP): IPv6-only for an
    IPv6 address, IPv4 for an IPv4 one (the rootless keeper relays both, daemons/keeper.py)."""
    kind = socket.SOCK_STREAM if entry["proto"] == "tcp" else socket.SOCK_DGRAM
    six = ":" in entry["listen"]
    sock = socket.socket(socket.AF_INET6 if six else socket.AF_INET, kind)
    try:
        if six:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((entry["listen"], int(entry["port"])))
        if kind == socket.SOCK_STREAM:
            sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class _Pipe:
    """One TCP connection: the client side and the upstream side, each with what waits to be sent to it."""

    def __init__(self, client: socket.socket, upstream: socket.socket):
        self.peer = {client: upstream, upstream: client}
        self.pending: dict[socket.socket, bytes] = {client: b"", upstream: b""}
        self.eof: set[socket.socket] = set()  # sides that closed their sending direction


class LoopbackProxy:
    """Every ``[::1]`` published port of one lab (entries: listen, port, proto, to, to_port)."""

    def __init__(self, entries: list[dict[str, Any]], selector: selectors.BaseSelector,
                 bind: Callable[[dict[str, Any]], socket.socket] | None = None):
        """``bind``: makes an entry's listening socket (bound, listening for TCP) instead of this process; the
        rootless keeper's come from the machine's network namespace (daemons/keeper.py)."""
        self.selector = selector
        self.bind = bind
        self.listeners: list[socket.socket] = []
        self.targets: dict[socket.socket, tuple[str, int]] = {}
        self.pipes: dict[socket.socket, _Pipe] = {}
        self.udp: dict[socket.socket, tuple[socket.socket, Any, float]] = {}  # upstream -> (listener, client, idle)
        self.udp_clients: dict[tuple[socket.socket, Any], socket.socket] = {}
        try:
            for e in entries:
                self._listen(e)
        except OSError:
            self.close()
            raise

    def _listen(self, entry: dict[str, Any]) -> None:
        kind = socket.SOCK_STREAM if entry["proto"] == "tcp" else socket.SOCK_DGRAM
        sock = self.bind(entry) if self.bind is not None else listener(entry)
        self.listeners.append(sock)
        sock.setblocking(False)
        self.targets[sock] = (entry["to"], int(entry["to_port"]))
        what = "proxy-accept" if kind == socket.SOCK_STREAM else "proxy-datagram"
        self.selector.register(sock, selectors.EVENT_READ, (what, sock))

    # --- TCP -----------------------------------------------------------------------------------------------
    def on_accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        upstream = socket.socket(_family(self.targets[listener][0]), socket.SOCK_STREAM)
        client.setblocking(False)
        upstream.setblocking(False)
        upstream.connect_ex(self.targets[listener])  # completes later: writable once connected
        pipe = _Pipe(client, upstream)
        self.pipes[client] = self.pipes[upstream] = pipe
        self.selector.register(client, selectors.EVENT_READ, ("proxy-io", client))
        self.selector.register(upstream, selectors.EVENT_READ | selectors.EVENT_WRITE, ("proxy-io", upstream))

    def on_io(self, sock: socket.socket) -> None:
        pipe = self.pipes.get(sock)
        if pipe is None:
            return
        try:
            self._flush(pipe, sock)
            if sock not in pipe.eof and len(pipe.pending[pipe.peer[sock]]) < 4 * CHUNK:
                self._read(pipe, sock)
        except OSError:
            self._drop(pipe)
            return
        if len(pipe.eof) == 2 and not any(pipe.pending.values()):
            self._drop(pipe)
            return
        for side in pipe.peer:
            events = selectors.EVENT_WRITE if pipe.pending[side] else 0
            if side not in pipe.eof:
                events |= selectors.EVENT_READ
            self._watch(side, events)

    def _watch(self, sock: socket.socket, events: int) -> None:
        """Wait for ``events`` on ``sock`` (none: not watched; a side at its end of input would wake us forever)."""
        try:
            if events:
                self.selector.modify(sock, events, ("proxy-io", sock))
            else:
                self.selector.unregister(sock)
        except KeyError:
            if events:
                self.selector.register(sock, events, ("proxy-io", sock))

    def _read(self, pipe: _Pipe, sock: socket.socket) -> None:
        try:
            data = sock.recv(CHUNK)
        except BlockingIOError:
            return
        other = pipe.peer[sock]
        if data:
            pipe.pending[other] += data
            self._flush(pipe, other)
        else:  # this side is done sending: pass the half-close on once everything went out
            pipe.eof.add(sock)
            if not pipe.pending[other]:
                other.shutdown(socket.SHUT_WR)

    def _flush(self, pipe: _Pipe, sock: socket.socket) -> None:
        data = pipe.pending[sock]
        if not data:
            return
        try:
            sent = sock.send(data)
        except BlockingIOError:
            return
        pipe.pending[sock] = data[sent:]
        if not pipe.pending[sock] and pipe.peer[sock] in pipe.eof:
            sock.shutdown(socket.SHUT_WR)

    def _drop(self, pipe: _Pipe) -> None:
        for side in pipe.peer:
            self.pipes.pop(side, None)
            try:
                self.selector.unregister(side)
            except (KeyError, ValueError):
                pass
            side.close()

    # --- UDP -----------------------------------------------------------------------------------------------
    def on_datagram(self, listener: socket.socket) -> None:
        try:
            data, client = listener.recvfrom(CHUNK)
        except OSError:
            return
        upstream = self.udp_clients.get((listener, client))
        if upstream is None:
            upstream = socket.socket(_family(self.targets[listener][0]), socket.SOCK_DGRAM)
            upstream.setblocking(False)
            try:
                upstream.connect(self.targets[listener])
            except OSError:
                upstream.close()
                return
            self.udp_clients[(listener, client)] = upstream
            self.selector.register(upstream, selectors.EVENT_READ, ("proxy-reply", upstream))
        self.udp[upstream] = (listener, client, time.monotonic() + UDP_IDLE)
        try:
            upstream.send(data)
        except OSError:
            pass

    def on_reply(self, upstream: socket.socket) -> None:
        listener, client, _ = self.udp[upstream]
        try:
            listener.sendto(upstream.recv(CHUNK), client)
        except OSError:
            pass
        self.udp[upstream] = (listener, client, time.monotonic() + UDP_IDLE)

    def expire(self) -> None:
        now = time.monotonic()
        for upstream, (listener, client, idle) in list(self.udp.items()):
            if idle < now:
                self._forget_udp(upstream, listener, client)

    def _forget_udp(self, upstream: socket.socket, listener: socket.socket, client: Any) -> None:
        self.udp.pop(upstream, None)
        self.udp_clients.pop((listener, client), None)
        self.selector.unregister(upstream)
        upstream.close()

    def owns(self, sock: socket.socket) -> bool:
        """Whether ``sock`` (a selector event's) is one of this proxy's."""
        return sock in self.targets or sock in self.pipes or sock in self.udp

    @property
    def waiting(self) -> bool:
        """UDP clients whose upstream sockets expire (the loop must wake up for them)."""
        return bool(self.udp)

    def dispatch(self, kind: str, sock: socket.socket) -> bool:
        """Handle one selector event of this proxy's; False if ``kind`` is not one of its."""
        handler = {"proxy-accept": self.on_accept, "proxy-io": self.on_io, "proxy-datagram": self.on_datagram,
                   "proxy-reply": self.on_reply}.get(kind)
        if handler is None:
            return False
        handler(sock)
        return True

    def close(self) -> None:
        for pipe in {id(p): p for p in self.pipes.values()}.values():
            self._drop(pipe)
        for upstream, (listener, client, _) in list(self.udp.items()):
            self._forget_udp(upstream, listener, client)
        for sock in self.listeners:
            try:
                self.selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        self.listeners, self.targets = [], {}
