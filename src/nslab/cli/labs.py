"""Lab verbs: ``up``, ``down``, ``status`` (``exec`` and ``shell`` live in :mod:`nslab.cli.targets`).

Logic lives in :mod:`nslab.lab`; this module parses options. The plain forms run without click from
:mod:`nslab.cli.fast`, and these commands call the same functions there (tables via :mod:`nslab.cli.render`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import complete
from .fast import print_doc

if TYPE_CHECKING:
    from ..core.lifecycle import UpResult

FILE_HELP = "The lab file ('-': standard input). Default: nslab.yaml, nslab.yml, or the one *.nslab.yaml here."


def which_lab(lab: str | None, file: str | None) -> str:
    """The lab a command means: LAB, -f FILE's lab, the lab file here, the only lab up (core/which.py)."""
    from ..core.which import which_lab as which

    return which(lab, file)


MACHINE_HELP = ("A lab across machines (machines: in its file): this machine's part, by name. Default: the "
                "part recorded here, else the machine whose address is one of this machine's.")


OUTPUT = click.Choice(["table", "wide", "json", "yaml"])


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
@click.option("--wait", is_flag=True, help="Return once every healthcheck passes (exit 1 and a line per "
              "unhealthy host after --timeout; the lab stays up).")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="S",
              help="Seconds --wait waits (default 60).")
@click.option("--only", "only", default=None, metavar="HOST[,HOST..]",
              help="Bring up only these hosts (and the networks and links between them); a later up adds the rest.")
@click.option("--profile", "profiles", multiple=True, metavar="NAME",
              help="Also bring up the hosts with this name in their profiles: (repeatable).")
@click.option("--machine", default=None, metavar="NAME", help=MACHINE_HELP)
@click.option("--engine", type=click.Choice(["local", "swarm"]), default="local",
              help="swarm: on the Docker Swarm DOCKER_HOST names (a manager), one service per machine.")
@click.option("--image", default=None, metavar="IMAGE", help="--engine swarm: the nslab image (default nslab:VERSION).")
def up(file: str | None, dry_run: bool, output: str | None, as_json: bool, wide: bool, quiet: bool, wait: bool,
       timeout: float | None, only: str | None, profiles: tuple[str, ...], machine: str | None, engine: str,
       image: str | None) -> None:
    """Create the lab, or converge it to the file if it is up already.

    Wires hosts, networks and links, loads the firewall rules (NAT, isolation, published ports), writes
    each host's /etc/netns files and hostname, and starts its services. A host with image: is a Docker
    container (created with no network, labelled with the lab, then wired like any host). Prints what
    changed, every warning, and the lab's hosts. A lab file that passed every check is kept checked under
    /run/nslab/.cache: the next up of the same file (same ${VAR}s) does not parse it again.

    A lab across machines (machines: in its file) builds this machine's part: run the same file on every
    machine (--machine NAME, or the machine whose address is local).
    """
    from ..core.lifecycle import Subset, up_file, wait_healthy
    from ..linux import require_root
    from . import fast, render

    if engine == "swarm":
        from .engine import swarm_up

        swarm_up(file, image, quiet, others=(dry_run, wait, only is not None, bool(profiles), output or "table"))
        return

    require_root("up creates namespaces, links and firewall rules")
    waiting = _waiting(wait, timeout, dry_run)
    output = _output(output, as_json, wide)
    machine_readable = output in ("json", "yaml")
    subset = Subset(tuple(h for h in only.split(",") if h) if only is not None else None, profiles)
    if not machine_readable and not dry_run:
        code = fast.up(file, quiet=quiet, wide=output == "wide", wait=waiting, subset=subset,  # (as without click)
                       machine=machine)
        if code:
            raise SystemExit(code)
        return
    from ..core.which import find_lab_file

    path = find_lab_file(file)  # "-": standard input, reported as <stdin>
    with render.progress(enabled=False) as bar:
        # (checked whole under the machine lock)
        result = up_file(path, dry_run=dry_run, progress=bar, subset=subset, machine=machine)
    render.warnings(result.warnings)
    if dry_run:
        _print_dry_run(result)
        return
    _print_status(result.lab.name, output, wait_healthy(result.lab.name, waiting) if waiting is not None else {})


