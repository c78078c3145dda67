"""How results look on a terminal: rich tables and the progress bar. No logic, no kernel access.

rich is imported on first use (~35 ms): the summary of a big ``up`` is printed as plain aligned columns
without it (a rich table of 1000 rows costs about a second to lay out).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..model import Lab

if TYPE_CHECKING:
    from rich.console import Console

#: Tables longer than this are printed as plain columns.
PLAIN_ROWS = 40


@functools.lru_cache(maxsize=1)
def _console() -> Console:
    from rich.console import Console

    return Console()


def _table(**kwargs: Any) -> Any:
    from rich.table import Table

    return Table(**kwargs)


def plain_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``title`` and rows under ``header`` in columns padded to their widest cell (no wrapping)."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    lines = [title, fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


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


def up_table(lab: Lab, changed: bool) -> None:
    title = f"lab {lab.name}" + ("" if changed else " (already up to date)")
    header = ("host", "namespace", "interface", "address", "on")
    rows: list[tuple[str, str, str, str, str]] = []
    for host in lab.hosts.values():
        if not host.interfaces:
            rows.append((host.name, host.namespace, "lo", "127.0.0.1/8", "(loopback only)"))
        for n, iface in enumerate(host.interfaces):
            if iface.network:
                where = f"network {iface.network}"
            else:
                link = lab.links[iface.link] if iface.link is not None else None
                peer = (link.b if link and link.a == host.name else link.a) if link else "?"
                where = f"link to {peer}"
            first = n == 0
            rows.append((host.name if first else "", host.namespace if first else "", iface.name,
                         str(iface.address), where))
    if len(rows) > PLAIN_ROWS:
        sys.stdout.write(plain_table(title, header, rows))
        sys.stdout.flush()
        return
    table = _table(title=title, title_justify="left")
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    _console().print(table)


def status(doc: dict[str, Any]) -> None:
    if not doc["labs"]:
        _console().print("no labs are up")
        return
    for lab in doc["labs"]:
        _console().print(f"[bold]lab {lab['name']}[/bold]  ({lab['source'] or 'no file recorded'})")
        if lab["networks"]:
            nets = _table(box=None, padding=(0, 2))
            for column in ("network", "bridge", "subnet", "gateway", "kind", "state"):
                nets.add_column(column)
            for n in lab["networks"]:
                nets.add_row(n["name"], n["bridge"], n["subnet"], n["gateway"],
                             "internal" if n["internal"] else "nat", "up" if n["present"] else "[red]missing[/red]")
            _console().print(nets)
        hosts = _table(box=None, padding=(0, 2))
        for column in ("host", "namespace", "interface", "addresses", "routes"):
            hosts.add_column(column)
        for h in lab["hosts"]:
            routes = "\n".join(
                f"{r['destination']} via {r['gateway']}" if r["gateway"] else f"{r['destination']} dev {r['device']}"
                for r in h["routes"]
            )
            if not h["present"]:
                hosts.add_row(h["name"], h["namespace"], "[red]missing[/red]", "", "")
                continue
            loopback_only = [{"name": "lo", "addresses": ["127.0.0.1/8"], "up": True}]
            ifaces = sorted(h["interfaces"], key=lambda i: i["name"]) or loopback_only
            meant = set((lab.get("link_state") or {}).get("down", []))
            for n, i in enumerate(ifaces):
                hosts.add_row(
                    h["name"] if n == 0 else "",
                    h["namespace"] if n == 0 else "",
                    i["name"] + ("" if i["up"] else " (down: nslab link)" if f"{h['name']}:{i['name']}" in meant
                                 else " (down)"),
                    " ".join(i["addresses"]),
                    routes if n == 0 else "",
                )
        _console().print(hosts)
        _services(lab.get("hostsetup") or {})  # --- services (hostsetup) ---
        _ports(lab.get("firewall") or {})  # --- published ports (firewall) ---
        for line in lab.get("drift", []):  # --- what differs from the lab as made (drift.py) ---
            _console().print(f"[red]drift:[/red] {line}", highlight=False)
        if not lab.get("drift"):
            _console().print("no drift: the machine matches the lab")
        _console().print()


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
        text += (f"unexpected: {c.source} -> {c.target} ({c.address or 'no address'}): {c.result}, "
                 f"the lab implies {want}\n")
    text += f"{len(matrix.cells) - len(bad)}/{len(matrix.cells)} cells as the lab implies\n"
    return text


# --- services (hostsetup feature) ----------------------------------------------------------------------
def _services(doc: dict[str, Any]) -> None:
    if not doc.get("services"):
        return
    rows = []
    for s in doc["services"]:
        state = s["state"]
        if state == "exited" and s.get("processes"):
            state += f" ({s['processes']} left)"
        rows.append([s["id"], state, str(s["pid"] or ""), "" if s["exit_code"] is None else str(s["exit_code"]),
                     str(s["restarts"]), s["restart"], s["command"]])
    header = ["service", "state", "pid", "exit", "restarts", "restart", "command"]
    fixed = sum(max(len(r[i]) for r in [header, *rows]) + 2 for i in range(6)) + 2
    room = max(12, _console().width - fixed)
    table = _table(box=None, padding=(0, 1))
    for column in header:
        table.add_column(column, no_wrap=True)
    for row in rows:
        color = "green" if row[1] == "running" else "yellow" if row[1] == "restarting" else "red"
        command = row[6] if len(row[6]) <= room else row[6][: room - 1] + "…"
        table.add_row(row[0], f"[{color}]{row[1]}[/{color}]", *row[2:6], command)
    _console().print(table)
    supervisor = doc.get("supervisor") or {}
    if not supervisor.get("running"):
        _console().print("[red]the lab's supervisor is not running: services are not restarted[/red]")


# --- published ports (firewall feature) ----------------------------------------------------------------
def _ports(doc: dict[str, Any]) -> None:
    if doc.get("ports"):
        table = _table(box=None, padding=(0, 2))
        for column in ("published", "proto", "host", "leads to"):
            table.add_column(column, no_wrap=True)
        for p in doc["ports"]:
            where = "*" if p["host_ip"] == "0.0.0.0" else p["host_ip"]
            table.add_row(f"{where}:{p['host_port']}", p["proto"], p["host"], p["to"])
        _console().print(table)
    for warning in doc.get("warnings", []):
        _console().print(f"[yellow]warning:[/yellow] {warning}")
