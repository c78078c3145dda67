"""``python -m bench``: the nslab benchmark suite (issue 6). See bench/README.md.

Runs every row in its own process inside its own fresh throwaway host (bench/rows.py), then prints one
markdown table: medians of the repeated runs, the baselines measured side by side, ratios, targets.

    sudo .venv/bin/python -m bench                          # the full suite (N = 10 100 300 1000, 3 runs)
    sudo .venv/bin/python -m bench --sizes 10 --repeat 3    # a quick run
    sudo .venv/bin/python -m bench --peers                  # and Docker, CNI, netavark, Mininet (bench/peers.py)
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from bench import peers
from bench.peers import fmt_time  # (one formatter for both tables)
from bench.rows import RESULT_MARK

REPO = Path(__file__).resolve().parent.parent
ROWS = ("updown", "exec", "idle", "publish", "ls", "speed", "scale")

# Targets of issue 6, as (text shown, predicate on the ratio/value).
UP_300 = 1 / 10
DOWN_300 = 1 / 15
GROWTH = 12.0
EXEC_CLI = 5.0
EXEC_API = 0.5
THROUGHPUT = 0.95


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10, 100, 300, 1000],
        metavar="N",
        help="host counts for the up/down rows (default: 10 100 300 1000)",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement; medians are reported (default 3)")
    p.add_argument(
        "--repeat-at",
        action="append",
        default=[],
        metavar="N=R",
        help="a different repeat count for one size, e.g. --repeat-at 1000=1",
    )
    p.add_argument("--exec-calls", type=int, default=50, help="calls per exec variant (default 50)")
    p.add_argument("--idle-hosts", type=int, default=10, help="hosts in the resident-process row (default 10)")
    p.add_argument("--iperf-seconds", type=float, default=5, help="length of one iperf3 run (default 5)")
    p.add_argument("--ls-namespaces", type=int, default=1000, help="namespaces on the machine for ls (default 1000)")
    p.add_argument("--speed-sizes", type=int, nargs="+", default=[10, 300], metavar="N",
                   help="host counts of the speed row's up/down against the optimized script (default: 10 300)")
    p.add_argument("--scale-networks", type=int, nargs="+", default=[4, 12], metavar="K",
                   help="the scale row's labs: K networks of --scale-per-network hosts each (default: 4 12, i.e. "
                        "1,000 and 3,000 hosts)")
    p.add_argument("--scale-per-network", type=int, default=250, metavar="N",
                   help="hosts per network in the scale row (default 250, at most 250)")
    p.add_argument("--skip", default="", metavar="ROW,...", help=f"rows to leave out: {', '.join(ROWS)}")
    p.add_argument("--json", metavar="FILE", help="also write the raw samples as JSON")
    peers.add_arguments(p)
    args = p.parse_args(argv)
    try:
        args.peers = peers.parse_peers(args.peers)
    except ValueError as exc:
        p.error(str(exc))
    args.skip = {s for s in args.skip.split(",") if s}
    unknown = args.skip - set(ROWS)
    if unknown:
        p.error(f"unknown row(s) in --skip: {', '.join(sorted(unknown))} (rows: {', '.join(ROWS)})")
    try:
        args.repeat_at = {int(k): int(v) for k, v in (s.split("=", 1) for s in args.repeat_at)}
    except ValueError:
        p.error("--repeat-at takes N=R, e.g. 1000=1")
    if args.repeat < 1 or any(r < 1 for r in args.repeat_at.values()):
        p.error("repeat counts must be >= 1")
    return args


def run_row(row: str, module: str = "bench.rows", **kwargs: object) -> dict:
    """One row in a fresh process and throwaway host; returns its raw result (or {'error': ...})."""
    what = f"{row} {' '.join(f'{k}={v}' for k, v in kwargs.items())}"
    print(f"bench: {what} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", module, row, json.dumps(kwargs)], cwd=REPO, capture_output=True, text=True
    )
    took = time.perf_counter() - start
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK) :])
            break
    else:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        result = {"error": f"row process exited {proc.returncode}: {tail}"}
    print(
        f"bench: {what} done in {took:.1f} s" + (f" -- ERROR {result['error']}" if "error" in result else ""),
        file=sys.stderr,
        flush=True,
    )
    result["wall_seconds"] = took
    return result


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------


def fmt_ratio(x: float) -> str:
    return f"{x:.3f}" if x < 0.1 else f"{x:.2f}"


def yes_no(ok: bool) -> str:
    return "**yes**" if ok else "**NO**"


class Table:
    HEADER = ("measurement", "nslab", "baseline A", "nslab / A", "baseline B", "nslab / B", "target", "met?")

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []
        self.notes: list[str] = []

    def add(self, *cells: str) -> None:
        cells = tuple(cells) + ("",) * (len(self.HEADER) - len(cells))
        self.rows.append(tuple(c.replace("|", "\\|") for c in cells))

    def render(self) -> str:
        lines = ["| " + " | ".join(self.HEADER) + " |", "|" + "|".join("---" for _ in self.HEADER) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


def _note_settling(table: Table, n: int, res: dict) -> None:
    """A note when the kernel went on dismantling namespaces for a while after `down` returned."""
    settle = {k: max(v) for k, v in res["settle_after_down"].items()}
    if max(settle.values()) > 0.05:
        table.notes.append(
            f"N={n}: after `down` returned, the kernel still needed up to "
            f"{fmt_time(settle['nslab'])} (nslab), {fmt_time(settle['tutorial_exec'])} (A), "
            f"{fmt_time(settle['tutorial_ipn'])} (B) to dismantle the namespaces (waited for, not timed)"
        )


def render_updown(table: Table, results: dict[int, dict]) -> None:
    meds: dict[tuple[str, str, int], float] = {}
    for n, res in sorted(results.items()):
        for op in ("up", "down"):
            if "error" in res:
                table.add(f"{op} N={n}", f"error: {res['error']}")
                continue
            m = {k: median(v) for k, v in res[op].items()}
            for k, v in m.items():
                meds[(op, k, n)] = v
            a, b = m["tutorial_exec"], m["tutorial_ipn"]
            target, met = "—", "—"
            if n == 300:
                limit = UP_300 if op == "up" else DOWN_300
                target = f"≤ {fmt_ratio(limit)} × A" if op == "up" else "≤ 1/15 (0.067) × A"
                met = yes_no(m["nslab"] / a <= limit)
            runs = len(res[op]["nslab"])
            table.add(
                f"{op} N={n} (median of {runs})",
                fmt_time(m["nslab"]),
                f"tutorial `ip netns exec`: {fmt_time(a)}",
                fmt_ratio(m["nslab"] / a),
                f"tutorial `ip -n`: {fmt_time(b)}",
                fmt_ratio(m["nslab"] / b),
                target,
                met,
            )
        if "error" not in res:
            _note_settling(table, n, res)
    for op in ("up", "down"):
        if all((op, k, n) in meds for k in ("nslab", "tutorial_exec", "tutorial_ipn") for n in (100, 1000)):
            g = {k: meds[(op, k, 1000)] / meds[(op, k, 100)] for k in ("nslab", "tutorial_exec", "tutorial_ipn")}
            table.add(
                f"{op} growth t(N=1000) / t(N=100)",
                fmt_ratio(g["nslab"]),
                f"tutorial `ip netns exec`: {fmt_ratio(g['tutorial_exec'])}",
                "—",
                f"tutorial `ip -n`: {fmt_ratio(g['tutorial_ipn'])}",
                "—",
                f"nslab ≤ {GROWTH:g}",
                yes_no(g["nslab"] <= GROWTH),
            )


def render_exec(table: Table, res: dict) -> None:
    if "error" in res:
        table.add("exec latency", f"error: {res['error']}")
        return
    m = {k: median(v) for k, v in res["samples"].items()}
    a, b = m["ip_netns_exec"], m["nsenter"]
    calls = res["calls"]
    rows = [
        ("`nslab exec HOST true` (CLI)", "nslab_cli", EXEC_CLI),
        ('API `exec_host(lab, host, ["true"])`', "api_exec_host", EXEC_API),
        ('API `Lab.exec(host, ["true"])`', "api_lab_exec", EXEC_API),
    ]
    for label, key, limit in rows:
        table.add(
            f"{label}, median per call of {calls}",
            fmt_time(m[key]),
            f"`ip netns exec NS true`: {fmt_time(a)}",
            fmt_ratio(m[key] / a),
            f"`nsenter --net=/run/netns/NS true`: {fmt_time(b)}",
            fmt_ratio(m[key] / b),
            f"≤ {limit:g} × A",
            yes_no(m[key] / a <= limit),
        )
    table.notes.append(
        "exec: every variant is started by the same Python process (`subprocess.run`, or the API call "
        f"itself), interleaved, {calls} calls each after one warm-up call"
    )


def render_idle(table: Table, res: dict) -> None:
    if "error" in res:
        table.add("resident processes per idle host", f"error: {res['error']}")
        return
    per_host = len(res["processes"]) / res["hosts"]
    table.add(
        f"resident processes per idle host (after `up` of {res['hosts']}, no services)",
        f"{per_host:g}",
        "—",
        "—",
        "—",
        "—",
        "0",
        yes_no(per_host == 0),
    )
    if res["processes"]:
        table.notes.append(f"processes found in lab namespaces: {', '.join(res['processes'][:10])}")


def render_publish(table: Table, res: dict) -> None:
    label = "published-port throughput (iperf3 from `wan`)"
    if "error" in res:
        table.add(label, f"error: {res['error']}")
        return
    if not res.get("available"):
        table.add(label, "n/a (publishing not available)", "—", "—", "—", "—", f"≥ {THROUGHPUT} × A", "n/a")
        table.notes.append(f"publish: {res['reason']}")
        return
    if res.get("direct_exceptions"):
        table.notes.append(
            "publish: nslab lets only replies and published ports into a lab network, so for the direct baseline "
            "the bench inserted one `ip saddr 198.51.100.1 ip daddr HOST tcp dport 5201 accept` before the drop "
            f"rules of nslab's table (chains: {', '.join(res['direct_exceptions'])}); only first packets reach it"
        )
    pub, direct = median(res["samples"]["published"]), median(res["samples"]["direct"])
    runs = len(res["samples"]["published"])
    table.add(
        f"{label}, median of {runs} × {res['seconds']:g} s",
        f"{pub / 1e9:.2f} Gbit/s (uplink:7001 → host:5201)",
        f"direct to {res['address']}:5201: {direct / 1e9:.2f} Gbit/s",
        fmt_ratio(pub / direct),
        "—",
        "—",
        f"≥ {THROUGHPUT} × A",
        yes_no(pub / direct >= THROUGHPUT),
    )


def render_ls(table: Table, res: dict) -> None:
    if "error" in res:
        table.add("ls", f"error: {res['error']}")
        return
    if not res.get("available"):
        table.add("`nslab ls` vs `lsns -t net`", "n/a", "—", "—", "—", "—", "—", "—")
        table.notes.append(f"ls: {res['reason']}")
        return
    m = {k: median(v) for k, v in res["samples"].items()}
    a, b = m["lsns"], m["ip_netns_list"]
    runs = len(res["samples"]["lsns"])
    table.add(
        f"`nslab ls` with {res['namespaces']} namespaces, median of {runs}",
        fmt_time(m["nslab_ls"]),
        f"`lsns -t net`: {fmt_time(a)}",
        fmt_ratio(m["nslab_ls"] / a),
        f"`ip netns list`: {fmt_time(b)}",
        fmt_ratio(m["nslab_ls"] / b),
        "—",
        "—",
    )
    lines = res["output_lines"]
    table.notes.append(
        f"ls: output lines: nslab ls {lines['nslab_ls']}, lsns -t net {lines['lsns']}, "
        f"ip netns list {lines['ip_netns_list']} (lsns only sees namespaces that have a process)"
    )


# Targets of issue 15 (ratios to the optimized script / the bare interpreter, or seconds).
SPEED_UP = {10: 2.0, 300: 0.6}
SPEED_DOWN = {10: 1.5, 300: 1.0}
SPEED_BIG = {"unchanged_up": 0.15, "status": 0.3, "status_json": 0.3}
EXEC_START = 1.3


def render_speed(table: Table, res: dict) -> None:
    """Issue 15's rows: baseline A is bench/optimized.sh (or the bare interpreter, or `ip netns exec`)."""
    if "error" in res:
        table.add("speed (issue 15)", f"error: {res['error']}")
        return
    for n, m in sorted(res["updown"].items(), key=lambda kv: int(kv[0])):
        for op, limits in (("up", SPEED_UP), ("down", SPEED_DOWN)):
            ours, opt = median(m[op]["nslab"]), median(m[op]["optimized"])
            limit = limits.get(int(n))
            table.add(f"`nslab {op}`, {n} hosts, vs bench/optimized.sh", fmt_time(ours),
                      f"optimized script: {fmt_time(opt)}", fmt_ratio(ours / opt), "—", "—",
                      f"≤ {limit:g} × A" if limit else "—", yes_no(ours / opt <= limit) if limit else "—")
    labels = {"unchanged_up": "unchanged `nslab up`", "status": "`nslab status`",
              "status_json": "`nslab status --json`"}
    for key, label in labels.items():
        t = median(res["big_runs"][key])
        table.add(f"{label}, {res['big']} hosts, median of {len(res['big_runs'][key])}", fmt_time(t), "—", "—",
                  "—", "—", f"≤ {SPEED_BIG[key]:g} s", yes_no(t <= SPEED_BIG[key]))
    m = {k: median(v) for k, v in res["exec"].items()}
    table.add(f"`nslab exec HOST true`, median of {res['calls']}", fmt_time(m["nslab_exec"]),
              f"`python -S -c pass`: {fmt_time(m['python_S'])}", fmt_ratio(m["nslab_exec"] / m["python_S"]),
              f"`ip netns exec`: {fmt_time(m['ip_netns_exec'])}", fmt_ratio(m["nslab_exec"] / m["ip_netns_exec"]),
              f"≤ {EXEC_START:g} × A", yes_no(m["nslab_exec"] / m["python_S"] <= EXEC_START))
    table.add(f"`Lab.exec(host, [\"true\"])`, median of {res['calls']}", fmt_time(m["lab_exec"]),
              f"`ip netns exec`: {fmt_time(m['ip_netns_exec'])}", fmt_ratio(m["lab_exec"] / m["ip_netns_exec"]),
              "—", "—", f"≤ {EXEC_API:g} × A", yes_no(m["lab_exec"] / m["ip_netns_exec"] <= EXEC_API))
    cold = ", ".join(f"{n} hosts {fmt_time(t)}" for n, t in res["cold_up"].items())
    table.notes.append(f"speed: the first `nslab up` of each new lab file (YAML + schema, not kept yet): {cold}; "
                       "the up/down medians follow one untimed warm-up round of both ways")


