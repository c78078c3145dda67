"""``python -m bench --peers``: nslab's peers in the benchmark (issue 15). See bench/README.md, "Peers".

Owns the options, installing the peers' Debian packages when asked (apt-get, on the machine: the only thing
``--peers`` changes there), running their rows (bench/peer_rows.py, one process and throwaway host per peer
and size) and the tables that put them beside nslab and the scripts measured by row 1 of the same run.
Rendering is pure (tests/unit/test_bench_peers.py).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Callable
from statistics import median

PEERS = ("docker", "cni", "netavark", "mininet")
LABELS = {"docker": "Docker", "cni": "CNI bridge", "netavark": "netavark", "mininet": "Mininet"}
# the largest N each peer is measured at (Docker's one `docker run` per container is ~0.5 s each)
MAX_N = {"docker": 100, "cni": 300, "netavark": 300, "mininet": 300}
PEER_SIZES = (10, 100, 300)
# what each peer needs on the machine: (file, Debian package)
NEEDS = {
    "docker": [
        ("/usr/sbin/dockerd", "docker.io"),
        ("/usr/bin/docker", "docker.io"),
        ("/bin/busybox", "busybox-static"),
    ],
    "cni": [("/usr/lib/cni/bridge", "containernetworking-plugins"), ("/usr/sbin/iptables", "iptables")],
    "netavark": [("/usr/lib/podman/netavark", "netavark"), ("/usr/sbin/iptables", "iptables")],
    "mininet": [
        ("/usr/bin/mnexec", "mininet"),
        ("/usr/sbin/brctl", "bridge-utils"),
        ("/usr/sbin/iptables", "iptables"),
        ("/usr/bin/python3", "python3"),
    ],
}
# columns of row 1 that are not peers, in order (other keys of row 1's results are shown after them)
OWN = {"nslab": "nslab", "tutorial_exec": "script A (`ip netns exec`)", "tutorial_ipn": "script B (`ip -n`)"}
EXEC_LABELS = {
    "ip_netns_exec": "`ip netns exec NS true`",
    "nslab_cli": "`nslab exec HOST true` (CLI)",
    "api_lab_exec": 'nslab API `Lab.exec(host, ["true"])`',
    "docker_exec": "`docker exec CONTAINER true`",
    "mininet_cmd": 'Mininet `h1.cmd("true")` (a bash builtin: no new process)',
    "mininet_cmd_bin": 'Mininet `h1.cmd("/bin/true")`',
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--peers",
        nargs="?",
        const=",".join(PEERS),
        default="",
        metavar="PEER,...",
        help=f"also measure the peers ({', '.join(PEERS)}; default all of them), each in its own throwaway "
        "host; their missing Debian packages are installed with apt-get first",
    )
    p.add_argument(
        "--peer-sizes",
        type=int,
        nargs="+",
        default=list(PEER_SIZES),
        metavar="N",
        help="host counts for the peers (default: 10 100 300; Docker only up to 100)",
    )


def parse_peers(text: str) -> list[str]:
    """'docker,cni' -> ['docker', 'cni'] (in PEERS order); ValueError names the unknown ones."""
    asked = {s.strip() for s in text.split(",") if s.strip()}
    unknown = asked - set(PEERS)
    if unknown:
        raise ValueError(f"unknown peer(s): {', '.join(sorted(unknown))} (peers: {', '.join(PEERS)})")
    return [p for p in PEERS if p in asked]


def missing_packages(peers: list[str], exists: Callable[[str], bool]) -> list[str]:
    out: list[str] = []
    for peer in peers:
        for path, package in NEEDS[peer]:
            if not exists(path) and package not in out:
                out.append(package)
    return out


def install(peers: list[str]) -> None:
    import os.path

    packages = missing_packages(peers, os.path.exists)
    if not packages:
        return
    if shutil.which("apt-get") is None:
        raise SystemExit(f"bench: --peers needs {', '.join(packages)}, and there is no apt-get to install them")
    print(f"bench: apt-get install {' '.join(packages)} (for --peers)", file=sys.stderr, flush=True)
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
    if subprocess.run([*apt, "install", "-y", "--no-install-recommends", *packages], env=env).returncode != 0:
        subprocess.run([*apt, "update"], env=env, check=True)
        subprocess.run([*apt, "install", "-y", "--no-install-recommends", *packages], env=env, check=True)


def run_peers(args: argparse.Namespace, run_row: Callable[..., dict], results: dict) -> None:
    peers = args.peers
    install(peers)
    updown: dict[str, dict[int, dict]] = {}
    for peer in peers:
        sizes = [n for n in args.peer_sizes if n <= MAX_N[peer]]
        updown[peer] = {
            n: run_row("updown", module="bench.peer_rows", peer=peer, n=n, repeat=args.repeat_at.get(n, args.repeat))
            for n in sizes
        }
    results["peers"] = {"updown": updown}
    if "exec" not in args.skip:
        execs = [p for p in peers if p in ("docker", "mininet")]
        results["peers"]["exec"] = run_row("exec", module="bench.peer_rows", peers=execs, calls=args.exec_calls)


# ------------------------------------------------------------------------------------------------
# Rendering (pure)
# ------------------------------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.001:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_times(ratio: float) -> str:
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.0f}×"


def cell(seconds: float | None, nslab: float | None) -> str:
    if seconds is None:
        return "—"
    if nslab is None:
        return fmt_time(seconds)
    return f"{fmt_time(seconds)} ({fmt_times(seconds / nslab)})"


def render_updown(own: dict[int, dict], peers: dict[str, dict[int, dict]], notes: list[str]) -> str:
    """One markdown table: up and down per N, the columns of row 1 (nslab, both scripts, any other way it
    measured) then each peer; each cell a median and its ratio to nslab's: for row 1's ways, row 1's nslab;
    for a peer, the nslab measured in the peer's own loop (``nslab_up``/``nslab_down``), side by side, shown
    after the ratio ("7.81 s (6.07× 1.29 s)")."""
    own_keys = [k for k in OWN if any(k in r.get("up", {}) for r in own.values())]
    own_keys += sorted({k for r in own.values() for k in r.get("up", {})} - set(own_keys))
    header = ["measurement", *(OWN.get(k, k) for k in own_keys), *(LABELS[p] for p in peers)]
    sizes = sorted({n for r in peers.values() for n in r} or set(own))
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for n in sizes:
        for op in ("up", "down"):
            row = _updown_row(n, op, own.get(n, {}), own_keys, peers, notes)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def _updown_row(n: int, op: str, own_res: dict, own_keys: list[str], peers: dict[str, dict[int, dict]],
                notes: list[str]) -> list[str]:
    """The cells of one row (``op`` at size ``n``): row 1's ways, then each peer."""
    meds: dict[str, float | None] = {k: med(own_res.get(op, {}).get(k)) for k in own_keys}
    cells = [_peer_cell(peer, n, op, by_n.get(n), meds.get("nslab"), notes) for peer, by_n in peers.items()]
    if "error" in own_res:
        notes.append(f"row 1 N={n}: {own_res['error']}")
    nslab = meds.get("nslab")
    return [f"{op} N={n}", *(cell(meds[k], None if k == "nslab" else nslab) for k in own_keys), *cells]


