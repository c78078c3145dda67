"""Day-two verbs: ``validate`` and ``config`` (a lab file checked and rendered without root), ``events`` (what
happens to the labs, as it happens) and ``stats`` (interface counters and services' CPU, memory, pids).

``validate`` and ``config`` read the file and resolve it (core/load.py) without changing or writing anything;
as root they also check it against the machine (its routes and addresses, names already taken, sysctls),
otherwise they say on stderr that those checks were skipped. ``events`` reads each lab's events file
(core/events.py) as it grows; ``stats`` samples the kernel (tools/stats.py).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from ..core.which import find_lab_file
from . import complete
from .labs import FILE_HELP

if TYPE_CHECKING:
    from ..core.load import Checked, LabFile

#: What a user who is not root does not get checked (validate, config).
SKIPPED = "the machine's routes and addresses, names already taken, sysctls"


def _checked(file: str | None) -> tuple[LabFile, Checked]:
    """The lab file validated: against the machine as root, on its own otherwise (said on stderr)."""
    from ..core import load, state

    lab_file = load.read(find_lab_file(file))
    if os.geteuid() != 0:
        click.echo(f"nslab: skipped (needs root): checks against this machine ({SKIPPED})", err=True)
        return lab_file, load.validate(lab_file, None)
    from ..drivers import Drivers

    drivers = Drivers.live()
    try:
        return lab_file, load.validate(lab_file, drivers, state.LabState.load_or_none(lab_file.name), strict=False)
    finally:
        drivers.close()


def _raise_problems(lab_file: LabFile, checked: Checked) -> None:
    from ..core import load

    if checked.problems:
        raise load.problem_error(checked.problems, lab_file)


@click.command()
@click.option("-f", "--file", "file", default=None, metavar="FILE", help=FILE_HELP, shell_complete=complete.lab_files)
def validate(file: str | None) -> None:
    """Check the lab file and report every problem at once (exit 2), or that it is fine (exit 0).

    Changes and writes nothing; runs as any user. As root it also checks the file against this machine
    (routes and addresses in use, names already taken, sysctls); otherwise it says those were skipped.
    """
    lab_file, checked = _checked(file)
    _raise_problems(lab_file, checked)
    lab = checked.whole or checked.lab  # (a lab across machines: the whole lab, not this machine's part)
    click.echo(f"{lab_file.label}: lab {lab.name} is valid ({len(lab.hosts)} hosts, {len(lab.networks)} networks, "
               f"{len(lab.links)} links)")


@click.command()
@click.option("-f", "--file", "file", default=None, metavar="FILE", help=FILE_HELP, shell_complete=complete.lab_files)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", help="yaml (default) or json.")
def config(file: str | None, output: str) -> None:
    """Print the resolved lab: every default filled in, addresses, namespaces and interface names allocated.

    As `docker compose config`: what `up` would build from the file, without building it. Problems are
    reported as by validate (exit 2). As root the addresses avoid this machine's networks and other labs,
    as `up`'s would; otherwise only what the file says is taken into account.
    """
    import json

    from ..records import encode

    lab_file, checked = _checked(file)
    _raise_problems(lab_file, checked)
    doc = encode(checked.whole or checked.lab)
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    import yaml

    sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))


@click.command()
@click.argument("lab", required=False, shell_complete=complete.labs)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def events(lab: str | None, as_json: bool) -> None:
    """Print what happens to LAB (default: every lab) as it happens, until interrupted.

    \b
    A line within a second of each service start, exit and restart, link down or up,
    impairment change, drift found and repaired by up. --json lines:
    {"time": RFC 3339, "lab", "host", "type", ...} with type one of service-start,
    service-exit, service-restart, health, link-down, link-up, stop, start, impair,
    drift, repaired.
    """
    import json

    from ..core.events import Follower, line
    from ..linux import require_root
    from ..paths import lab_dir

    require_root("the labs' events are kept under /run/nslab, readable by root only")
    if lab is not None:
        lab_dir(lab)  # (a name that cannot be a lab's is refused here)
    follower = Follower(lab)
    try:
        while True:
            for event in follower.wait():
                click.echo(json.dumps(event) if as_json else line(event))
    finally:
        follower.close()


@click.command()
@click.argument("lab", required=False, shell_complete=complete.labs)
@click.option("--json", "as_json", is_flag=True, help="One JSON document per sample.")
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
def stats(lab: str | None, as_json: bool, no_stream: bool) -> None:
    """Per host of LAB (default: every lab): interface counters, and each service's CPU, memory and pids.

    Like `docker stats`: a new sample every second until interrupted (--no-stream: one). CPU % is over
    half a second, 100 % being one core.
    """
    from ..core import state
    from ..linux import require_root
    from ..tools.stats import sample

    require_root("stats enters the hosts' network namespaces and reads their cgroups")
    names = [lab] if lab else state.lab_names()
    if lab and state.LabState.load_or_none(lab) is None:
        from ..errors import TargetError

        raise TargetError(f"no lab '{lab}' is up")
    while True:
        docs = sample(names)
        _print_stats(docs, as_json)
        if no_stream:
            return
        time.sleep(0.5)


def _print_stats(docs: list[dict[str, Any]], as_json: bool) -> None:
    import json

    hosts = [{"lab": d["lab"], **h} for d in docs for h in d["hosts"]]
    if as_json:
        click.echo(json.dumps({"hosts": hosts}))
        return
    from .render import table

    rows = [[f"{h['lab']}/{h['host']}", i["name"], _size(i["rx_bytes"]), _size(i["tx_bytes"]),
             str(i["rx_packets"]), str(i["tx_packets"]), str(i["rx_dropped"] + i["tx_dropped"])]
            for h in hosts for i in h["interfaces"]]
    table("", ["host", "interface", "rx", "tx", "rx packets", "tx packets", "dropped"], rows)
    rows = [[f"{h['lab']}/{h['host']}", s["name"], f"{s['cpu_percent']:.1f}%", _size(s["memory_bytes"]),
             str(s["pids"])] for h in hosts for s in h["services"]]
    if rows:
        table("", ["host", "service", "cpu", "memory", "pids"], rows)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"


def register(group: click.Group) -> None:
    group.add_command(validate)
    group.add_command(config)
    group.add_command(events)
    group.add_command(stats)