SCALE_GROWTH = 3.3  # issue 20: t(3,000 hosts) / t(1,000 hosts), up, status and down


def render_scale(table: Table, res: dict) -> None:
    """Issue 20's growth row: each size's medians, and the largest over the smallest (baseline A: the smallest)."""
    if "error" in res:
        table.add("scale (issue 20)", f"error: {res['error']}")
        return
    sizes = sorted(res["runs"], key=int)
    small, big = sizes[0], sizes[-1]
    for op in ("up", "status", "down"):
        m = {n: median(res["runs"][n][op]) for n in sizes}
        for n in sizes[1:]:
            ratio, limit = m[n] / m[small], SCALE_GROWTH * int(n) / int(small) / 3
            table.add(f"`nslab {op}`, {int(n):,} hosts ({int(n) // res['per_network']} networks of "
                      f"{res['per_network']}), median of {len(res['runs'][n][op])}", fmt_time(m[n]),
                      f"{int(small):,} hosts: {fmt_time(m[small])}", fmt_ratio(ratio), "—", "—",
                      f"≤ {limit:g} × A", yes_no(ratio <= limit))
    cold = ", ".join(f"{int(n):,} hosts {fmt_time(res['cold_up'][n])}" for n in sizes)
    table.notes.append(f"scale: the first `up` of each file (not kept yet, untimed warm-up): {cold}; sizes "
                       f"alternate in rotating order; ratio {big} / {small} hosts, linear = {int(big) / int(small):g}")


