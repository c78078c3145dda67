"""Peer of bench rows 1 and 2 (issue 15): Mininet, run by the system's Python (Debian's mininet package is
installed for /usr/bin/python3 only) inside the throwaway host that bench/peers.py made.

The topology is what ``mn --topo single,N --switch lxbr --controller none --nat`` builds: N hosts on one
Linux bridge (no OpenFlow controller), a NAT node in the root namespace as their default gateway, which
masquerades the subnet with iptables. Timed through Mininet's Python API, after ``import mininet`` (not
counted): up = ``Mininet(...)`` (builds every host shell, veth and address) + ``addNAT().configDefault()`` +
``start()``; down = ``stop()``.

    /usr/bin/python3 bench/peer_mininet.py updown N REPEAT   # one JSON line: {"up": [...], "down": [...]}
    /usr/bin/python3 bench/peer_mininet.py serve             # 2 hosts; each stdin line "cmd COMMAND" -> the
                                                             # seconds of one h1.cmd(COMMAND); "quit" stops
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.topo import SingleSwitchTopo

IP_BASE = "10.81.0.0/16"  # exists only inside the throwaway host


def up(n: int) -> Mininet:
    net = Mininet(topo=SingleSwitchTopo(k=n), switch=LinuxBridge, controller=None, ipBase=IP_BASE)
    net.addNAT().configDefault()
    net.start()
    return net


def settle(baseline: set[str], timeout: float = 300) -> None:
    """Wait (untimed) until the kernel has dismantled the previous run's links."""
    deadline = time.monotonic() + timeout
    while {name for _, name in socket.if_nameindex()} - baseline:
        if time.monotonic() > deadline:
            raise SystemExit("mininet: links left after stop()")
        time.sleep(0.02)


def updown(n: int, repeat: int) -> dict[str, list[float]]:
    baseline = {name for _, name in socket.if_nameindex()}
    times: dict[str, list[float]] = {"up": [], "down": []}
    for _ in range(repeat):
        settle(baseline)
        start = time.perf_counter()
        net = up(n)
        times["up"].append(time.perf_counter() - start)
        hosts = [h for h in net.hosts if h.name.startswith("h")]
        route = hosts[-1].cmd("ip route show default")
        if len(hosts) != n or "via" not in route:
            raise SystemExit(f"mininet: expected {n} hosts with a default route, got {len(hosts)}: {route!r}")
        start = time.perf_counter()
        net.stop()
        times["down"].append(time.perf_counter() - start)
    return times


def serve() -> None:
    net = up(2)
    h1 = net.get("h1")
    h1.cmd("true")  # warm up
    try:
        for line in sys.stdin:
            verb, _, command = line.strip().partition(" ")
            if verb != "cmd":
                break
            start = time.perf_counter()
            h1.cmd(command)
            print(time.perf_counter() - start, flush=True)
    finally:
        net.stop()


def main(argv: list[str]) -> int:
    setLogLevel("error")
    os.environ.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    if argv[0] == "updown":
        print(json.dumps(updown(int(argv[1]), int(argv[2]))), flush=True)
    elif argv[0] == "serve":
        serve()
    else:
        raise SystemExit(f"usage: {sys.argv[0]} updown N REPEAT | serve")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