def _waiting(wait: bool, timeout: float | None, dry_run: bool) -> float | None:
    """How long ``up --wait [--timeout S]`` waits for the healthchecks (None: it does not wait)."""
    from . import fast

    if timeout is not None and not wait:
        raise click.UsageError("--timeout goes with --wait")
    return (fast.WAIT_TIMEOUT if timeout is None else timeout) if wait and not dry_run else None


def _print_status(lab: str, output: str, unhealthy: dict[str, str]) -> None:
    """``up -o json|yaml``: the lab's status document, then a line per host that is not healthy (exit 1)."""
    from ..lab import status

    print_doc(status(lab), output)
    if unhealthy:
        for host, line in unhealthy.items():
            click.echo(f"nslab: {host} unhealthy: {line}", err=True)
        raise SystemExit(1)


def _print_dry_run(result: UpResult) -> None:
    commands = result.commands()
    for line in result.repairs:
        click.echo(f"# repairs drift: {line}")
    if not commands:
        click.echo(f"# lab {result.lab.name} is up to date; nothing to do")
    for command in commands:
        click.echo(command)


@click.command()
@click.argument("lab_name", required=False, metavar="[LAB]", shell_complete=complete.labs)
@click.option("-f", "--file", "file", default=None, metavar="FILE", help="Take the lab name from this file.",
              shell_complete=complete.lab_files)
@click.option("--machine", default=None, metavar="NAME", help="A lab across machines: the part recorded here "
              "must be this machine's.")
def down(lab_name: str | None, file: str | None, machine: str | None) -> None:
    """Remove everything a lab created.

    Stops its services first, removes its Docker containers (by their nslab.lab label) and what
    `nslab connect` added. Works from recorded state, so the lab file may have been edited or deleted.
    Without LAB: the lab of -f FILE, else of the lab file here (nslab.yaml, nslab.yml, the one
    *.nslab.yaml), else the only lab that is up.
    """
    from .fast import down as down_and_report

    down_and_report(which_lab(lab_name, file), machine)


@click.command()
@click.argument("lab_name", required=False, metavar="[LAB | LAB/HOST]", shell_complete=complete.lab_or_host)
@click.option("-f", "--file", "file", default=None, metavar="FILE", help="Show the lab named in this file.",
              shell_complete=complete.lab_files)
@click.option("-o", "--output", type=OUTPUT, default=None, help="table (default), wide, json or yaml.")
@click.option("--json", "as_json", is_flag=True, help="Same as -o json (format: docs/commands.md).")
@click.option("--wide", is_flag=True, help="Never cut lines to the terminal's width.")
@click.option("-q", "--quiet", is_flag=True, help="Only the names of the labs that are up.")
@click.option("--machine", default=None, metavar="NAME", help="A lab across machines: the part recorded here "
              "must be this machine's (status shows it, and the digest of the whole lab).")
def status(lab_name: str | None, file: str | None, output: str | None, as_json: bool, wide: bool,
           quiet: bool, machine: str | None) -> None:
    """Show labs: networks, hosts, addresses, routes, services, ports, and drift. LAB/HOST: one host.

    Exits 1 when the machine differs from any lab as nslab made it (each difference is named; `nslab up`
    repairs them), 0 when everything is as planned. Without LAB: every lab that is up (-f FILE: its lab).
    """
    from .fast import status as show_status

    output = _output(output, as_json, wide)
    if file is not None:
        lab_name = which_lab(lab_name, file)
    code = show_status(lab_name, output, quiet=quiet, machine=machine)
    if code:
        raise click.exceptions.Exit(code)


def register(group: click.Group) -> None:
    group.add_command(up)
    group.add_command(down)
    group.add_command(status)
