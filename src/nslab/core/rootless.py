"""What a rootless lab cannot have, refused before any change (exit 2, one problem per field): a command that
joined the user's keeper (daemons/keeper.py) runs as root of the user's own namespaces, not of the machine.

- ``resources:`` needs root's cgroups (the machine's cgroup tree is not the user's to write);
- container hosts (``image:``) need Docker, which is root's;
- a service ``user:`` other than root needs that id mapped: only with subordinate ids (/etc/subuid);
- ``external:`` (a network on one of the machine's interfaces) and ``macvlan:`` (a host's interface on one):
  the machine's interfaces are not in the user's network namespace (the problems the features would report
  about them, such as "the machine has no interface eth1", are left out: this one says why);
- a published port below the machine's ``net.ipv4.ip_unprivileged_port_start``: the keeper's binder listens on
  the machine as the user (the joining command kept the machine's value in ``NSLAB_PORT_START``).

``nslab connect`` is refused by the CLI (it puts a container, root's, on a lab network).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..errors import Problem, PublishSyntaxError, SourceLines, field_path
from ..model import NO_RESOURCES, Lab, Publish
from ..paths import ROOTLESS_ENV
from . import publish

#: The machine's ``net.ipv4.ip_unprivileged_port_start``, read by the joining command before it left.
PORT_START_ENV = "NSLAB_PORT_START"


def joined() -> bool:
    """Whether this process joined its user's keeper (it runs as root of the user's namespaces)."""
    return bool(os.environ.get(ROOTLESS_ENV))


def subordinate_ids() -> bool:
    """Whether this user namespace maps more than one id (the user's subordinate ids)."""
    try:
        with open("/proc/self/uid_map") as fh:
            return sum(int(line.split()[2]) for line in fh if line.strip()) > 1
    except (OSError, ValueError, IndexError):
        return False


def port_start() -> int:
    """The machine's ``net.ipv4.ip_unprivileged_port_start`` (kept by the joining command: inside the keeper's
    network namespace the sysctl is that namespace's own)."""
    text = os.environ.get(PORT_START_ENV)
    if text is None:
        try:
            with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as fh:
                text = fh.read()
        except OSError:
            text = "1024"
    try:
        return int(text)
    except ValueError:
        return 1024


def problems(lab: Lab, source: SourceLines, file: str) -> list[Problem]:
    """Every part of ``lab`` a rootless lab cannot have (empty when not rootless)."""
    if not joined():  # (``validate`` as a user checks the file as root would run it, with sudo)
        return []
    found: list[Problem] = []

    def add(loc: tuple[Any, ...], message: str) -> None:
        found.append(Problem(message, field_path(loc), file, source.line(loc)))

    for network in lab.networks.values():
        if network.external is not None:
            add(("networks", network.name, "external"), f"external: {network.external} puts one of the machine's "
                "interfaces on the lab, and a rootless lab has none of them (only its way out): run nslab as root")
    mapped = subordinate_ids()
    lowest = port_start()
    for host in lab.hosts.values():
        where = ("hosts", host.name)
        if host.resources != NO_RESOURCES:
            add((*where, "resources"), "resources: needs root's cgroups; a rootless lab cannot limit its services "
                "(run nslab as root, or remove it)")
        if host.container is not None:
            add((*where, "image"), "container hosts (image:) need Docker, which is root's: run nslab as root")
        if host.contain.uid not in (None, 0) and not mapped:
            add((*where, "user"), f"user: {host.contain.user} needs your subordinate ids (/etc/subuid and "
                "/etc/subgid list none for you): have root add a range, or run the service as root")
        for n, macvlan in enumerate(host.macvlans):
            add((*where, "macvlan", n), f"macvlan: on {macvlan.parent} needs the machine's interfaces, and a rootless "
                "lab has none of them (only its way out): run nslab as root, or put the host on a lab network")
        _low_ports(host.publish, lowest, add)
    return found


def _low_ports(entries: tuple[Publish, ...], lowest: int, add: Callable[[tuple[Any, ...], str], None]) -> None:
    for entry in entries:
        try:
            mappings = publish.parse(entry.text)
        except PublishSyntaxError:
            continue  # reported by the firewall feature
        low = [m.host_port for m in mappings if not m.picked and m.host_port < lowest]
        if low:
            add(entry.path, f"port {low[0]} is below net.ipv4.ip_unprivileged_port_start ({lowest}): a user "
                "cannot listen there; publish a higher port or have root lower that sysctl")
