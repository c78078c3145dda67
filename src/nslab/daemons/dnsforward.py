"""The lab's DNS forwarder, run inside the lab's supervisor (supervise.py): queries hosts send to port 53 of their
gateway, over UDP and over TCP, relayed to the machine's loopback resolver and back (features/dns/render.py says
when a lab needs one: the machine's resolv.conf names nothing but a loopback stub).

- UDP: each query goes out on its own connected socket to the upstream; the answer that comes back on it is
  sent to the client. Unanswered queries are forgotten after :data:`UDP_TIMEOUT` seconds.
- TCP (RFC 7766: a client retries over TCP when a UDP answer comes back truncated, so large answers need it):
  each client connection gets its own TCP connection to the upstream. The client's messages (a 2-byte length,
  then the message) are checked and passed on as they are, pipelined; the upstream's bytes come back unchanged
  (so its answers may come in any order, as RFC 7766 allows). Idle connections close after :data:`TCP_IDLE`.
- Whatever a host sends, the forwarder keeps answering the others: a datagram or message that is not a DNS
  query (shorter than a header, a response, not one question) is dropped (a TCP client that sends one is
  disconnected); a socket error ends only the exchange it belongs to; queries in flight and connections are
  capped (:data:`MAX_PENDING`, :data:`MAX_CONNECTIONS`) so no host can use up the supervisor's file
  descriptors, and buffers are bounded (reading stops while the other side does not take what it was sent).

Everything runs in the supervisor's one loop: every socket is non-blocking and registered with its selector,
with a callback ``(events) -> None`` as data (``("dns", callback)``).
Replaces: ``dnsmasq --listen-address GATEWAY --server 127.0.0.53`` (or a ``socat`` pair per gateway and protocol).
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

HEADER = 12  # bytes of a DNS header
UDP_TIMEOUT = 5.0
TCP_IDLE = 10.0
MAX_PENDING = 256  # UDP queries waiting for their answer
MAX_CONNECTIONS = 64  # TCP clients at once
MAX_BUFFERED = 2 * (2 + 65535)  # bytes held for one side of a TCP relay before reading from the other pauses
IP_FREEBIND = 15  # bind to a gateway address even while its bridge is not up yet

Callback = Callable[[int], None]


def is_query(message: bytes) -> bool:
    """A DNS query: at least a header, the QR bit saying "query" (responses are never forwarded: a host could
    otherwise make the upstream and the forwarder talk in a loop) and one question (what every query has;
    resolvers refuse others)."""
    return len(message) >= HEADER and not message[2] & 0x80 and message[4:6] == b"\x00\x01"


def take_frames(buffer: bytearray) -> list[bytes]:
    """The complete framed messages (2-byte length + message, RFC 1035 4.2.2) at the start of ``buffer``, each
    with its length prefix, removed from it; an incomplete one stays."""
    out: list[bytes] = []
    while len(buffer) >= 2:
        size = 2 + int.from_bytes(buffer[:2], "big")
        if len(buffer) < size:
            break
        out.append(bytes(buffer[:size]))
        del buffer[:size]
    return out


def release(selector: selectors.BaseSelector, sock: socket.socket) -> None:
    """Unregister (if it is) and close ``sock``."""
    try:
        selector.unregister(sock)
    except (KeyError, ValueError):
        pass
    sock.close()


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class Forwarder:
    """Listens on port 53 (UDP and TCP) of each ``listen`` address; relays to ``upstreams[0]``."""

    def __init__(self, listen: list[str], upstreams: list[str], selector: selectors.BaseSelector):
        if not upstreams:
            raise OSError(errno.EDESTADDRREQ, "no upstream resolver")
        self.upstream = upstreams[0]
        self.selector = selector
        self.pending: dict[socket.socket, tuple[socket.socket, Any, float]] = {}  # out -> (listener, client, due)
        self.relays: list[TcpRelay] = []
        self.listeners: list[socket.socket] = []
        try:
            for address in listen:
                self._listen(address, socket.SOCK_DGRAM, self._udp_listener)
                self._listen(address, socket.SOCK_STREAM, self._tcp_listener)
        except OSError:
            self.close()
            raise

    def _listen(self, address: str, kind: int, handler: Callable[[socket.socket], Callback]) -> None:
        sock = socket.socket(_family(address), kind)
        self.listeners.append(sock)
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)  # honoured by IPv6 sockets too
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, 53))
        if kind == socket.SOCK_STREAM:
            sock.listen(64)
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, ("dns", handler(sock)))

    # --- UDP ---------------------------------------------------------------------------------------------
    def _udp_listener(self, listener: socket.socket) -> Callback:
        return lambda events: self.on_query(listener)

    def on_query(self, listener: socket.socket) -> None:
        try:
            data, client = listener.recvfrom(65535)
        except OSError:
            return
        if not is_query(data) or len(self.pending) >= MAX_PENDING:
            return
        try:
            out = socket.socket(_family(self.upstream), socket.SOCK_DGRAM)
        except OSError:  # out of file descriptors: this query goes unanswered, the client retries
            return
        try:
            out.setblocking(False)
            out.connect((self.upstream, 53))
            out.send(data)
        except OSError:
            out.close()
            return
        self.pending[out] = (listener, client, time.monotonic() + UDP_TIMEOUT)
        self.selector.register(out, selectors.EVENT_READ, ("dns", lambda events: self.on_reply(out)))

    def on_reply(self, out: socket.socket) -> None:
        entry = self.pending.pop(out, None)
        try:
            answer = out.recv(65535)
            if entry is not None:
                listener, client, _ = entry
                listener.sendto(answer, client)
        except OSError:  # the upstream refused (ICMP), or the client went
            pass
        finally:
            release(self.selector, out)

    # --- TCP ---------------------------------------------------------------------------------------------
    def _tcp_listener(self, listener: socket.socket) -> Callback:
        return lambda events: self.on_connect(listener)

    def on_connect(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except OSError:  # gone meanwhile, or out of file descriptors
            return
        if len(self.relays) >= MAX_CONNECTIONS:
            client.close()
            return
        client.setblocking(False)
        self.relays.append(TcpRelay(self, client))

    def dropped(self, relay: TcpRelay) -> None:
        if relay in self.relays:
            self.relays.remove(relay)

    # --- both ----------------------------------------------------------------------------------------------
    def busy(self) -> bool:
        """Whether anything waits for an answer or a deadline (the loop then wakes at least once a second)."""
        return bool(self.pending or self.relays)

    def expire(self) -> None:
        now = time.monotonic()
        for out, (_, _, deadline) in list(self.pending.items()):
            if deadline < now:
                self.pending.pop(out)
                release(self.selector, out)
        for relay in list(self.relays):
            if relay.deadline < now:
                relay.close()

    def close(self) -> None:
        for relay in list(self.relays):
            relay.close()
        for sock in [*self.listeners, *self.pending]:
            release(self.selector, sock)
        self.listeners, self.pending = [], {}

    def drop(self, sock: Any) -> None:
        """End the exchange ``sock`` belongs to (its callback failed unexpectedly: it would fail again at once);
        the listeners stay."""
        if sock in self.listeners:
            return
        for relay in self.relays:
            if sock is relay.client or sock is relay.upstream:
                relay.close()
                return
        self.pending.pop(sock, None)
        if isinstance(sock, socket.socket):
            release(self.selector, sock)


class TcpRelay:
    """One TCP client and its own connection to the upstream: queries checked and passed on, answers back."""

    def __init__(self, forwarder: Forwarder, client: socket.socket):
        self.forwarder = forwarder
        self.client = client
        self.upstream: socket.socket | None = None
        self.connected = False
        self.from_client = bytearray()  # not yet a whole message
        self.to_upstream = bytearray()
        self.to_client = bytearray()
        self.client_done = False  # the client sent all it will (EOF)
        self.upstream_done = False
        self.shut = False  # the upstream was told that no more queries come
        self.deadline = time.monotonic() + TCP_IDLE
        self.registered: dict[socket.socket, int] = {}
        self.closed = False
        self._update()

    def on_client(self, events: int) -> None:
        if self.closed:  # ended by the other side's callback in the same round of the loop
            return
        ok = self._from_client() if events & selectors.EVENT_READ else True
        if ok and events & selectors.EVENT_WRITE:
            ok = self._send(self.client, self.to_client)
        if ok:
            self._update()
        else:
            self.close()

    def _from_client(self) -> bool:
        """Read what the client sent; False when the relay must end (an error, or not a DNS query)."""
        try:
            data = self.client.recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            self.client_done = True
            return True
        self.deadline = time.monotonic() + TCP_IDLE
        self.from_client += data
        for frame in take_frames(self.from_client):
            if not is_query(frame[2:]):
                return False  # not DNS: this client is dropped, the others go on
            self.to_upstream += frame
        return not (self.to_upstream and self.upstream is None) or self._connect()

    def on_upstream(self, events: int) -> None:
        if self.closed:
            return
        ok = True
        if events & selectors.EVENT_WRITE and not self.connected:
            ok = self.connected = self._connected()
        if ok and events & selectors.EVENT_READ:
            ok = self._from_upstream()
        if ok and self.connected and events & selectors.EVENT_WRITE:
            ok = self._send(self._upstream(), self.to_upstream)
        if ok:
            self._update()
        else:
            self.close()

    def _upstream(self) -> socket.socket:
        assert self.upstream is not None  # callbacks for it are registered once it exists
        return self.upstream

    def _connected(self) -> bool:
        """The connect finished: whether it worked (if the upstream refused, the client sees its connection end)."""
        return not self._upstream().getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def _from_upstream(self) -> bool:
        try:
            data = self._upstream().recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            self.upstream_done = True
        else:
            self.deadline = time.monotonic() + TCP_IDLE
            self.to_client += data
        return True

    def _connect(self) -> bool:
        try:
            self.upstream = socket.socket(_family(self.forwarder.upstream), socket.SOCK_STREAM)
            self.upstream.setblocking(False)
            code = self.upstream.connect_ex((self.forwarder.upstream, 53))
        except OSError:  # out of file descriptors
            return False
        self.connected = code == 0
        return code in (0, errno.EINPROGRESS)

    @staticmethod
    def _send(sock: socket.socket, buffer: bytearray) -> bool:
        """Send what ``sock`` takes now of ``buffer`` (removed from it); False if the peer is gone."""
        if not buffer:
            return True
        try:
            sent = sock.send(buffer)
        except BlockingIOError:
            return True
        except OSError:
            return False
        del buffer[:sent]
        return True

    def _finished(self) -> bool:
        """Whether the relay is over: the upstream closed and its answers are delivered, or the client closed
        with nothing asked. When the client has sent all it will, the upstream is told (half-close): the answers
        to what was asked still come back."""
        if self.upstream_done and not self.to_client:
            return True
        if self.client_done and not self.to_upstream and not self.shut:
            if self.upstream is None:
                return True
            if self.connected:
                try:
                    self.upstream.shutdown(socket.SHUT_WR)
                except OSError:
                    return True
                self.shut = True
        return False

    def _update(self) -> None:
        """Register each socket for what it waits for; close when the relay is over."""
        if self.closed:
            return
        if self._finished():
            self.close()
            return
        read = selectors.EVENT_READ
        write = selectors.EVENT_WRITE
        want = {self.client: (0 if self.client_done or len(self.to_upstream) >= MAX_BUFFERED else read)
                | (write if self.to_client else 0)}
        if self.upstream is not None:
            want[self.upstream] = (0 if self.upstream_done or len(self.to_client) >= MAX_BUFFERED else read) \
                | (write if self.to_upstream or not self.connected else 0)
        for sock, events in want.items():
            self._register(sock, events)

    def _register(self, sock: socket.socket, events: int) -> None:
        """Wait for ``events`` on ``sock`` (none: not at all), changing the selector only when they change."""
        callback = self.on_client if sock is self.client else self.on_upstream
        before = self.registered.get(sock, 0)
        if events == before:
            return
        if not events:
            self.forwarder.selector.unregister(sock)
            del self.registered[sock]
        elif before:
            self.forwarder.selector.modify(sock, events, ("dns", callback))
            self.registered[sock] = events
        else:
            self.forwarder.selector.register(sock, events, ("dns", callback))
            self.registered[sock] = events

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                release(self.forwarder.selector, sock)
        self.registered = {}
        self.forwarder.dropped(self)