def _peer_cell(peer: str, n: int, op: str, res: dict | None, nslab: float | None, notes: list[str]) -> str:
    """A peer's cell: its median and its ratio to nslab's as measured in the peer's own loop when it was, else
    to row 1's nslab (``nslab``); "error" with a note."""
    if res is not None and "error" in res:
        notes.append(f"{LABELS[peer]} N={n}: {res['error']}")
        return "error"
    if res and res.get(f"nslab_{op}"):
        base = median(res[f"nslab_{op}"])
        return f"{fmt_time(median(res[op]))} ({fmt_times(median(res[op]) / base)} {fmt_time(base)})"
    return cell(med(res.get(op) if res else None), nslab)


def med(samples: list[float] | None) -> float | None:
    return median(samples) if samples else None


def render_exec(res: dict, notes: list[str]) -> str:
    lines = ["| exec `true` in a host | median per call | × `ip netns exec` |", "|---|---|---|"]
    if "error" in res:
        notes.append(f"peers exec: {res['error']}")
        return "\n".join([*lines, "| error | — | — |"])
    m = {k: median(v) for k, v in res["samples"].items()}
    base = m.get("ip_netns_exec")
    for key, label in EXEC_LABELS.items():
        if key in m:
            ratio = fmt_times(m[key] / base) if base else "—"
            lines.append(f"| {label} | {fmt_time(m[key])} | {ratio} |")
    notes.append(
        f"peers exec: every way interleaved in one loop, {res['calls']} calls each; the CLIs are started by "
        "the bench's Python process, Mininet's node.cmd is timed inside Mininet's own process"
    )
    return "\n".join(lines)


def render(results: dict) -> tuple[str, list[str]]:
    """The peers' tables (markdown) and their notes."""
    notes: list[str] = []
    peers = results.get("peers", {})
    parts = [render_updown(results.get("updown", {}), peers.get("updown", {}), notes)]
    if "exec" in peers:
        parts.append(render_exec(peers["exec"], notes))
    return "\n\n".join(parts), notes
