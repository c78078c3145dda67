"""Rootless labs against root's (issue 26): ``sudo .venv/bin/python -m bench.rootless [--hosts 100] [--repeat 3]
[--exec-calls 30] [--iperf-seconds 5]``.

In one throwaway host (nslab.tools.sandbox), with uid 65534 set up as the rootless tests do (RootlessUser: a
private 0666 /dev/net/tun node, Debian's python in a venv under /tmp):

- ``up`` / ``down`` of the benchmark lab (bench/labfile.py: N hosts on one NAT network, 10 published ports)
  as root and as the user, alternating, medians of ``--repeat`` runs. The user's ``up`` includes starting the
  keeper (user, mount and network namespaces, slirp4netns): the last ``down`` takes it away, so every ``up``
  pays for it, as a user's first lab does. After each ``down`` the bench waits (untimed) until everything is
  gone (root's namespaces; the user's keeper and state).
- ``nslab exec h1 true`` in a 10-host lab, root's and the user's, ``--exec-calls`` calls each, interleaved;
  both started the same way (``setpriv`` and ``env`` with the user's interpreter), so the difference is the
  user's join of the keeper's namespaces.
- egress throughput: ``iperf3 -c 198.51.100.1`` from h1 of a NAT network to ``wan``'s iperf3 server, through
  root's NAT (a veth and the bridge) and through the user's slirp4netns.
- a published port's throughput: ``iperf3 -c`` from the machine (the throwaway host) to a dual-stack lab
  host's iperf3 server published on 6400, over ``127.0.0.1`` (root: DNAT) and over ``[::1]`` (root: the
  supervisor's relay); the user's both through the keeper's relay.

Prints one table; changes nothing outside the throwaway host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from nslab.tools.sandbox import WAN_ADDRESS, RootlessUser, ThrowawayHost, user_venv

from .labfile import LAB, lab_text
from .rows import NSLAB, BenchError, run, settle, write_text

IPERF_PORT = 5201


def _user_run(user: RootlessUser, *args: str, timeout: float = 600) -> float:
    start = time.perf_counter()
    result = user.run(*args, timeout=timeout)
    took = time.perf_counter() - start
    if result.returncode != 0:
        raise BenchError(f"as the user: nslab {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return took


def _user_gone(user: RootlessUser, timeout: float = 30) -> None:
    """Wait (untimed) until the user's keeper has left with its last lab."""
    deadline = time.monotonic() + timeout
    while os.path.exists(user.state_root):
        if time.monotonic() > deadline:
            raise BenchError("the user's keeper did not leave after the last down")
        time.sleep(0.02)


def updown(user: RootlessUser, hosts: int, repeat: int) -> dict[str, list[float]]:
    text = lab_text(hosts)
    lab_file = write_text(text)
    user.write("nslab.yaml", text)
    samples: dict[str, list[float]] = {"root_up": [], "root_down": [], "user_up": [], "user_down": []}
    for _ in range(repeat):
        start = time.perf_counter()
        run([NSLAB, "up", "-q", "-f", lab_file])
        samples["root_up"].append(time.perf_counter() - start)
        start = time.perf_counter()
        run([NSLAB, "down", LAB])
        samples["root_down"].append(time.perf_counter() - start)
        settle()
        samples["user_up"].append(_user_run(user, "up", "-q"))
        samples["user_down"].append(_user_run(user, "down", LAB))
        _user_gone(user)
    return samples


def exec_latency(user: RootlessUser, calls: int) -> dict[str, list[float]]:
    text = lab_text(10)
    run([NSLAB, "up", "-q", "-f", write_text(text)])
    user.write("nslab.yaml", text)
    _user_run(user, "up", "-q")
    samples: dict[str, list[float]] = {"root_exec": [], "user_exec": []}
    # root's exec the way the user's is started (setpriv, env, the same interpreter): only the join differs
    env = [f"{k}={v}" for k, v in user.env().items()]
    as_root = ["setpriv", "--reuid=0", "--regid=0", "--clear-groups", "env", "-i", *env, user.nslab]
    try:
        for _ in range(calls):
            start = time.perf_counter()
            run([*as_root, "exec", "h1", "true"])
            samples["root_exec"].append(time.perf_counter() - start)
            samples["user_exec"].append(_user_run(user, "exec", "h1", "true"))
    finally:
        run([NSLAB, "down", LAB], check=False)
        user.run("down", LAB)
        settle()
        _user_gone(user)
    return samples


