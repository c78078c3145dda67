"""``nslab check`` of a 30-host lab, timed, next to the same matrix done by spawning ``ping`` per cell.

    sudo .venv/bin/python -m bench.check [--hosts 30] [--networks 3] [--repeat 3]

Runs inside a fresh throwaway host (nslab.tools.sandbox), like every row of ``python -m bench``. Two labs: HOSTS
hosts on one network (every cell reachable: the matrix ends as soon as every probe has its answer), and HOSTS
hosts spread over NETWORKS networks (cells across networks are blocked by isolation: they cost the probe
timeout, 1 s, once for all of them). Each is measured as:

- ``nslab check`` as a user runs it (the CLI as a subprocess, interpreter start included);
- ``check()`` in-process (the probes alone: raw ICMP sockets opened in each namespace, polled together);
- the baseline: ``ip netns exec NS ping -c1 -W1 ADDR`` for every cell, all spawned at once, waited for.

Prints the medians (seconds). Nothing is timed in the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nslab.tools.sandbox import ThrowawayHost

NSLAB = str(Path(sys.executable).parent / "nslab")


def lab_text(hosts: int, networks: int) -> str:
    lines = ["name: bench", "networks:"] + [f"  n{k}: {{subnet: 10.77.{k}.0/24}}" for k in range(networks)]
    lines.append("hosts:")
    lines += [f"  h{i}: {{networks: [n{i % networks}]}}" for i in range(hosts)]
    return "\n".join(lines) + "\n"


def ping_all() -> float:
    """Every cell of the matrix with one ``ping`` process each, all at once (the tutorials' way)."""
    from nslab.core import state
    from nslab.tools import check

    st = state.LabState.load("bench")
    assert st is not None
    lab = st.lab
    start = time.perf_counter()
    procs = []
    for src in lab.hosts.values():
        for dst in [*lab.hosts, check.OUTSIDE]:
            address = "198.51.100.1" if dst == check.OUTSIDE else check.target_address(lab, src.name, dst)
            argv = ["ip", "netns", "exec", src.namespace, "ping", "-n", "-q", "-c1", "-W1", str(address)]
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for proc in procs:
        proc.wait()
    return time.perf_counter() - start


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(hosts: int, networks: int, repeat: int) -> dict[str, float]:
    from nslab.tools import check

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nslab.yaml"
        path.write_text(lab_text(hosts, networks))
        subprocess.run([NSLAB, "up", "-f", str(path)], check=True, capture_output=True)
        try:
            samples: dict[str, list[float]] = {"nslab check (CLI)": [], "check() in-process": [],
                                               "ping per cell": []}
            for _ in range(repeat):
                cli = timed(lambda: subprocess.run([NSLAB, "check", "bench"], capture_output=True))
                samples["nslab check (CLI)"].append(cli)
                start = time.perf_counter()
                matrix = check.check("bench")
                samples["check() in-process"].append(time.perf_counter() - start)
                assert matrix.ok, [c for c in matrix.cells if not c.ok][:3]
                samples["ping per cell"].append(ping_all())
            return {k: statistics.median(v) for k, v in samples.items()}
        finally:
            subprocess.run([NSLAB, "down", "bench"], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=30)
    parser.add_argument("--networks", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    host = ThrowawayHost().enter()
    try:
        for networks in (1, args.networks):
            cells = args.hosts * (args.hosts + 1)
            results = measure(args.hosts, networks, args.repeat)
            print(f"{args.hosts} hosts on {networks} network(s), {cells} cells (medians of {args.repeat}):")
            for name, seconds in results.items():
                print(f"  {name:<22} {seconds:6.3f} s")
    finally:
        host.leave()
    return 0


if __name__ == "__main__":
    sys.exit(main())
