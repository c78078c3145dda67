"""Issue 24 item 8: ``nslab events --json`` prints a line within a second of a service exit and of a ``link
... down``; ``nslab stats --no-stream --json`` counts iperf3 traffic between two hosts. Real kernel, throwaway
hosts."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time

from labs import NSLAB, SERVICES_ENV, nslab, settled, wait_for

LAB = """\
name: ev
networks: {n: {}}
hosts:
  a:
    networks: [n]
    run: "while [ ! -e {flag} ]; do sleep 0.05; done; exit 3"
    restart: no
  b:
    networks: [n]
    run: exec iperf3 -s -p 5201
"""


def follow(host, *args: str) -> queue.Queue[tuple[float, dict]]:
    """``nslab events ARGS --json`` in the background: (arrival time, event) per line, once it watches."""
    proc = host.popen([NSLAB, "events", *args, "--json"], stdout=subprocess.PIPE, text=True, env=SERVICES_ENV)
    lines: queue.Queue[tuple[float, dict]] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for text in proc.stdout:
            lines.put((time.monotonic(), json.loads(text)))

    threading.Thread(target=read, daemon=True).start()
    wait_for(lambda: any("inotify" in os.readlink(f"/proc/{proc.pid}/fd/{fd}")
                         for fd in os.listdir(f"/proc/{proc.pid}/fd") if _link(proc.pid, fd)))
    return lines


def _link(pid: int, fd: str) -> bool:
    try:
        os.readlink(f"/proc/{pid}/fd/{fd}")
        return True
    except OSError:
        return False


def next_event(lines: queue.Queue[tuple[float, dict]], kind: str, timeout: float = 5.0) -> tuple[float, dict]:
    deadline = time.monotonic() + timeout
    while True:
        arrived, event = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        if event["type"] == kind:
            return arrived, event


def test_events_of_a_service_exit_and_a_link_down(lab, host, tmp_path):
    flag = tmp_path / "exit-now"
    name = lab(LAB.replace("{flag}", str(flag)))
    lines = follow(host, name)
    flag.touch()
    exited = time.monotonic()
    arrived, event = next_event(lines, "service-exit")
    assert arrived - exited < 1.0
    assert (event["lab"], event["host"], event["service"], event["exit_code"]) == ("ev", "a", "a", 3)
    assert event["time"].endswith("Z") and "T" in event["time"]
    nslab("link", f"{name}/b", "down")
    done = time.monotonic()
    arrived, event = next_event(lines, "link-down")
    assert arrived - done < 1.0 and (event["host"], event["interface"]) == ("b", "eth0")


def test_stats_count_iperf3_traffic(lab, tmp_path):
    name = lab(LAB.replace("{flag}", str(tmp_path / "never")))

    def sample() -> dict:
        doc = json.loads(nslab("stats", name, "--no-stream", "--json").stdout)
        return {h["host"]: h for h in doc["hosts"]}

    before = sample()
    nslab("exec", f"{name}/a", "--", "sh", "-c", "for i in $(seq 50); do nc -z b 5201 && exit; sleep 0.05; done")
    nslab("exec", f"{name}/a", "--", "iperf3", "-c", "b", "-p", "5201", "-n", "20M")
    def received(doc: dict) -> dict:
        return {k: doc["b"]["interfaces"][0][k] - before["b"]["interfaces"][0][k] for k in ("rx_bytes", "rx_packets")}

    # iperf3 -n 20M: the test ends once the client has written 20 MiB into its socket, and both ends stop there,
    # so what crossed the veths is most of it, not always all (18.5-21 MB seen on each end): at least half
    after = settled(sample, lambda doc: received(doc)["rx_bytes"] >= 20e6, timeout=2)
    grown = received(after)
    assert grown["rx_bytes"] >= 10e6 and grown["rx_packets"] > 100, grown  # (GRO: large packets)
    assert after["a"]["interfaces"][0]["tx_bytes"] - before["a"]["interfaces"][0]["tx_bytes"] >= 10e6
    assert set(after["b"]["interfaces"][0]) == {"name", "rx_bytes", "tx_bytes", "rx_packets", "tx_packets",
                                               "rx_dropped", "tx_dropped"}
    server = after["b"]["services"][0]
    assert server["name"] == "b" and server["pids"] == 1 and server["memory_bytes"] > 0
    assert set(server) == {"name", "cpu_percent", "memory_bytes", "pids"}
