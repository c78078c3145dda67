"""Issue 14 on the real kernel, in a throwaway host: the lab's DNS forwarder answers over TCP too (a large answer
comes back truncated over UDP and the host's resolver asks again over TCP), and it keeps answering whatever
garbage a host sends it.

The machine's ``/etc/resolv.conf`` is a test copy naming the loopback stub 127.0.0.53 (the systemd-resolved
pitfall: hosts then use their gateway, where the lab's supervisor relays). The "resolver" at 127.0.0.53 is a
tiny server this test runs in the throwaway host (UDP and TCP): ``big.example`` has 60 addresses of TEST-NET-1
(too many for 512 bytes of UDP), ``small.example`` one. It logs each query with its transport. Nothing here
leaves the namespaces the test made.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labs import lab_status, nslab, private_resolver
from nslab import linux
from sandbox import sh

STUB = "127.0.0.53"
BIG = [f"192.0.2.{k}" for k in range(1, 61)]

RESOLVER = r'''
import socket, struct, sys, threading
log = open(sys.argv[1], "a", buffering=1)

def answer(q, transport):
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
    name, qtype = ".".join(labels).lower(), struct.unpack("!H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    log.write(f"{transport} {name} {qtype}\n")
    count = {"big.example": 60, "small.example": 1}.get(name, 0) if qtype == 1 else 0
    flags = 0x8180 if name in ("big.example", "small.example") else 0x8183
    records = b"".join(b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, k + 1])
                       for k in range(count))
    if transport == "udp" and 12 + len(question) + len(records) > 512:
        return q[:2] + struct.pack("!HHHHH", flags | 0x0200, 1, 0, 0, 0) + question  # TC: ask over TCP
    return q[:2] + struct.pack("!HHHHH", flags, 1, count, 0, 0) + question + records

def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[2], 53))
    while True:
        q, peer = s.recvfrom(65535)
        try:
            s.sendto(answer(q, "udp"), peer)
        except Exception as exc:
            log.write(f"udp garbage {exc!r}\n")

def conversation(c):
    buf = b""
    with c:
        while True:
            data = c.recv(65535)
            if not data:
                return
            buf += data
            while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                size = int.from_bytes(buf[:2], "big"); q, buf = buf[2:2 + size], buf[2 + size:]
                try:
                    a = answer(q, "tcp")
                except Exception as exc:
                    log.write(f"tcp garbage {exc!r}\n"); continue
                c.sendall(len(a).to_bytes(2, "big") + a)

t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind((sys.argv[2], 53)); t.listen(16)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, _ = t.accept()
    threading.Thread(target=conversation, args=(c,), daemon=True).start()
'''

# Run inside the lab host: queries to its gateway over UDP or TCP (several pipelined on one connection), and
# garbage of every kind.
CLIENT = r'''
import random, socket, struct, sys
mode, server = sys.argv[1], sys.argv[2]

def query(ident, name):
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)

def answers(reply):
    ident, flags, qd, an = struct.unpack("!HHHH", reply[:8])
    return f"id={ident} tc={flags >> 9 & 1} answers={an} bytes={len(reply)}"

if mode == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    s.sendto(query(7, sys.argv[3]), (server, 53)); print(answers(s.recv(65535)))
elif mode == "tcp":
    s = socket.create_connection((server, 53), timeout=3)
    names = sys.argv[3:]
    s.sendall(b"".join(len(q).to_bytes(2, "big") + q for q in (query(100 + i, n) for i, n in enumerate(names))))
    buf = b""
    for _ in names:
        while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
            data = s.recv(65535)
            if not data:
                sys.exit("closed")
            buf += data
        size = int.from_bytes(buf[:2], "big"); print(answers(buf[2:2 + size])); buf = buf[2 + size:]
elif mode == "fuzz":
    rng = random.Random(int(sys.argv[3]))
    for i in range(300):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        kind = i % 3
        data = rng.randbytes(rng.randrange(0, 12)) if kind == 0 else rng.randbytes(rng.randrange(12, 600))
        if kind == 2:  # a response, not a query
            data = data[:2] + bytes([data[2] | 0x80]) + data[3:]
        u.sendto(data, (server, 53)); u.close()
    for i in range(60):
        t = socket.create_connection((server, 53), timeout=3)
        kind = i % 4
        if kind == 0:
            t.sendall(rng.randbytes(rng.randrange(1, 400)))
        elif kind == 1:  # a frame too short for a header
            short = rng.randbytes(rng.randrange(0, 12)); t.sendall(len(short).to_bytes(2, "big") + short)
        elif kind == 2:  # promises 65535 bytes, sends 10, goes
            t.sendall(b"\xff\xff" + rng.randbytes(10))
        else:  # a query cut in the middle, then reset
            q = query(9, "small.example"); t.sendall(len(q).to_bytes(2, "big") + q[:5])
            t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.close()
    print("sent")
'''

LAB = """\
name: dt
networks: {front: {subnet: 10.77.9.0/24}}
hosts:
  a: {networks: [front]}
