"""Container verbs: ``connect`` and ``disconnect`` (an existing container on a lab network, as
``docker network connect``). Container *hosts* (``image:`` in the lab file) come and go with ``up``/``down``.

Logic lives in :mod:`nslab.core.connect`; this module parses arguments and prints.
"""

from __future__ import annotations

import click

from . import complete


@click.command()
@click.argument("network", metavar="LAB/NETWORK")
@click.argument("target", metavar="TARGET", shell_complete=complete.targets)
@click.option("--dry-run", is_flag=True, help="Print the commands (ip) it would run; change nothing.")
def connect(network: str, target: str, dry_run: bool) -> None:
    """Put a running container on a lab network (as docker network connect).

    \b
    TARGET: container:NAME_OR_ID (or pid:PID, netns:NAME). It gets an interface ethN with a free address of
    the network (from the top of its subnet); its own routes stay. `nslab disconnect` or `nslab down LAB`
    removes exactly that interface, nothing else.
    """
    from ..core.connect import connect as do_connect
    from ..core.rootless import joined
    from ..ns.targets import resolve

    if joined():
        from ..errors import UserError

        raise UserError("connect puts a container (Docker's, root's) on a lab network: a rootless lab cannot "
                        "have one; run nslab as root")
    entry, plan = do_connect(network, target, resolve, dry_run=dry_run)
    if dry_run:
        for line in plan.commands():
            click.echo(line)
        return
    click.echo(f"{entry['container']}: {entry['ifname']} {entry['address']} on {network}")


@click.command()
@click.argument("network", metavar="LAB/NETWORK")
@click.argument("target", metavar="TARGET", shell_complete=complete.targets)
@click.option("--dry-run", is_flag=True, help="Print the commands (ip) it would run; change nothing.")
def disconnect(network: str, target: str, dry_run: bool) -> None:
    """Take a container off a lab network (what `nslab connect` added)."""
    from ..core.connect import disconnect as do_disconnect

    entry, plan = do_disconnect(network, target, dry_run=dry_run)
    if dry_run:
        for line in plan.commands():
            click.echo(line)
        return
    click.echo(f"{entry['container']}: {entry['ifname']} removed from {network}")


def register(group: click.Group) -> None:
    group.add_command(connect)
    group.add_command(disconnect)
