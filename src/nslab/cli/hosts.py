"""Host verbs: ``stop``, ``start`` and ``restart`` of one or more hosts of a lab that is up.

Logic lives in :mod:`nslab.core.features.hoststate` (through ``lifecycle.change_hosts``: a container host that
starts is wired anew); this module parses ``LAB/HOST[,HOST..]``.
"""

from __future__ import annotations

import click

from ..errors import UserError
from . import complete


def _hosts(target: str) -> tuple[str, list[str]]:
    """``[LAB/]HOST[,HOST..]`` -> (lab, hosts): the lab found as every command finds ``[LAB/]HOST``."""
    from ..lab import find_host

    where, _, rest = target.rpartition("/")
    names = [h for h in rest.split(",") if h]
    if not names or (where == "" and "/" in target):
        raise UserError(f"{target}: expected LAB/HOST[,HOST..]")
    lab, first = find_host(f"{where}/{names[0]}" if where else names[0])
    return lab, [first, *names[1:]]


def _run(target: str, verb: str) -> None:
    from ..core.lifecycle import change_hosts
    from ..drivers import Drivers
    from ..linux import require_root

    require_root(f"{verb} changes services and interfaces inside the lab's hosts")
    lab, hosts = _hosts(target)
    drivers = Drivers.live()
    try:
        change_hosts(lab, hosts, verb, drivers)
    finally:
        drivers.close()
    done = {"stop": "stopped", "start": "started", "restart": "restarted"}[verb]
    click.echo(f"{lab}/{','.join(hosts)}: {done}")


TARGET = click.argument("target", metavar="LAB/HOST[,HOST..]", shell_complete=complete.lab_or_host)


@click.command()
@TARGET
def stop(target: str) -> None:
    """Stop hosts: their services stop and every interface goes down (both ends);
    a container host's container stops (its filesystem kept).

    \b
    Other hosts' services run on untouched. `status` shows the host as
    stopped (not drift), `check` expects it unreachable, and `up` keeps it
    stopped until `nslab start`.
    """
    _run(target, "stop")


@click.command()
@TARGET
def start(target: str) -> None:
    """Start stopped hosts: interfaces up again (not those put down with
    `nslab link`), then their services; a container host's container starts
    again and is wired anew."""
    _run(target, "start")


@click.command()
@TARGET
def restart(target: str) -> None:
    """Restart hosts' services (new processes); a stopped host starts."""
    _run(target, "restart")


def register(group: click.Group) -> None:
    group.add_command(stop)
    group.add_command(start)
    group.add_command(restart)
