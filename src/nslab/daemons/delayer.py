"""The packet delayer: ``python -m nslab.daemons.delayer LAB`` (started and stopped by features/impair.py).

Where the kernel has no netem, delay and jitter are made in userspace: the host's ``inet nslab-impair`` table
sends the impaired direction's packets to an NFQUEUE (``queue num N``), and this process, bound to that queue
in the host's network namespace, holds each packet for ``delay ± jitter`` ms, then hands it back with
``NF_ACCEPT``. It speaks the nfnetlink_queue protocol on a raw netlink socket (no libnetfilter_queue, no pip
package) and asks only for packet metadata (the id), never for the packet bytes.

A process of its own rather than a part of the lab's supervisor (supervise.py): the supervisor runs only for
labs with services and its config belongs to the services feature; the delayer is started, restarted and
stopped by the impairments alone (features/impair.py through drivers/tc.py), and a converge that restarts
services never drops the packets it holds.

Config: ``/run/nslab/LAB/delayer.json`` ``{"queues": [{"netns": PATH, "queue": N, "delay": MS, "jitter": MS}]}``.
Status: ``delayer.status.json`` ``{"pid", "start", "ready"}`` or ``{"error"}``. SIGTERM ends it; the kernel drops
what is still queued when the sockets close.
"""

from __future__ import annotations

import heapq
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time
from typing import Any

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
QUEUE_MAXLEN = 20000

_HDR = struct.Struct("=IHHII")  # nlmsghdr
_NFGEN = struct.Struct("!BBH")  # nfgenmsg: family, version, resource id (the queue number, big endian)


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def message(kind: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = _NFGEN.pack(socket.AF_UNSPEC, 0, queue) + attrs
    return _HDR.pack(_HDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def bind_request(queue: int) -> list[bytes]:
    """Bind ``queue`` to this socket, metadata only, with a long queue (the delay keeps packets in it)."""
    return [
        message(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)),
                NLM_F_REQUEST | NLM_F_ACK, 1),
        message(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META) + b"\0\0\0")
                + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN)), NLM_F_REQUEST | NLM_F_ACK, 2),
    ]


def verdict(queue: int, packet_id: int) -> bytes:
    return message(NFQNL_MSG_VERDICT, queue, _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id)))


def packet_ids(data: bytes) -> list[int]:
    """The ids of the queued packets in one receive buffer; raises OSError for an error answer."""
    ids, offset = [], 0
    while offset + _HDR.size <= len(data):
        length, kind, _, _, _ = _HDR.unpack_from(data, offset)
        if length < _HDR.size:
            break
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, offset + _HDR.size)
            if code:
                raise OSError(-code, os.strerror(-code))
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            pos, end = offset + _HDR.size + _NFGEN.size, offset + length
            while pos + 4 <= end:
                alen, akind = struct.unpack_from("=HH", data, pos)
                if alen < 4:
                    break
                if akind & 0x7FFF == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, pos + 4)[0])
                pos += (alen + 3) & ~3
        offset += (length + 3) & ~3
    return ids


def open_queue(netns: str, queue: int) -> socket.socket:
    """A netlink socket bound to ``queue`` in the namespace ``netns`` (a socket stays in the namespace where it
    was made: a short-lived thread enters it, opens the socket, and vanishes)."""
    from ..linux import in_namespace

    with open(netns) as fh:
        sock = in_namespace(fh.fileno(), lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER),
                            name="nslab-queue")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, 0))
    for request in bind_request(queue):
        sock.send(request)
        packet_ids(sock.recv(65536))  # the ACK, or the error it carries
    sock.setblocking(False)
    return sock


class Delayer:
    def __init__(self, queues: list[dict[str, Any]]) -> None:
        self.selector = selectors.DefaultSelector()
        self.due: list[tuple[float, int, int, socket.socket, int]] = []  # (when, n, packet id, socket, queue)
        self.count = 0
        for q in queues:
            sock = open_queue(q["netns"], int(q["queue"]))
            self.selector.register(sock, selectors.EVENT_READ, (sock, int(q["queue"]), float(q["delay"]),
                                                                float(q.get("jitter", 0))))

    def receive(self, sock: socket.socket, queue: int, delay: float, jitter: float) -> None:
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:  # ENOBUFS: the kernel dropped some, as a full link would
                return
            now = time.monotonic()
            for packet_id in packet_ids(data):
                hold = max(0.0, delay + random.uniform(-jitter, jitter)) / 1000
                self.count += 1
                heapq.heappush(self.due, (now + hold, self.count, packet_id, sock, queue))

    def release(self) -> None:
        now = time.monotonic()
        while self.due and self.due[0][0] <= now:
            _, _, packet_id, sock, queue = heapq.heappop(self.due)
            try:
                sock.send(verdict(queue, packet_id))
            except OSError:
                pass

    def run(self, stop: list[bool]) -> None:
        while not stop:
            timeout = max(0.0, self.due[0][0] - time.monotonic()) if self.due else 1.0
            for key, _ in self.selector.select(timeout):
                self.receive(*key.data)  # (the socket itself, as registered: key.fileobj is any file-like)
            self.release()


def main(argv: list[str] | None = None) -> int:
    from .. import paths
    from ..drivers import files, procfs

    lab = (argv or sys.argv[1:])[0]
    if os.fork():
        return 0  # the caller waits for the status file, not for this process
    os.setsid()
    status = paths.delayer_status(lab)
    stop: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        config = files.read_json(paths.delayer_config(lab)) or {}
        delayer = Delayer(config.get("queues", []))
    except OSError as exc:
        files.write_json(status, {"error": f"cannot bind the NFQUEUE (nfnetlink_queue): {exc}"})
        return 1
    files.write_json(status, {"pid": os.getpid(), "start": procfs.start_time(os.getpid()), "ready": True})
    delayer.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
