"""One benchmark row, measured inside its own fresh throwaway host.

    python -m bench.rows ROW '{"json": "arguments"}'

enters a new network + mount namespace (nslab.tools.sandbox's ThrowawayHost: tmpfs over /run/netns, /etc/netns,
/run/nslab, an uplink to a ``wan`` namespace), measures, tears its labs down, leaves, and prints one line
``BENCH-RESULT {json}`` on stdout. ``python -m bench`` runs every row this way, one process per row, so rows
never share namespaces, mounts or leftovers. Raw samples are returned; medians/ratios are computed by the
caller.

Everything is timed as a wall clock around a whole command (``subprocess.run``) or a whole API call; the
baselines are measured in the same loop, interleaved and in rotating order, so that background noise hits
all of them alike.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.labfile import LAB, SUBNET, lab_text, namespace, networks_text
from nslab.tools.sandbox import WAN, WAN_ADDRESS, ThrowawayHost

REPO = Path(__file__).resolve().parent.parent

NSLAB = str(Path(sys.executable).parent / "nslab")
TUTORIAL = str(REPO / "bench" / "tutorial.sh")
RESULT_MARK = "BENCH-RESULT "


class BenchError(RuntimeError):
    pass


def run(argv: list[str], timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise BenchError(f"{' '.join(argv[:4])} ... exited {result.returncode}: {' | '.join(tail)}")
    return result


def timed(argv: list[str], timeout: float = 1800) -> float:
    start = time.perf_counter()
    run(argv, timeout=timeout)
    return time.perf_counter() - start


def timed_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rotate(items: list, k: int) -> list:
    k %= len(items)
    return items[k:] + items[:k]


def netns_names() -> set[str]:
    return set(os.listdir("/run/netns"))


def link_names() -> set[str]:
    return {name for _, name in socket.if_nameindex()}


def settle(timeout: float = 300) -> float:
    """Wait until the throwaway host is back to lo + eth0 and only the wan namespace (the kernel dismantles
    deleted namespaces asynchronously); returns how long that took. Not part of any timing."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if link_names() <= {"lo", "eth0"} and netns_names() <= {WAN}:
            return time.perf_counter() - start
        time.sleep(0.02)
    raise BenchError(
        f"the throwaway host did not settle: links {sorted(link_names())[:5]}, namespaces {sorted(netns_names())[:5]}"
    )


def write_lab(n: int, **kwargs) -> str:
    """A lab file of ``n`` hosts in a fresh temporary directory, removed when this process ends."""
    return write_text(lab_text(n, **kwargs))


