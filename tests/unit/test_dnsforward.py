"""The DNS forwarder's TCP relay and its checks (dnsforward.py), without the network: framing and the query
check fuzzed with random bytes, and relays driven over in-process socket pairs (AF_UNIX) in place of the
client's connection and the upstream's, through a selector loop as the supervisor runs it."""

from __future__ import annotations

import random
import selectors
import socket
import struct

import pytest

from nslab.daemons import dnsforward
from nslab.daemons.dnsforward import Forwarder, TcpRelay, is_query, take_frames


def query(ident: int, name: str = "big.example") -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def framed(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def test_is_query():
    assert is_query(query(1))
    assert not is_query(b"\x00" * 11)  # shorter than a header
    answer = bytearray(query(1))
    answer[2] |= 0x80
    assert not is_query(bytes(answer))  # a response is never forwarded
    two = bytearray(query(1))
    two[5] = 2
    assert not is_query(bytes(two))  # a query has one question


def test_take_frames_reassembles_and_keeps_the_rest():
    stream = framed(query(1)) + framed(query(2)) + framed(query(3))[:5]
    buffer = bytearray()
    got: list[bytes] = []
    for i in range(0, len(stream), 7):  # arrives in pieces
        buffer += stream[i:i + 7]
        got += take_frames(buffer)
    assert got == [framed(query(1)), framed(query(2))]
    assert bytes(buffer) == framed(query(3))[:5]


def test_take_frames_never_raises_on_random_bytes():
    rng = random.Random(14)
    for _ in range(2000):
        data = bytearray(rng.randbytes(rng.randrange(0, 40)))
        before = len(data)
        frames = take_frames(data)
        assert sum(len(f) for f in frames) + len(data) == before
        assert all(len(f) == 2 + int.from_bytes(f[:2], "big") for f in frames)
        for f in frames:
            is_query(f[2:])  # no exception either


class Loop:
    """The supervisor's loop in small: a selector whose keys carry ("dns", callback)."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()

    def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            ready = self.selector.select(0.01)
            if not ready:
                return
            for key, events in ready:
                key.data[1](events)


class FakeUpstream:
    """The upstream's end of each relay's connection: answers every framed query with its id echoed."""

    def __init__(self) -> None:
        self.ends: list[socket.socket] = []

    def connect(self, relay: TcpRelay) -> bool:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        theirs.setblocking(False)
        relay.upstream, relay.connected = ours, True
        self.ends.append(theirs)
        return True

    def answer(self) -> int:
        answered = 0
        for end in self.ends:
            try:
                data = bytearray(end.recv(65536))
            except (BlockingIOError, OSError):
                continue
            for frame in take_frames(data):
                reply = bytearray(frame[2:])
                reply[2] |= 0x80
                try:
                    end.sendall(framed(bytes(reply) + b"\x00" * 1500))  # larger than a UDP answer
                except OSError:  # that relay is gone
                    continue
                answered += 1
        return answered


@pytest.fixture
def world(monkeypatch):
    loop = Loop()
    upstream = FakeUpstream()
    monkeypatch.setattr(TcpRelay, "_connect", lambda self: upstream.connect(self))
    forwarder = Forwarder.__new__(Forwarder)  # without listeners: relays are handed their client directly
    forwarder.upstream, forwarder.selector, forwarder.pending, forwarder.relays = "192.0.2.1", loop.selector, {}, []
    forwarder.listeners = []
    yield loop, upstream, forwarder
    forwarder.close()
    for end in upstream.ends:
        end.close()


def client(forwarder: Forwarder) -> socket.socket:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    forwarder.relays.append(TcpRelay(forwarder, ours))
    theirs.settimeout(1)
    return theirs


def exchange(loop: Loop, upstream: FakeUpstream, peer: socket.socket, ident: int) -> bytes:
    peer.sendall(framed(query(ident)))
    loop.pump()
    assert upstream.answer() >= 1
    loop.pump()
    buffer = bytearray()
    while not take_frames(bytearray(buffer)):
        buffer += peer.recv(65536)
    return take_frames(buffer)[0][2:]


def test_queries_are_relayed_and_answers_come_back(world):
    loop, upstream, forwarder = world
    peer = client(forwarder)
    answer = exchange(loop, upstream, peer, 0x4242)
    assert answer[:2] == b"\x42\x42" and answer[2] & 0x80 and len(answer) > 1500
    assert exchange(loop, upstream, peer, 7)[:2] == b"\x00\x07"  # the same connection, a second query
    peer.close()
    loop.pump()
    for end in upstream.ends:  # the relay told the upstream (half-close); it closes its side in turn
        end.close()
    loop.pump()
    assert forwarder.relays == []


def test_fuzzed_clients_are_dropped_and_the_others_still_get_answers(world):
    loop, upstream, forwarder = world
    rng = random.Random(1414)
    good = client(forwarder)
    for round_ in range(60):
        bad = client(forwarder)
        kind = round_ % 4
        if kind == 0:  # random bytes
            bad.sendall(rng.randbytes(rng.randrange(1, 300)))
        elif kind == 1:  # a frame too short for a DNS header
            bad.sendall(framed(rng.randbytes(rng.randrange(0, 12))))
        elif kind == 2:  # a response instead of a query
            reply = bytearray(query(round_))
            reply[2] |= 0x80
            bad.sendall(framed(bytes(reply)))
        else:  # a length that promises more than ever comes, then the client goes
            bad.sendall(b"\xff\xff" + rng.randbytes(10))
            bad.close()
        loop.pump()
        upstream.answer()
        loop.pump()
        if kind != 3:
            bad.close()
        if round_ % 10 == 0:
            assert exchange(loop, upstream, good, round_)[:2] == round_.to_bytes(2, "big")
    loop.pump()
    assert len(forwarder.relays) == 1  # only the good client's relay is left
    assert exchange(loop, upstream, good, 999)[:2] == (999).to_bytes(2, "big")


def test_idle_relays_expire(world, monkeypatch):
    loop, upstream, forwarder = world
    client(forwarder)
    assert forwarder.busy()
    monkeypatch.setattr(dnsforward.time, "monotonic", lambda: 1e12)
    forwarder.expire()
    assert forwarder.relays == [] and not forwarder.busy()


def test_connections_are_capped(world, monkeypatch):
    loop, upstream, forwarder = world
    monkeypatch.setattr(dnsforward, "MAX_CONNECTIONS", 2)

    class Listener:
        def accept(self) -> tuple[socket.socket, str]:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            peers.append(theirs)
            return ours, ""

    peers: list[socket.socket] = []
    for _ in range(3):
        forwarder.on_connect(Listener())
    assert len(forwarder.relays) == 2
    peers[2].settimeout(1)
    assert peers[2].recv(10) == b""  # the third was closed at once
    for s in peers:
        s.close()


def test_no_upstream_is_an_error_not_a_crash_later():
    with pytest.raises(OSError):
        Forwarder(["192.0.2.1"], [], selectors.DefaultSelector())


def test_drop_ends_only_the_exchange_of_a_failed_callback(world):
    loop, upstream, forwarder = world
    doomed, kept = client(forwarder), client(forwarder)
    doomed.sendall(framed(query(1)))
    loop.pump()
    first = forwarder.relays[0]
    assert first.upstream is not None
    forwarder.drop(first.upstream)  # the supervisor does this when a callback raises
    assert first.closed and forwarder.relays == [forwarder.relays[0]] and forwarder.relays[0] is not first
    assert doomed.recv(10) == b""  # its client sees the end
    assert exchange(loop, upstream, kept, 5)[:2] == b"\x00\x05"
