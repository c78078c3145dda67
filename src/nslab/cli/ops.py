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
from typing import TYPE_CHECKING

import click

from . import complete
from .fast import find_lab_file
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
        return lab_file, load.validate(lab_file, drivers, state.LabState.load_or_none(lab_file.name))
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
    lab = checked.lab
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
    doc = encode(checked.lab)
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    import yaml

    sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))


def register(group: click.Group) -> None:
    group.add_command(validate)
    group.add_command(config)
