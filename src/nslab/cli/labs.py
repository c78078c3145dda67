"""Lab verbs: ``up``, ``down``, ``status`` (``exec`` and ``shell`` live in :mod:`nslab.cli.targets`).

Logic lives in :mod:`nslab.lab`; this module parses options and renders (tables via
:mod:`nslab.cli.render`).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import click

from ..errors import NslabError, UserError
from . import complete

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


OUTPUT = click.Choice(["table", "wide", "json", "yaml"])


def _print_doc(doc: object, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(doc, sort_keys=False).rstrip("\n"))


def _output(output: str | None, as_json: bool, wide: bool) -> str:
    if as_json and output not in (None, "json"):
        raise click.UsageError("--json is -o json: give one of them")
    return "json" if as_json else "wide" if wide and output in (None, "table") else output or "table"


@click.command()
@click.option("-f", "--file", "file", default=None, metavar="FILE", help=FILE_HELP, shell_complete=complete.lab_files)
@click.option("--dry-run", is_flag=True, help="Print the change as a script (ip, nft, sysctl, files); change nothing.")
@click.option("-o", "--output", type=OUTPUT, default=None, help="table (default), wide, json or yaml (the status).")
@click.option("--json", "as_json", is_flag=True, help="Same as -o json.")
@click.option("--wide", is_flag=True, help="Never cut lines to the terminal's width.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
def up(file: str | None, dry_run: bool, output: str | None, as_json: bool, wide: bool, quiet: bool) -> None:
    """Create the lab, or converge it to the file if it is up already.

    Wires hosts, networks and links, loads the firewall rules (NAT, isolation, published ports), writes
    each host's /etc/netns files and hostname, and starts its services. A host with image: is a Docker
    container (created with no network, labelled with the lab, then wired like any host). Prints what
    changed, every warning, and the lab's hosts.
    """
    from ..linux import require_root
    from . import render

    require_root("up creates namespaces, links and firewall rules")
    output = _output(output, as_json, wide)
    lab = _load(file, check=False)  # up checks it whole under the machine lock
    machine_readable = output in ("json", "yaml")
    with render.progress(enabled=not machine_readable and not dry_run and not quiet) as bar:
        result = lab.up(dry_run=dry_run, progress=bar)
    render.warnings(result.warnings)
    if dry_run:
        commands = result.commands()
        for line in result.repairs:
            click.echo(f"# repairs drift: {line}")
        if not commands:
            click.echo(f"# lab {lab.name} is up to date; nothing to do")
        for command in commands:
            click.echo(command)
        return
    if machine_readable:
        from ..lab import status

        _print_doc(status(lab.name), output)
        return
    if quiet:
        return
    render.changes(result.changes())
    for line in result.repairs:
        click.echo(f"{'repaired' if result.applied else 'not repaired'}: {line}")
    render.up_table(result.lab, changed=result.applied, wide=output == "wide")


@click.command()
@click.argument("lab_name", required=False, metavar="[LAB]", shell_complete=complete.labs)
@click.option("-f", "--file", "file", default=None, metavar="FILE", help="Take the lab name from this file.",
              shell_complete=complete.lab_files)
def down(lab_name: str | None, file: str | None) -> None:
    """Remove everything a lab created.

    Stops its services first, removes its Docker containers (by their nslab.lab label) and what
    `nslab connect` added. Works from recorded state, so the lab file may have been edited or deleted.
    Without LAB, the lab named in the lab file (-f FILE, or nslab.yaml, nslab.yml, one *.nslab.yaml here).
    """
    from .fast import down as down_and_report

    if lab_name is None:
        lab_name = lab_name_from(file)
    elif file is not None:
        raise click.UsageError("give either LAB or -f FILE, not both")
    down_and_report(lab_name)


@click.command()
@click.argument("lab_name", required=False, metavar="[LAB | LAB/HOST]", shell_complete=complete.lab_or_host)
@click.option("-f", "--file", "file", default=None, metavar="FILE", help="Show the lab named in this file.",
              shell_complete=complete.lab_files)
@click.option("-o", "--output", type=OUTPUT, default=None, help="table (default), wide, json or yaml.")
@click.option("--json", "as_json", is_flag=True, help="Same as -o json (format: see README).")
@click.option("--wide", is_flag=True, help="Never cut lines to the terminal's width.")
@click.option("-q", "--quiet", is_flag=True, help="Only the names of the labs that are up.")
def status(lab_name: str | None, file: str | None, output: str | None, as_json: bool, wide: bool,
           quiet: bool) -> None:
    """Show labs: networks, hosts, addresses, routes, services, ports, and drift. LAB/HOST: one host.

    Exits 1 when the machine differs from any lab as nslab made it (each difference is named; `nslab up`
    repairs them), 0 when everything is as planned.
    """
    from ..lab import status as lab_status

    output = _output(output, as_json, wide)
    lab_name, host = _status_target(lab_name, file)
    if os.geteuid() != 0 and _unprivileged_status(lab_name, quiet):
        return
    doc = _read_status(lab_status, lab_name)
    if host is not None:
        _only_host(doc, host)
    if quiet:
        for lab in doc["labs"]:
            click.echo(lab["name"])
    elif output in ("json", "yaml"):
        _print_doc(doc, output)
    else:
        from . import render

        render.status(doc, wide=output == "wide", host=host)
    for problem in doc.get("damaged", []):  # labs whose state cannot be read: one line each, exit 1
        click.echo(f"nslab: {problem}", err=True)
    drifted = [f"{lab['name']} ({len(lab['drift'])})" for lab in doc["labs"] if lab.get("drift")]
    if drifted:  # exit 1, named (`nslab up` repairs it)
        raise NslabError(f"the machine differs from lab {', '.join(drifted)}: `nslab up` repairs it")
    if doc.get("damaged"):
        raise click.exceptions.Exit(1)


def _status_target(lab_name: str | None, file: str | None) -> tuple[str | None, str | None]:
    """(lab or None for every lab, host or None) from ``[LAB | LAB/HOST]`` or ``-f FILE``."""
    if file is not None:
        if lab_name is not None:
            raise click.UsageError("give either LAB or -f FILE, not both")
        lab_name = lab_name_from(file)
    host = None
    if lab_name is not None and "/" in lab_name:
        lab_name, host = lab_name.split("/", 1)
        if not lab_name or not host or "/" in host:
            raise UserError(f"'{lab_name}/{host}' is neither LAB nor LAB/HOST")
    return lab_name, host


def _unprivileged_status(lab_name: str | None, quiet: bool) -> bool:
    """What a user who is not root can see: the names of the labs that are up (``-q`` asks no more). False:
    no such lab is up, which needs no root to say (the usual path says it)."""
    from ..errors import EnvironmentProblem
    from ..state import visible_labs

    labs = [name for name in visible_labs() if lab_name in (None, name)]
    if not labs:
        return False
    if quiet:
        for name in labs:
            click.echo(name)
        return True
    seen = f"lab {lab_name} is up" if lab_name is not None else f"labs up: {', '.join(labs)}"
    raise EnvironmentProblem(
        "status needs root for the details (the labs' state under /run/nslab is readable by root only, and "
        f"looking inside the hosts' namespaces needs CAP_SYS_ADMIN): run it with sudo ({seen})")


def _read_status(read: Any, lab_name: str | None) -> dict[str, Any]:
    """The status document; as non-root, what cannot be read says why root is needed."""
    from ..errors import EnvironmentProblem

    try:
        doc: dict[str, Any] = read(lab_name)
    except (NslabError, OSError) as exc:
        if os.geteuid() == 0 or isinstance(exc, UserError):
            raise
        raise EnvironmentProblem("status needs root to look inside the hosts' namespaces (entering a network "
                                 "namespace needs CAP_SYS_ADMIN): run it with sudo") from None
    return doc


def _only_host(doc: dict[str, Any], host: str) -> None:
    """Keep one host in the status document (its services and ports too)."""
    for lab in doc["labs"]:
        hosts = [h for h in lab["hosts"] if h["name"] == host]
        if not hosts:
            raise UserError(f"lab '{lab['name']}' has no host '{host}' (hosts: "
                            f"{', '.join(h['name'] for h in lab['hosts']) or 'none'})")
        lab["hosts"] = hosts
        lab["links"] = [lk for lk in lab.get("links", []) if host in lk["endpoints"]]
        setup = lab.get("hostsetup") or {}
        if "services" in setup:
            setup["services"] = [s for s in setup["services"] if s.get("host") == host]
        fw = lab.get("firewall") or {}
        if "ports" in fw:
            fw["ports"] = [p for p in fw["ports"] if p.get("host") == host]


def register(group: click.Group) -> None:
    group.add_command(up)
    group.add_command(down)
    group.add_command(status)