def header(args: argparse.Namespace) -> str:
    commit = (
        subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        or "?"
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "src"], capture_output=True, text=True
    ).stdout.strip()
    repeats = ", ".join(f"N={n}: {r}" for n, r in sorted(args.repeat_at.items()))
    return (
        f"nslab benchmark — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"kernel {platform.release()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
        f"nslab {commit}{' + uncommitted changes in src/' if dirty else ''}\n"
        f"sizes {' '.join(map(str, args.sizes))}; medians of {args.repeat} runs"
        + (f" ({repeats})" if repeats else "")
        + "; every row in its own fresh throwaway host; A/B = baselines measured side by side in the same loop"
    )


def run_rows(args: argparse.Namespace, table: Table, results: dict) -> None:
    """Every row not skipped, in the table's order, its samples kept in ``results``."""
    if "updown" not in args.skip:
        ud = {n: run_row("updown", n=n, repeat=args.repeat_at.get(n, args.repeat)) for n in args.sizes}
        results["updown"] = ud
        render_updown(table, ud)
    if "exec" not in args.skip:
        results["exec"] = run_row("exec", calls=args.exec_calls)
        render_exec(table, results["exec"])
    if "idle" not in args.skip:
        results["idle"] = run_row("idle", hosts=args.idle_hosts)
        render_idle(table, results["idle"])
    if "publish" not in args.skip:
        # iperf3 on a loaded 2-vCPU machine swings by 20% between runs: at least 5 runs per path
        results["publish"] = run_row("publish", repeat=max(args.repeat, 5), seconds=args.iperf_seconds)
        render_publish(table, results["publish"])
    if "ls" not in args.skip:
        results["ls"] = run_row("ls", namespaces=args.ls_namespaces, repeat=max(args.repeat, 5))
        render_ls(table, results["ls"])

    if "speed" not in args.skip:
        results["speed"] = run_row("speed", repeat=args.repeat, sizes=args.speed_sizes, calls=args.exec_calls)
        render_speed(table, results["speed"])
    if "scale" not in args.skip:
        results["scale"] = run_row("scale", repeat=args.repeat, networks=args.scale_networks,
                                   per_network=args.scale_per_network)
        render_scale(table, results["scale"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (it makes namespaces, inside throwaway hosts only)", file=sys.stderr)
        return 2
    from nslab.tools.sandbox import machine_snapshot

    # nslab as users run it: byte-compiled (with PYTHONDONTWRITEBYTECODE set, an edited tree would otherwise
    # be compiled again by every `nslab` the rows start)
    compileall.compile_dir(str(REPO / "src"), quiet=1)

    before = machine_snapshot()
    title = header(args)
    results: dict = {"args": {k: v for k, v in vars(args).items() if k != "skip"} | {"skip": sorted(args.skip)}}
    table = Table()
    run_rows(args, table, results)

    if args.peers:
        peers.run_peers(args, run_row, results)

    after = machine_snapshot()
    leftovers = {k: sorted(set(after[k]) - set(before[k])) for k in after}
    leftovers = {k: v for k, v in leftovers.items() if v}
    print(title)
    print()
    print(table.render())
    print()
    for note in table.notes:
        print(f"- {note}")
    if args.peers:
        peer_tables, peer_notes = peers.render(results)
        print()
        print("Peers (row 1's topology). Cells: median (× nslab's); peers: median (× nslab's, nslab in the same loop)")
        print()
        print(peer_tables)
        print()
        for note in peer_notes:
            print(f"- {note}")
    clean = "unchanged (no netns, link, nft table, /etc/netns entry or state left)"
    print(f"- real machine: {'LEFT WITH ' + str(leftovers) if leftovers else clean}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
