"""Problems with a lab's ``publish`` entries, found before any change: syntax, a host on no network, a HOST_IP
that is not the machine's, a host port published twice (in this lab or by another) or in use on the machine."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ....errors import Problem, PublishSyntaxError, field_path
from ....model import Host, IPv4Addr, Lab
from ....values import Value, field
from ... import publish
from .record import FirewallRecord

if TYPE_CHECKING:
    from ....errors import SourceLines
    from ....model import Publish

Listener = tuple[str, "IPv4Addr | None", int, int]  # (proto, address or None = any, port, socket inode)


class Machine(Value):
    """What validation needs to know about the machine (from the drivers; injectable for unit tests)."""

    addresses: frozenset[IPv4Addr] | None = None  # None: unknown, do not check HOST_IP
    listeners: tuple[Listener, ...] = ()
    owner_of: Callable[[int], str] = field(default=lambda inode: "a process")


class _Checker(Value):
    lab: Lab
    source: SourceLines
    file: str
    machine: Machine
    foreign: list[tuple[publish.Mapping, str, str]]  # (mapping, other lab, its host)
    claimed: list[tuple[publish.Mapping, str]] = field(default_factory=list)  # (mapping, field path)
    problems: list[Problem] = field(default_factory=list)

    def add(self, loc: tuple[Any, ...], message: str) -> None:
        self.problems.append(Problem(message, field_path(loc), self.file, self.source.line(loc)))

    def entry(self, host_name: str, written: Publish) -> None:
        loc = written.path
        try:
            mappings = publish.parse(written.text)
        except PublishSyntaxError as exc:
            self.add(loc, str(exc))
            return
        problem = self.unreachable(host_name, mappings[0])
        if problem:
            self.add(loc, problem)
            return
        for m in mappings:
            clash = self.clash(m)
            if clash:
                self.add(loc, clash)
                break
        self.claimed += [(m, field_path(loc)) for m in mappings]

    def unreachable(self, host_name: str, first: publish.Mapping) -> str | None:
        """Why the entry whose first mapping is ``first`` cannot lead to host ``host_name``, or None."""
        host = self.lab.whole().hosts.get(host_name)
        if host is not None and not any(i.network for i in host.interfaces):
            return f"host '{host_name}' is on no network: a published port needs one to lead to"
        known = self.machine.addresses
        if known is not None and isinstance(first.host_ip, IPv4Addr) and not first.any_address \
                and first.host_ip not in publish.LOOPBACK and first.host_ip not in known:
            return f"HOST_IP {first.host_ip} is not an address of this machine"
        if host is not None and 6 in first.families() and not first.both \
                and not any(i.address6 for i in host.interfaces if i.network):
            return (f"HOST_IP {first.host_ip} is IPv6 but host '{host_name}' has no IPv6 "
                    "(give its network ipv6: true or a subnet6)")
        return None

    def clash(self, m: publish.Mapping) -> str | None:
        """Why host port ``m`` cannot be had (the first reason), or None."""
        for prior, where in self.claimed:
            if m.overlaps(prior):
                return f"host port {m.label()} is published twice (also by {where})"
        for prior, other_lab, other_host in self.foreign:
            if m.overlaps(prior):
                return f"host port {m.label()} is already published by lab '{other_lab}' (host '{other_host}')"
        for proto, address, port, inode in self.machine.listeners:
            if proto == m.proto and port == m.host_port and (address is None or m.any_address or address == m.host_ip):
                return (f"host port {m.label()} is in use on this machine: {self.machine.owner_of(inode)} "
                        f"listens on {address or '*'}:{port}/{proto}")
        return None


def _publishing_here(lab: Lab) -> list[Host]:
    """The hosts whose ``publish:`` entries are checked here: every host of a lab on one machine; across machines
    the hosts (on any machine) whose first network's home is here, which this machine publishes."""
    if lab.machine is None:
        return list(lab.hosts.values())
    out = []
    for h in (*lab.hosts.values(), *lab.remote.values()):
        first = next((i.network for i in h.interfaces if i.network), "")
        if h.publish and first in lab.networks and lab.builds_gateway(lab.networks[first]):
            out.append(h)
    return out


def check(
    lab: Lab, source: SourceLines, file: str, others: Mapping[str, FirewallRecord], machine: Machine
) -> list[Problem]:
    """Every problem with the lab's ``publish`` entries, located by file:line and field path."""
    foreign = [
        (publish.Mapping(ipaddress.ip_address(p.host_ip), p.host_port, p.port, p.proto,
                         both=bool(p.address6) and ":" not in p.host_ip), name, p.host)
        for name, rec in others.items()
        for p in rec.ports
    ]
    checker = _Checker(lab, source, file, machine, foreign)
    for host in _publishing_here(lab):
        for written in host.publish:
            checker.entry(host.name, written)
    return checker.problems
