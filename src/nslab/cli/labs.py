"""Lab verbs: ``up``, ``down``, ``status`` (``exec`` and ``shell`` live in :mod:`nslab.cli.targets`).

Logic lives in :mod:`nslab.lab`; this module parses options and renders (tables via
:mod:`nslab.cli.render`).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import click

from ..errors import NslabError, UserError

if TYPE_CHECKING:
    from ..lab import Lab

DEFAULT_FILE = "nslab.yaml"


def _load(file: str) -> Lab:
    from ..lab import Lab

    if not os.path.exists(file):
        hint = " (or pass -f FILE)" if file == DEFAULT_FILE else ""
        raise UserError(f"no lab file {file}{hint}")
    return Lab.load(file)


@click.command()
@click.option("-f", "--file", "file", default=DEFAULT_FILE, show_default=True, help="The lab file.")
@click.option("--dry-run", is_flag=True, help="Print the change as a script (ip, nft, sysctl, files); change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the resulting status as JSON.")
def up(file: str, dry_run: bool, as_json: bool) -> None:
    """Create the lab, or converge it to the file if it is up already.

    Wires hosts, networks and links, loads the firewall rules (NAT, isolation, published ports), writes
    each host's /etc/netns files and hostname, and starts its services.
    """
    from ..linux import require_root
    from . import render

    require_root()
    lab = _load(file)
    with render.progress(enabled=not as_json and not dry_run) as bar:
        result = lab.up(dry_run=dry_run, progress=bar)
    if dry_run:
        commands = result.commands()
        for line in result.repairs:
            click.echo(f"# repairs drift: {line}")
        if not commands:
            click.echo(f"# lab {lab.name} is up to date; nothing to do")
        for command in commands:
            click.echo(command)
        return
    if as_json:
        from ..lab import status

        click.echo(json.dumps(status(lab.name), indent=2))
        return
    render.up_table(result.lab, changed=result.applied)
    for line in result.repairs:
        click.echo(f"{'repaired' if result.applied else 'not repaired'}: {line}")


@click.command()
@click.argument("lab_name", required=False, metavar="[LAB]")
@click.option("-f", "--file", "file", default=None, help="Take the lab name from this file.")
def down(lab_name: str | None, file: str | None) -> None:
    """Remove everything a lab created.

    Stops its services first. Works from recorded state, so the lab file may have been edited or deleted.
    Without LAB, the lab named in ./nslab.yaml (or -f FILE).
    """
    from .fast import down as down_and_report

    if lab_name is None:
        lab_name = _load(file or DEFAULT_FILE).name
    elif file is not None:
        raise click.UsageError("give either LAB or -f FILE, not both")
    down_and_report(lab_name)


@click.command()
@click.argument("lab_name", required=False, metavar="[LAB]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (format: see README).")
def status(lab_name: str | None, as_json: bool) -> None:
    """Show labs: networks, hosts, addresses, routes, services, ports, and drift.

    Exits 1 when the machine differs from any lab as nslab made it (each difference is named; `nslab up`
    repairs them), 0 when everything is as planned.
    """
    from ..lab import status as lab_status
    from ..linux import require_root

    require_root()
    doc = lab_status(lab_name)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        from . import render

        render.status(doc)
    drifted = [f"{lab['name']} ({len(lab['drift'])})" for lab in doc["labs"] if lab.get("drift")]
    if drifted:
        raise NslabError(f"the machine differs from lab {', '.join(drifted)}: `nslab up` repairs it")


def register(group: click.Group) -> None:
    group.add_command(up)
    group.add_command(down)
    group.add_command(status)