def write_text(text: str) -> str:
    """``text`` as nslab.yaml in a fresh temporary directory, removed when this process ends."""
    directory = tempfile.mkdtemp(prefix="nslab-bench-")
    atexit.register(shutil.rmtree, directory, True)
    path = os.path.join(directory, "nslab.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def check_up(prefix: str, n: int) -> None:
    made = [name for name in netns_names() if name.startswith(prefix)]
    if len(made) != n:
        raise BenchError(f"expected {n} namespaces {prefix}*, found {len(made)}")
    if len(link_names()) < n + 3:  # lo, eth0, the bridge, one veth end per host
        raise BenchError(f"expected at least {n + 3} links on the machine, found {len(link_names())}")


# ------------------------------------------------------------------------------------------------
# Row 1: up / down of N hosts
# ------------------------------------------------------------------------------------------------


def row_updown(n: int, repeat: int) -> dict:
    lab_file = write_lab(n)
    ways = {
        "nslab": ([NSLAB, "up", "-f", lab_file], [NSLAB, "down", LAB], f"{LAB}-h"),
        "tutorial_exec": ([TUTORIAL, "up", str(n), "exec"], [TUTORIAL, "down", str(n)], "tut-h"),
        "tutorial_ipn": ([TUTORIAL, "up", str(n), "ipn"], [TUTORIAL, "down", str(n)], "tut-h"),
    }
    up: dict[str, list[float]] = {k: [] for k in ways}
    down: dict[str, list[float]] = {k: [] for k in ways}
    settled: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(repeat):
        for way in rotate(list(ways), r):
            up_argv, down_argv, prefix = ways[way]
            settle()
            up[way].append(timed(up_argv))
            check_up(prefix, n)
            down[way].append(timed(down_argv))
            settled[way].append(settle())
    return {"n": n, "repeat": repeat, "up": up, "down": down, "settle_after_down": settled}


# ------------------------------------------------------------------------------------------------
# Row 2: exec latency (CLI and API)
# ------------------------------------------------------------------------------------------------


def row_exec(calls: int, hosts: int = 10) -> dict:
    run([NSLAB, "up", "-f", write_lab(hosts)])
    ns = namespace(1)
    from nslab.lab import Lab, exec_host  # imported before timing: a live Python process

    clis = {
        "nslab_cli": [NSLAB, "exec", "h1", "true"],
        "ip_netns_exec": ["ip", "netns", "exec", ns, "true"],
        "nsenter": ["nsenter", f"--net=/run/netns/{ns}", "true"],
    }
    lab = Lab.from_text(lab_text(hosts))

    def api_exec_host() -> None:
        if exec_host(LAB, "h1", ["true"]).returncode != 0:
            raise BenchError("exec_host(..., ['true']) failed")

    def api_lab_exec() -> None:
        if lab.exec("h1", ["true"]).returncode != 0:
            raise BenchError("Lab.exec(..., ['true']) failed")

    measures: dict[str, Callable[[], float]] = {
        k: (lambda argv=argv: timed(argv, timeout=60)) for k, argv in clis.items()
    }
    measures["api_exec_host"] = lambda: timed_call(api_exec_host)
    measures["api_lab_exec"] = lambda: timed_call(api_lab_exec)
    samples: dict[str, list[float]] = {k: [] for k in measures}
    for m in measures.values():  # warm up: page cache, the interpreter's .pyc files
        m()
    for i in range(calls):
        for k in rotate(list(measures), i):
            samples[k].append(measures[k]())
    run([NSLAB, "down", LAB])
    return {"calls": calls, "hosts": hosts, "samples": samples}


# ------------------------------------------------------------------------------------------------
# Row 3: resident processes per idle host
# ------------------------------------------------------------------------------------------------


def processes_in(inodes: set[int]) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino in inodes:
                with open(f"/proc/{pid}/comm") as f:
                    found.append(f"{pid}:{f.read().strip()}")
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return found


def row_idle(hosts: int, wait: float = 1.0) -> dict:
    run([NSLAB, "up", "-f", write_lab(hosts)])
    time.sleep(wait)  # give anything a lab might start in the background time to show up
    inodes = {os.stat(f"/run/netns/{name}").st_ino for name in netns_names() if name.startswith(f"{LAB}-")}
    if len(inodes) != hosts:
        raise BenchError(f"expected {hosts} lab namespaces, found {len(inodes)}")
    procs = processes_in(inodes)
    run([NSLAB, "down", LAB])
    return {"hosts": hosts, "processes": procs}


# ------------------------------------------------------------------------------------------------
# Row 4: published-port throughput
# ------------------------------------------------------------------------------------------------

IPERF_PORT = 5201
PUBLISHED_PORT = 7001
UPLINK = "198.51.100.2"


def iperf(target: str, port: int, seconds: float) -> float:
    argv = [
        "ip",
        "netns",
        "exec",
        WAN,
        "iperf3",
        "-c",
        target,
        "-p",
        str(port),
        "-t",
        str(seconds),
        "-J",
        "--connect-timeout",
        "2000",
    ]
    result = run(argv, timeout=seconds + 30, check=False)
    try:
        doc = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise BenchError(f"iperf3 to {target}:{port}: {result.stderr.strip() or 'no output'}") from None
    if "error" in doc:
        raise BenchError(f"iperf3 to {target}:{port}: {doc['error']}")
    return float(doc["end"]["sum_received"]["bits_per_second"])


def open_direct_path(source: str, address: str, port: int) -> list[str]:
    """Insert ``ip saddr SOURCE ip daddr ADDRESS tcp dport PORT accept`` before every drop rule of nslab's nft
    table (inside the throwaway host); returns the chains it touched."""
    doc = json.loads(run(["nft", "-j", "-a", "list", "ruleset"]).stdout)
    touched = []
    for item in doc.get("nftables", []):
        rule = item.get("rule")
        if not rule or rule.get("table") != "nslab" or not any("drop" in e for e in rule.get("expr", [])):
            continue
        where = [rule["family"], rule["table"], rule["chain"], "position", str(rule["handle"])]
        match = ["ip", "saddr", source, "ip", "daddr", address, "tcp", "dport", str(port)]
        run(["nft", "insert", "rule", *where, *match, "accept", "comment", '"nslab-bench:direct-baseline"'])
        touched.append(rule["chain"])
    return touched


def row_publish(host: ThrowawayHost, repeat: int, seconds: float) -> dict:
    run([NSLAB, "up", "-f", write_lab(2, published=1, publish_to=IPERF_PORT)])
    ns = namespace(1)
    try:
        ruleset = run(["nft", "list", "ruleset"], check=False).stdout
        out = run(["ip", "-n", ns, "-4", "-o", "addr", "show", "eth0"]).stdout
        found = re.search(r"inet (\S+)/", out)
        assert found, out
        address = found.group(1)
        server = host.popen(
            ["ip", "netns", "exec", ns, "iperf3", "-s", "-p", str(IPERF_PORT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            if f":{IPERF_PORT} " in run(["ip", "netns", "exec", ns, "ss", "-Hltn"]).stdout:
                break
            time.sleep(0.02)
        else:
            raise BenchError("iperf3 -s did not start listening")
        run(["ip", "-n", WAN, "route", "add", SUBNET, "via", UPLINK])
        if "dnat" not in ruleset:
            return {"available": False, "reason": "no dnat rule in the ruleset after up (publishing not available)"}
        try:
            iperf(UPLINK, PUBLISHED_PORT, 1)
        except BenchError as exc:
            return {"available": False, "reason": f"published port unreachable: {exc}"}
        opened = []
        try:
            iperf(address, IPERF_PORT, 1)
        except BenchError:
            # nslab isolates a network from unsolicited inbound traffic (only replies and published ports get
            # in), so the direct baseline needs a way in: one accept for wan -> host:5201 right before each
            # drop of nslab's table. Only a connection's first packet reaches it (established traffic returns
            # earlier), so both paths pay the same per packet.
            opened = open_direct_path(WAN_ADDRESS, address, IPERF_PORT)
            iperf(address, IPERF_PORT, 1)
        samples: dict[str, list[float]] = {"published": [], "direct": []}
        targets = {"published": (UPLINK, PUBLISHED_PORT), "direct": (address, IPERF_PORT)}
        for r in range(repeat):
            for k in rotate(list(targets), r):
                samples[k].append(iperf(*targets[k], seconds))
        return {
            "available": True,
            "seconds": seconds,
            "address": address,
            "samples": samples,
            "direct_exceptions": opened,
        }
    finally:
        if "server" in locals():
            server.kill()
            server.wait()
        run([NSLAB, "down", LAB], check=False)


# ------------------------------------------------------------------------------------------------
# Row 5: ls on a machine with many namespaces
# ------------------------------------------------------------------------------------------------


def row_ls(namespaces: int, repeat: int) -> dict:
    helped = run([NSLAB, "ls", "--help"], check=False, timeout=60)
    if helped.returncode != 0:
        return {"available": False, "reason": "`nslab ls --help` failed (ls not implemented yet)"}
    run([NSLAB, "up", "-f", write_lab(namespaces, published=0)])
    commands = {"nslab_ls": [NSLAB, "ls"], "lsns": ["lsns", "-t", "net"], "ip_netns_list": ["ip", "netns", "list"]}
    samples: dict[str, list[float]] = {k: [] for k in commands}
    lines: dict[str, int] = {}
    try:
        for k, argv in commands.items():  # warm up, and how much each one shows
            lines[k] = len(run(argv).stdout.splitlines())
        for r in range(repeat):
            for k in rotate(list(commands), r):
                samples[k].append(timed(commands[k]))
    finally:
        run([NSLAB, "down", LAB], check=False)
    return {"available": True, "namespaces": namespaces, "samples": samples, "output_lines": lines}


# ------------------------------------------------------------------------------------------------
# Row 6 (issue 15): whole commands against the optimized script; unchanged up, status, exec start
# ------------------------------------------------------------------------------------------------

OPTIMIZED = str(REPO / "bench" / "optimized.sh")


def row_speed(repeat: int, sizes: list[int], calls: int, big: int = 300) -> dict:
    """nslab up/down of each size against bench/optimized.sh (interleaved, rotating order, after one untimed
    warm-up round: nslab keeps a validated lab file, see core/kept.py; the cold first ``up`` is kept apart);
    then, with ``big`` hosts up: an unchanged ``up``, ``status``, ``status --json``; with 10 hosts up:
    ``nslab exec`` vs the bare interpreter, ``Lab.exec`` vs ``ip netns exec``."""
    result: dict = {"repeat": repeat, "calls": calls, "big": big, "updown": {}, "cold_up": {}}
    for n in sizes:
        lab_file = write_lab(n)
        ways = {
            "nslab": ([NSLAB, "up", "-f", lab_file], [NSLAB, "down", LAB], f"{LAB}-h"),
            "optimized": ([OPTIMIZED, "up", str(n)], [OPTIMIZED, "down", str(n)], "opt-h"),
        }
        up: dict[str, list[float]] = {k: [] for k in ways}
        down: dict[str, list[float]] = {k: [] for k in ways}
        for r in range(-1, repeat):
            for way in rotate(list(ways), r):
                up_argv, down_argv, prefix = ways[way]
                settle()
                t_up = timed(up_argv)
                check_up(prefix, n)
                t_down = timed(down_argv)
                if r >= 0:
                    up[way].append(t_up)
                    down[way].append(t_down)
                elif way == "nslab":
                    result["cold_up"][str(n)] = t_up
        result["updown"][str(n)] = {"up": up, "down": down}
    settle()
    lab_file = write_lab(big)
    run([NSLAB, "up", "-f", lab_file])
    plain = {"unchanged_up": [NSLAB, "up", "-f", lab_file], "status": [NSLAB, "status"],
             "status_json": [NSLAB, "status", "--json"]}
    result["big_runs"] = {k: [] for k in plain}
    run(plain["unchanged_up"])  # the first unchanged up after a fresh one
    for i in range(max(repeat, 9)):
        for k in rotate(list(plain), i):
            result["big_runs"][k].append(timed(plain[k]))
    run([NSLAB, "down", LAB])
    settle()
    result["exec"] = _exec_start(calls)
    return result


def _exec_start(calls: int) -> dict:
    run([NSLAB, "up", "-f", write_lab(10)])
    from nslab.lab import Lab

    lab = Lab.from_text(lab_text(10))
    clis = {
        "nslab_exec": [NSLAB, "exec", "h1", "true"],
        "python_S": [sys.executable, "-S", "-c", "pass"],  # the bare interpreter of the same venv
        "ip_netns_exec": ["ip", "netns", "exec", namespace(1), "true"],
    }
    measures: dict[str, Callable[[], float]] = {k: (lambda argv=argv: timed(argv, timeout=60)) for k, argv in
                                                clis.items()}
    measures["lab_exec"] = lambda: timed_call(lambda: lab.exec("h1", ["true"]))
    samples: dict[str, list[float]] = {k: [] for k in measures}
    for m in measures.values():
        m()
    for i in range(calls):
        for k in rotate(list(measures), i):
            samples[k].append(measures[k]())
    run([NSLAB, "down", LAB])
    return samples


# ------------------------------------------------------------------------------------------------
# Row 7 (issue 20): growth from 1,000 to 3,000 hosts (networks of 250)
# ------------------------------------------------------------------------------------------------


#: Untimed pause between the scale row's ``up`` and its ``status`` (seconds): right after an ``up`` of 3,000
#: hosts the kernel's own after-work made ``status`` up to 2x slower (measured), which is no part of either.
AFTER_UP = 3.0


def row_scale(repeat: int, networks: list[int], per_network: int = 250) -> dict:
    """``up`` (a kept file), ``status`` and ``down`` of labs of ``networks`` x ``per_network`` hosts, the
    sizes alternating in rotating order after one untimed warm-up round (which keeps each file; its cold
    ``up`` is returned apart). Linear growth: t(3,000) / t(1,000) = 3."""
    files = {str(k * per_network): write_text(networks_text(k, per_network)) for k in networks}
    result: dict = {"repeat": repeat, "per_network": per_network, "cold_up": {},
                    "runs": {n: {"up": [], "status": [], "down": []} for n in files}}
    for r in range(-1, repeat):
        for n in rotate(list(files), r):
            settle()
            t_up = timed([NSLAB, "up", "-q", "-f", files[n]])
            check_up(f"{LAB}-h", int(n))
            time.sleep(AFTER_UP)  # the kernel is still busy with a big lab just made (bridge ports, timers)
            t_status = timed([NSLAB, "status", LAB])
            t_down = timed([NSLAB, "down", LAB])
            if r < 0:
                result["cold_up"][n] = t_up
                continue
            for op, t in (("up", t_up), ("status", t_status), ("down", t_down)):
                result["runs"][n][op].append(t)
    settle()
    return result


# ------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    row, args = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    host = ThrowawayHost().enter()
    try:
        if row == "updown":
            result = row_updown(**args)
        elif row == "exec":
            result = row_exec(**args)
        elif row == "idle":
            result = row_idle(**args)
        elif row == "publish":
            result = row_publish(host, **args)
        elif row == "ls":
            result = row_ls(**args)
        elif row == "speed":
            result = row_speed(**args)
        elif row == "scale":
            result = row_scale(**args)
        else:
            raise SystemExit(f"unknown row {row}")
    except (BenchError, subprocess.TimeoutExpired) as exc:
        result = {"error": str(exc)}
    finally:
        host.leave()
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
