"""Names a lab would create that the machine already has: checked before any change, reported as problems.

A lab's hosts are named namespaces (``<lab>-<host>``), its networks bridges and its hosts' machine-side veths
links (see :mod:`nslab.naming`). ``up`` takes over what this lab made before (recorded in its state, or marked
as its own in a link's alias) and nothing else: a namespace made with ``ip netns add``, a host of another lab
whose name happens to be the same (lab ``a`` host ``b-c`` and lab ``a-b`` host ``c``), a link with the name of
one of ours, are each one problem naming the object and who has it, instead of a kernel error halfway through.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import Problem, SourceLines, field_path
from ..naming import parse_owner

if TYPE_CHECKING:
    from ..drivers import Drivers
    from ..drivers.rtnl import LinkInfo
    from ..model import Lab
    from .state import LabState


def _link_owner(link: LinkInfo) -> str:
    owner = parse_owner(link.alias)
    if owner is None:
        return "it was not made by nslab" + (f" (alias '{link.alias}')" if link.alias else "")
    what = "network" if owner.kind == "net" else "host"
    return f"it is {what} '{owner.name}' of lab '{owner.lab}'"


def _namespace_owner(namespace: str, others: Iterable[LabState]) -> str:
    for other in others:
        for host in other.lab.hosts.values():
            if host.namespace == namespace:
                return f"it is host '{host.name}' of lab '{other.lab.name}'"
    return f"it was not made by nslab for this lab (remove it with 'ip netns del {namespace}' or rename the host)"


def _ours(lab: str, links: Iterable[LinkInfo]) -> tuple[set[str], set[str]]:
    """Link names marked as this lab's, and the namespaces of the hosts they belong to."""
    from ..naming import namespace_name

    names: set[str] = set()
    namespaces: set[str] = set()
    for link in links:
        owner = parse_owner(link.alias)
        if owner is not None and owner.lab == lab:
            names.add(link.name)
            if owner.kind == "host":
                namespaces.add(namespace_name(lab, owner.name))
    return names, namespaces


def collisions(
    lab: Lab,
    drivers: Drivers,
    recorded: Lab | None,
    others: Iterable[LabState],
    source: SourceLines,
    file: str,
) -> list[Problem]:
    """One problem per namespace, bridge or veth name of ``lab`` that exists and is not this lab's."""
    links = drivers.kernel.machine_links()
    marked, marked_namespaces = _ours(lab.name, links)
    known = {h.namespace for h in recorded.hosts.values()} if recorded else set()
    existing = {link.name: link for link in links}
    problems: list[Problem] = []

    def add(loc: tuple[Any, ...], message: str) -> None:
        problems.append(Problem(message, field_path(loc), file, source.line(loc)))

    namespaces = drivers.kernel.named_namespaces()
    for host in lab.hosts.values():
        ns = host.namespace
        if ns in namespaces and ns not in known and ns not in marked_namespaces:
            add(("hosts", host.name), f"namespace '{ns}' already exists: {_namespace_owner(ns, others)}")
        for iface in host.interfaces:
            link = existing.get(iface.host_veth or "")
            if link is not None and link.name not in marked:
                add(("hosts", host.name, "networks", iface.network),
                    f"link '{link.name}' ({iface.name}'s veth) already exists: {_link_owner(link)}")
    for network in lab.networks.values():
        link = existing.get(network.bridge)
        if link is not None and link.name not in marked:
            add(("networks", network.name), f"link '{link.name}' (its bridge) already exists: {_link_owner(link)}")
    return problems
