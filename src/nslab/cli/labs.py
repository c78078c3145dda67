"""Lab verbs: ``up``, ``down``, ``status`` (``exec`` and ``shell`` live in :mod:`nslab.cli.targets`).

Logic lives in :mod:`nslab.lab`; this module parses options and renders (tables via
:mod:`nslab.cli.render`).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import click

from ..errors import UserError

if TYPE_CHECKING:
    from ..lab import Lab

DEFAULT_FILE = "nslab.yaml"
#: Looked for in this order when no -f is given (as compose and containerlab do); then one ``*.nslab.yaml``.
DEFAULT_FILES = ("nslab.yaml", "nslab.yml")
FILE_HELP = "The lab file ('-': standard input). Default: nslab.yaml, nslab.yml, or the one *.nslab.yaml here."


def find_lab_file(file: str | None, directory: str = ".") -> str:
    """The lab file to use: ``file`` as given (``-`` is stdin), else the first of :data:`DEFAULT_FILES` in
    ``directory``, else its one ``*.nslab.yaml``."""
    if file is not None:
        if file != "-" and not os.path.exists(file):
            raise UserError(f"no lab file {file}")
        return file
    for name in DEFAULT_FILES:
        if os.path.exists(os.path.join(directory, name)):
            return name if directory == "." else os.path.join(directory, name)
    found = sorted(n for n in os.listdir(directory) if n.endswith(".nslab.yaml"))
    if len(found) == 1:
        return found[0] if directory == "." else os.path.join(directory, found[0])
    if found:
        raise UserError(f"several lab files here ({', '.join(found)}): pick one with -f FILE")
    raise UserError("no lab file here (nslab.yaml, nslab.yml or one *.nslab.yaml): pass -f FILE")


def lab_name_from(file: str | None) -> str:
    """The lab name written in the lab file (found as :func:`find_lab_file` does), without checking the rest."""
    from ..spec import name_of

    return name_of(find_lab_file(file))


def _load(file: str | None, check: bool = True) -> Lab:
    from ..lab import Lab

    return Lab.load(find_lab_file(file), check=check)  # "-": standard input, reported as <stdin>


@click.command()
@click.option("-f", "--file", "file", default=None, metavar="FILE", help=FILE_HELP)
@click.option("--dry-run", is_flag=True, help="Print the change as a script (ip, nft, sysctl, files); change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the resulting status as JSON.")
def up(file: str | None, dry_run: bool, as_json: bool) -> None:
    """Create the lab, or converge it to the file if it is up already.

    Wires hosts, networks and links, loads the firewall rules (NAT, isolation, published ports), writes
    each host's /etc/netns files and hostname, and starts its services.
    """
    from ..linux import require_root
    from . import render

    require_root()
    lab = _load(file, check=False)  # up checks it whole under the machine lock
    with render.progress(enabled=not as_json and not dry_run) as bar:
        result = lab.up(dry_run=dry_run, progress=bar)
    if dry_run:
        commands = result.commands()
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


@click.command()
@click.argument("lab_name", required=False, metavar="[LAB]")
@click.option("-f", "--file", "file", default=None, metavar="FILE", help="Take the lab name from this file.")
def down(lab_name: str | None, file: str | None) -> None:
    """Remove everything a lab created.

    Stops its services first. Works from recorded state, so the lab file may have been edited or deleted.
    Without LAB, the lab named in the lab file (-f FILE, or nslab.yaml, nslab.yml, one *.nslab.yaml here).
    """
    from .fast import down as down_and_report

    if lab_name is None:
        lab_name = lab_name_from(file)
    elif file is not None:
        raise click.UsageError("give either LAB or -f FILE, not both")
    down_and_report(lab_name)


@click.command()
@click.argument("lab_name", required=False, metavar="[LAB]")
@click.option("-f", "--file", "file", default=None, metavar="FILE", help="Show the lab named in this file.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (format: see README).")
def status(lab_name: str | None, file: str | None, as_json: bool) -> None:
    """Show labs: networks, hosts, addresses, routes, services, ports."""
    from ..lab import status as lab_status
    from ..linux import require_root

    if file is not None:
        if lab_name is not None:
            raise click.UsageError("give either LAB or -f FILE, not both")
        lab_name = lab_name_from(file)
    require_root()
    doc = lab_status(lab_name)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    from . import render

    render.status(doc)


def register(group: click.Group) -> None:
    group.add_command(up)
    group.add_command(down)
    group.add_command(status)