"""


def in_a(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", "dt-a", *argv], capture_output=True, text=True, timeout=30)


def client(*args: str) -> list[str]:
    r = in_a("python3", "-c", CLIENT, *args)
    assert r.returncode == 0, r
    return r.stdout.splitlines()


@pytest.fixture
def world(host, labs, tmp_path):
    """The machine's resolv.conf names 127.0.0.53, where the test's resolver answers; the lab ``dt`` is up."""
    log = tmp_path / "resolver.log"
    log.touch()
    proc = host.popen([sys.executable, "-c", RESOLVER, str(log), STUB], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    if os.path.isdir("/run/systemd/resolve"):  # hide the real machine's systemd-resolved upstream list
        linux.mount("tmpfs", "/run/systemd/resolve", "tmpfs", 0)
    private_resolver(tmp_path, STUB)
    labs.up(LAB)
    return log


def supervisor_pid() -> int:
    supervisor = lab_status("dt")["hostsetup"]["supervisor"]
    assert supervisor["running"] and supervisor["forwarder"]["upstreams"] == [STUB]
    return int(supervisor["pid"])


def test_large_answers_come_over_tcp_through_the_forwarder(world):
    assert "nameserver 10.77.9.1" in Path("/etc/netns/dt-a/resolv.conf").read_text()  # the gateway: forwarder
    # Over UDP the answer is truncated (as the resolver sent it); the host's resolver then asks over TCP.
    assert client("udp", "10.77.9.1", "big.example") == ["id=7 tc=1 answers=0 bytes=29"]
    out = nslab("exec", "dt/a", "--", "getent", "ahostsv4", "big.example").stdout
    assert sorted({line.split()[0] for line in out.splitlines()}) == sorted(BIG)
    log = world.read_text().splitlines()
    assert "udp big.example 1" in log and "tcp big.example 1" in log  # relayed over TCP to the resolver too
    # Several queries pipelined on one connection: each answered, whole.
    assert client("tcp", "10.77.9.1", "big.example", "small.example", "nothing.example") == [
        "id=100 tc=0 answers=60 bytes=989", "id=101 tc=0 answers=1 bytes=47", "id=102 tc=0 answers=0 bytes=33"]


def test_forwarder_survives_garbage_and_keeps_answering(world):
    pid = supervisor_pid()
    for seed in (1, 2):
        assert client("fuzz", "10.77.9.1", str(seed)) == ["sent"]
        assert client("udp", "10.77.9.1", "small.example") == ["id=7 tc=0 answers=1 bytes=47"]
        assert client("tcp", "10.77.9.1", "small.example", "big.example") == [
            "id=100 tc=0 answers=1 bytes=47", "id=101 tc=0 answers=60 bytes=989"]
    assert supervisor_pid() == pid  # the same process: it never died and was restarted
    # Nothing but queries reached the resolver: garbage was dropped at the gateway, not passed on.
    assert not [line for line in world.read_text().splitlines() if "garbage" in line]
    # Relays of the fuzzing clients are all gone (the forwarder holds no connection to the resolver).
    for _ in range(100):
        held = sh(f"ss -Htn state established '( dport = :53 and dst {STUB} )'").stdout.strip()
        if not held:
            break
        time.sleep(0.1)
    assert held == ""