def egress(host: ThrowawayHost, user: RootlessUser, seconds: float) -> dict[str, list[float]]:
    if not shutil.which("iperf3"):
        raise BenchError("iperf3 is not installed (dev/setup.sh installs it)")
    host.popen(host.in_wan(["iperf3", "-s", "-p", str(IPERF_PORT), "-B", WAN_ADDRESS]),
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    text = lab_text(1, published=0)
    client = ["exec", "h1", "--", "iperf3", "-c", WAN_ADDRESS, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"]
    results: dict[str, list[float]] = {}
    run([NSLAB, "up", "-q", "-f", write_text(text)])
    try:
        results["root_egress"] = [_bits(run([NSLAB, *client], timeout=seconds + 30).stdout)]
    finally:
        run([NSLAB, "down", LAB], check=False)
        settle()
    user.write("nslab.yaml", text)
    _user_run(user, "up", "-q")
    try:
        result = user.run(*client, timeout=seconds + 30)
        results["user_egress"] = [_bits(result.stdout)]
    finally:
        user.run("down", LAB)
        _user_gone(user)
    return results


PUBLISHED = """\
name: pub
networks: {n: {ipv6: true}}
hosts:
  s: {networks: [n], publish: ["6400:5201"], run: "exec iperf3 -s -p 5201"}
"""


def published(user: RootlessUser, seconds: float) -> dict[str, list[float]]:
    if not shutil.which("iperf3"):
        raise BenchError("iperf3 is not installed (dev/setup.sh installs it)")
    results: dict[str, list[float]] = {}

    def measure(who: str) -> None:
        for family, address in (("4", "127.0.0.1"), ("6", "::1")):
            for _ in range(50):  # (the server, and the user's relays, a moment after `up`)
                done = subprocess.run(["iperf3", "-c", address, "-p", "6400", "-t", str(seconds), "-J"],
                                      capture_output=True, text=True, timeout=seconds + 30)
                if done.returncode == 0:
                    break
                time.sleep(0.1)
            results[f"{who}_published{family}"] = [_bits(done.stdout)]

    run([NSLAB, "up", "-q", "--wait", "--timeout", "20", "-f", write_text(PUBLISHED)])
    try:
        measure("root")
    finally:
        run([NSLAB, "down", "pub"], check=False)
        settle()
    user.write("nslab.yaml", PUBLISHED)
    _user_run(user, "up", "-q", "--wait", "--timeout", "20")
    try:
        measure("user")
    finally:
        user.run("down", "pub")
        _user_gone(user)
    return results


def _bits(output: str) -> float:
    doc = json.loads(output)
    if "error" in doc:
        raise BenchError(f"iperf3: {doc['error']}")
    return float(doc["end"]["sum_received"]["bits_per_second"])


def table(samples: dict[str, list[float]], hosts: int) -> str:
    med = {k: statistics.median(v) for k, v in samples.items() if v}
    lines = ["| measurement | root | rootless | rootless / root |", "|---|---|---|---|"]
    for what, root, mine, unit in ((f"up of {hosts} hosts", "root_up", "user_up", "s"),
                                   (f"down of {hosts} hosts", "root_down", "user_down", "s"),
                                   ("nslab exec h1 true", "root_exec", "user_exec", "ms"),
                                   ("egress to wan (iperf3)", "root_egress", "user_egress", "Gbit/s"),
                                   ("published port from the machine, 127.0.0.1 (iperf3)", "root_published4",
                                    "user_published4", "Gbit/s"),
                                   ("published port from the machine, [::1] (iperf3)", "root_published6",
                                    "user_published6", "Gbit/s")):
        if root not in med or mine not in med:
            continue
        scale = {"s": 1, "ms": 1e3, "Gbit/s": 1e-9}[unit]
        lines.append(f"| {what} | {med[root] * scale:.3g} {unit} | {med[mine] * scale:.3g} {unit} | "
                     f"{med[mine] / med[root]:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rootless", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--exec-calls", type=int, default=30)
    parser.add_argument("--iperf-seconds", type=float, default=5)
    parser.add_argument("--skip", default="", help="comma-separated: updown, exec, egress, published")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (it makes a throwaway host and a user in it)", file=sys.stderr)
        return 2
    skip = set(args.skip.split(",")) - {""}
    venv = tempfile.mkdtemp(prefix="nslab-user-venv-")
    host = ThrowawayHost().enter()
    user = RootlessUser(user_venv(venv)).start()
    samples: dict[str, list[float]] = {}
    try:
        if "updown" not in skip:
            samples.update(updown(user, args.hosts, args.repeat))
        if "exec" not in skip:
            samples.update(exec_latency(user, args.exec_calls))
        if "egress" not in skip:
            samples.update(egress(host, user, args.iperf_seconds))
        if "published" not in skip:
            samples.update(published(user, args.iperf_seconds))
    finally:
        user.stop()
        host.leave()
        shutil.rmtree(venv)
    print(table(samples, args.hosts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
