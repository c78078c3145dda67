"""How results look on a terminal: rich tables and the progress bar. No logic, no kernel access."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.table import Table

from ..model import Lab

console = Console()


@contextlib.contextmanager
def progress(enabled: bool = True) -> Iterator[Callable[[int, int, str], None] | None]:
    """A progress bar on a terminal; nothing at all when output is piped or disabled."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
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
    table = Table(title=f"lab {lab.name}" + ("" if changed else " (already up to date)"), title_justify="left")
    for column in ("host", "namespace", "interface", "address", "on"):
        table.add_column(column)
    for host in lab.hosts.values():
        if not host.interfaces:
            table.add_row(host.name, host.namespace, "lo", "127.0.0.1/8", "(loopback only)")
        for n, iface in enumerate(host.interfaces):
            if iface.network:
                where = f"network {iface.network}"
            else:
                link = lab.links[iface.link] if iface.link is not None else None
                peer = (link.b if link and link.a == host.name else link.a) if link else "?"
                where = f"link to {peer}"
            first = n == 0
            table.add_row(host.name if first else "", host.namespace if first else "", iface.name,
                          str(iface.address), where)
    console.print(table)


def status(doc: dict[str, Any]) -> None:
    if not doc["labs"]:
        console.print("no labs are up")
        return
    for lab in doc["labs"]:
        console.print(f"[bold]lab {lab['name']}[/bold]  ({lab['source'] or 'no file recorded'})")
        if lab["networks"]:
            nets = Table(box=None, padding=(0, 2))
            for column in ("network", "bridge", "subnet", "gateway", "kind", "state"):
                nets.add_column(column)
            for n in lab["networks"]:
                nets.add_row(n["name"], n["bridge"], n["subnet"], n["gateway"],
                             "internal" if n["internal"] else "nat", "up" if n["present"] else "[red]missing[/red]")
            console.print(nets)
        hosts = Table(box=None, padding=(0, 2))
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
            for n, i in enumerate(ifaces):
                hosts.add_row(
                    h["name"] if n == 0 else "",
                    h["namespace"] if n == 0 else "",
                    i["name"] + ("" if i["up"] else " (down)"),
                    " ".join(i["addresses"]),
                    routes if n == 0 else "",
                )
        console.print(hosts)
        _services(lab.get("hostsetup") or {})  # --- services (hostsetup) ---
        _ports(lab.get("firewall") or {})  # --- published ports (firewall) ---
        console.print()


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
    room = max(12, console.width - fixed)
    table = Table(box=None, padding=(0, 1))
    for column in header:
        table.add_column(column, no_wrap=True)
    for row in rows:
        color = "green" if row[1] == "running" else "yellow" if row[1] == "restarting" else "red"
        command = row[6] if len(row[6]) <= room else row[6][: room - 1] + "…"
        table.add_row(row[0], f"[{color}]{row[1]}[/{color}]", *row[2:6], command)
    console.print(table)
    supervisor = doc.get("supervisor") or {}
    if not supervisor.get("running"):
        console.print("[red]the lab's supervisor is not running: services are not restarted[/red]")


# --- published ports (firewall feature) ----------------------------------------------------------------
def _ports(doc: dict[str, Any]) -> None:
    if doc.get("ports"):
        table = Table(box=None, padding=(0, 2))
        for column in ("published", "proto", "host", "leads to"):
            table.add_column(column, no_wrap=True)
        for p in doc["ports"]:
            where = "*" if p["host_ip"] == "0.0.0.0" else p["host_ip"]
            table.add_row(f"{where}:{p['host_port']}", p["proto"], p["host"], p["to"])
        console.print(table)
    for warning in doc.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}")
