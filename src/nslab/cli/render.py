"""How results look: one table style (plain aligned columns, whatever the size) and the progress bar. No
logic, no kernel access.

On a terminal, lines are cut to its width unless ``--wide``; piped, rows are whole, every row names its host,
and nothing but text columns is printed, so ``grep``/``awk`` work on any lab. rich is only used for the
progress bar on a terminal (imported then).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..model import Lab


def piped() -> bool:
    """Output goes to a pipe or a file: whole rows, never truncated, nothing but text columns."""
    return not sys.stdout.isatty()


def _width() -> int:
    import shutil

    return shutil.get_terminal_size((120, 24)).columns


class Parts(tuple[str, ...]):
    """A cell of several parts (a host's addresses, its routes): joined by :attr:`sep` on one line, or one part
    per line when the table is too wide for the terminal."""

    sep = " "


class Routes(Parts):
    sep = ", "


Cell = str | Parts


def _text(cell: Cell) -> str:
    return cell.sep.join(cell) if isinstance(cell, Parts) else cell


def _lines_of(row: Sequence[Cell], split: bool) -> list[list[str]]:
    """A row as lines of text cells: one line, or (``split``) one line per part of its widest cell of parts."""
    if not split:
        return [[_text(c) for c in row]]
    height = max((len(c) for c in row if isinstance(c, Parts)), default=1) or 1
    lines = [["" for _ in row] for _ in range(height)]
    for i, cell in enumerate(row):
        parts = list(cell) if isinstance(cell, Parts) else [cell]
        for n, part in enumerate(parts or [""]):
            lines[n][i] = part
    return lines


def plain_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Cell]], width: int | None = None) -> str:
    """``title`` and rows under ``header`` in columns padded to their widest cell (no box drawing).
    ``width``: a terminal without ``--wide``: when a row is too wide, the parts of its cells of several parts
    (:class:`Parts`) go one per line, and what is still too wide is cut. None: one whole line per row."""
    def render(split: bool) -> list[str]:
        grid = [list(header)] + [line for r in rows for line in _lines_of(r, split)]
        widths = [max(len(line[i]) for line in grid) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
        return [fmt.format(*line).rstrip() for line in grid]

    lines = render(False)
    if width is not None and any(len(line) > width for line in lines):
        lines = render(True)
        lines = [line if len(line) <= width else line[: width - 1] + "…" for line in lines]
    return "\n".join(([title] if title else []) + lines) + "\n"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Cell]], wide: bool = False) -> None:
    """The one table style of nslab, whatever the size: plain aligned columns. On a terminal, lines are cut to
    its width unless ``wide``; piped, rows are whole (``grep``/``awk`` see every field)."""
    sys.stdout.write(plain_table(title, header, rows, None if wide or piped() else _width()))
    sys.stdout.flush()


@contextlib.contextmanager
def progress(enabled: bool = True) -> Iterator[Callable[[int, int, str], None] | None]:
    """A progress bar on a terminal; nothing at all when output is piped or disabled."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("planning", total=None)

        def update(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what)

        yield update


def _where(lab: Lab, host: str, iface: Any) -> str:
    if iface.network:
        return str(iface.network)
    link = lab.links[iface.link] if iface.link is not None else None
    peer = (link.b if link and link.a == host else link.a) if link else "?"
    return f"link:{peer}"


def up_table(lab: Lab, changed: bool, wide: bool = False) -> None:
    title = f"lab {lab.name}" + ("" if changed else " (already up to date)")
    header = ("host", "namespace", "interface", "address", "on")  # "on": a network, link:PEER or loopback-only
    repeat = piped()  # piped, every row names its host: grep HOST shows all of it
    rows: list[tuple[str, str, str, Cell, str]] = []
    for host in lab.hosts.values():
        if not host.interfaces:
            rows.append((host.name, host.namespace, "lo", "127.0.0.1/8", "loopback-only"))
        for n, iface in enumerate(host.interfaces):
            first = n == 0 or repeat
            addresses = Parts(str(a) for a in (iface.address, iface.address6) if a is not None)
            rows.append((host.name if first else "", host.namespace if first else "", iface.name, addresses,
                         _where(lab, host.name, iface)))
    table(title, header, rows, wide)


def changes(lines: Sequence[str]) -> None:
    """What an ``up`` changed, one line each (``added host web1``...)."""
    for line in lines:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def warnings(lines: Sequence[str]) -> None:
    for line in lines:
        sys.stderr.write(f"warning: {line}\n")


def _natural(name: str) -> tuple[str, int]:
    """eth2 before eth10."""
    stem = name.rstrip("0123456789")
    return stem, int(name[len(stem):] or -1)


def _routes(h: dict[str, Any]) -> Routes:
    """A host's routes, but the link-local ones every IPv6 interface has (``status --json`` keeps them)."""
    return Routes(
        f"{r['destination']} via {r['gateway']}" if r["gateway"] else f"{r['destination']} dev {r['device']}"
        for r in h["routes"] if not r["destination"].startswith("fe80::")
    )


def _interface_rows(h: dict[str, Any], repeat: bool, meant_down: set[str]) -> list[list[Cell]]:
    state = h.get("state", "running")
    if not h["present"]:
        return [[h["name"], h["namespace"], "not started" if state == "not started" else "missing", "", "", ""]]
    name = h["name"] + (" (stopped)" if state == "stopped" else "")
    loopback_only = [{"name": "lo", "addresses": ["127.0.0.1/8"], "up": True, "network": None, "link_peer": None}]
    ifaces = sorted(h["interfaces"], key=lambda i: _natural(i["name"])) or loopback_only
    rows = []
    for n, i in enumerate(ifaces):
        first = n == 0 or repeat
        on = i["network"] if i.get("network") else f"link:{i['link_peer']}" if i.get("link_peer") \
            else "loopback-only" if i["name"] == "lo" else "-"
        rows.append([name if first else "", h["namespace"] if first else "",
                     i["name"] + _down(h["name"], i, meant_down, state), on, Parts(i["addresses"]),
                     _routes(h) if n == 0 else ""])  # a host's routes once, on its first row
    return rows


def _down(host: str, iface: dict[str, Any], meant_down: set[str], state: str) -> str:
    if iface["up"]:
        return ""
    if state == "stopped":
        return " (down: stopped)"
    return " (down: nslab link)" if f"{host}:{iface['name']}" in meant_down else " (down)"


def _drift(lines: Sequence[str], host: str | None) -> None:
    """One line per difference from the lab as made (``nslab up`` repairs them); LAB/HOST: that host's."""
    if host is not None:
        lines = [line for line in lines if line.startswith(f"host {host}:")]
    for line in lines:
        sys.stdout.write(f"drift: {line}\n")
    if not lines:
        sys.stdout.write("no drift: the machine matches the lab\n")


def status(doc: dict[str, Any], wide: bool = False, host: str | None = None) -> None:
    for line in doc.get("changing", []):  # labs being made (no state yet)
        sys.stdout.write(f"{line}\n")
    if not doc["labs"]:
        sys.stdout.write("no labs are up\n")
        return
    repeat = piped()
    for lab in doc["labs"]:
        _lab_status(lab, wide, host, repeat)
    sys.stdout.flush()


def _rootless(said: dict[str, Any] | None) -> None:
    """A rootless lab's line: whose, how its services are supervised, its way out (cli/fast.py)."""
    if said:
        sys.stdout.write(f"rootless (uid {said['uid']}): services in {said['services']} (no root cgroups), "
                         f"the way out through {said['way_out']}\n")
        for line in said.get("unrelayed", ()):  # (the keeper tries again every second)
            sys.stdout.write(f"  not published: {line}\n")


def _lab_status(lab: dict[str, Any], wide: bool, host: str | None, repeat: bool) -> None:
    """One lab of ``nslab status``: its networks, hosts and each feature's part (only ``host``'s if given)."""
    sys.stdout.write(f"lab {lab['name']}  ({lab['source'] or 'no file recorded'})\n")
    _machine_line(lab)
    _rootless(lab.get("rootless"))
    hosts = [h for h in lab["hosts"] if host is None or h["name"] == host]
    if lab["networks"] and host is None:
        _networks(lab["networks"], wide)
    meant = set((lab.get("link_state") or {}).get("down", []))  # put down with `nslab link`: not drift
    rows = [row for h in hosts for row in _interface_rows(h, repeat, meant)]
    table("", ("host", "namespace", "interface", "on", "addresses", "routes"), rows, wide)
    _services(lab.get("hostsetup") or {}, wide, host)  # --- services (hostsetup) ---
    _containers(lab.get("containers") or {}, wide, host)  # --- container hosts, connected containers ---
    _ports(lab.get("firewall") or {}, wide, host)  # --- published ports (firewall) ---
    _faults(lab.get("faults") or {}, wide, host)  # --- impairments and partitions ---
    if lab.get("changing"):  # another nslab process is making or changing it: what it shows is not drift
        sys.stdout.write(f"{lab['changing']}\n")
    else:
        _drift(lab.get("drift", []), host)  # --- what differs from the lab as made (drift.py) ---
    sys.stdout.write("\n")


def _machine_line(lab: dict[str, Any]) -> None:
    """A lab across machines: which machine's part this is, the whole lab's digest, the other machines."""
    if lab.get("machine"):
        elsewhere = ", ".join(sorted({h["machine"] for h in lab.get("remote", [])})) or "none"
        sys.stdout.write(f"machine: {lab['machine']}  digest: {lab['digest']}  (hosts also on: {elsewhere})\n")


def _networks(networks: list[dict[str, Any]], wide: bool) -> None:
    table("", ("network", "bridge", "subnet", "gateway", "kind", "state"),
          [[n["name"], n["bridge"], " ".join(filter(None, (n["subnet"], n.get("subnet6")))),
            " ".join(filter(None, (n["gateway"], n.get("gateway6")))), "internal" if n["internal"] else "nat",
            "up" if n["present"] else "missing"] for n in networks], wide)


# --- nslab check ----------------------------------------------------------------------------------------
def check_matrix(matrix: Any) -> str:
    """The matrix as plain columns (greppable: one row per source host), then one line per unexpected cell."""
    def word(cell: Any) -> str:
        text = "reach" if cell.reachable else "block"
        return text if cell.ok else text.upper() + "!"

    header = ["from \\ to", *matrix.columns]
    rows = [[src, *(word(matrix.cell(src, dst)) for dst in matrix.columns)] for src in matrix.hosts]
    outside = f", outside = {matrix.outside}" if matrix.outside else ", outside not probed (no default route)"
    text = plain_table(f"lab {matrix.lab}: reachability ({matrix.probe}{outside})", header, rows)
    bad = [c for c in matrix.cells if not c.ok]
    for c in bad:
        want = "reachable" if c.expected else "blocked"
        by = "an expect: entry says" if c.by == "expect" else "the lab implies"
        text += (f"unexpected: {c.source} -> {c.target} ({c.address or 'no address'}): {c.result}, "
                 f"{by} {want}\n")
        if c.path:
            text += f"    model: {c.path}\n"
    text += f"{len(matrix.cells) - len(bad)}/{len(matrix.cells)} cells as the lab implies\n"
    return text


# --- services (hostsetup feature) ----------------------------------------------------------------------
def _services(doc: dict[str, Any], wide: bool, host: str | None) -> None:
    services = [s for s in doc.get("services") or [] if host is None or s.get("host") == host]
    if not services:
        return
    rows = []
    health = doc.get("health") or {}
    for s in services:
        state = _service_state(s, health)
        user = (s.get("user") or "root") + (" (contained)" if s.get("contained") else "")
        rows.append([s["id"], state, str(s["pid"] or ""), _exit(s),
                     str(s["restarts"]), s["restart"], user, s["command"]])
    table("", ["service", "state", "pid", "exit", "restarts", "restart", "user", "command"], rows, wide)
    supervisor = doc.get("supervisor") or {}
    if not supervisor.get("running"):
        sys.stdout.write("the lab's supervisor is not running: services are not restarted\n")


def _service_state(s: dict[str, Any], health: dict[str, Any]) -> str:
    """``running (healthy)``, ``exited (2 left)``..."""
    state = str(s["state"])
    if state == "exited" and s.get("processes"):
        state += f" ({s['processes']} left)"
    if s.get("host") in health and state == "running":
        state += f" ({health[s['host']]['status']})"
    return state


def _exit(service: dict[str, Any]) -> str:
    """The exit column: ``oom-killed`` once the kernel's OOM killer ended a run (kept through restarts)."""
    if service.get("oom_killed"):
        return "oom-killed"
    return "" if service["exit_code"] is None else str(service["exit_code"])


# --- container hosts (containers feature) --------------------------------------------------------------
def _containers(doc: dict[str, Any], wide: bool, host: str | None) -> None:
    rows = [[name, c.get("name", ""), c.get("image") or "", c.get("state", "")]
            for name, c in (doc.get("hosts") or {}).items() if host is None or name == host]
    rows += [[f"({c['network']})", c["container"], "connected", c.get("ifname", "")]
             for c in doc.get("connected") or [] if host is None]
    if rows:
        table("", ("host", "container", "image", "state"), rows, wide)


# --- published ports (firewall feature) ----------------------------------------------------------------
def _ports(doc: dict[str, Any], wide: bool, host: str | None) -> None:
    ports = [p for p in doc.get("ports") or [] if host is None or p["host"] == host]
    if ports:
        rows: list[list[Cell]] = [[_published(p), p["proto"], p["host"], Parts(filter(None, (p["to"], p.get("to6"))))]
                                  for p in ports]
        table("", ("published", "proto", "host", "leads to"), rows, wide)
    for warning in doc.get("warnings", []):
        sys.stdout.write(f"warning: {warning}\n")


def _published(p: dict[str, Any]) -> Parts:
    """Where a port is published, each family (``*:6000 [::]:6000``), as ``docker port`` lists them."""
    port = f"{p['host_port']} (picked)" if p.get("picked") else str(p["host_port"])
    if ":" in p["host_ip"]:  # IPv6 only
        return Parts([f"[{p['host_ip']}]:{port}"])
    wheres = ["*" if p["host_ip"] == "0.0.0.0" else p["host_ip"]] + (["[::]"] if p.get("to6") else [])
    return Parts(f"{where}:{port}" for where in wheres)


# --- impairments and partitions (features/impair.py, features/partitions.py) ----------------------------
def _faults(doc: dict[str, Any], wide: bool, host: str | None) -> None:
    from ..core.features.impair import describe

    rows = [["impair", f"{i['host']}:{i['interface']}", describe(i), i["source"]]
            for i in doc.get("impairments", []) if host is None or i["host"] == host]
    rows += [["partition", f"{p['a']} -> {p['b']}" if p.get("oneway") else f"{p['a']} | {p['b']}",
              "dropped one way" if p.get("oneway") else "dropped both ways", p["source"]]
             for p in doc.get("partitions", []) if host is None or host in (p["a"], p["b"])]
    if rows:
        table("", ("fault", "where", "what", "set by"), rows, wide)
    if doc.get("delayer", {}).get("running") is False:
        sys.stdout.write("warning: the packet delayer is not running: delayed traffic is dropped\n")
