"""``nslab check``: the reachability matrix of a lab that is up, next to what the lab's policy implies.

Every ordered pair of hosts is probed (ICMP echo, or a TCP connect / UDP round trip to a port), and each host
toward the outside: the machine's uplink gateway (the next hop of the machine's default route), and nothing
else outside the lab. All probes run at once from the hosts' namespaces (drivers/probe.py).

What a cell is probed at (:func:`target_address`): a host probes itself at 127.0.0.1; another host at its
address on a network they share, else at its end of a link between them, else at its first address (where
the lab's isolation should stop it).

The policy (:func:`expected`, the one place a verdict comes from):

- a host reaches itself;
- hosts on the same network reach each other; hosts on different networks do not (isolation) unless a link
  joins them: the two ends of a link reach each other;
- the outside is reachable from a host whose default route goes through a NAT network, and not from hosts on
  internal networks only;
- an interface put down with ``nslab link`` carries nothing: the pairs that needed it are blocked;
- two hosts on opposite sides of a partition (features/partitions.py) are blocked both ways; impairments
  (features/impair.py) do not change what is expected.

With ``ipv6`` (``nslab check -6``) every cell is probed over IPv6 (ICMPv6 echo, or TCP/UDP to the IPv6
address): a host probes itself at ::1 and another at its IPv6 address on a shared network (else its first
IPv6 address); the outside is the machine's IPv6 default gateway (not a link-local one). A target without an
IPv6 address, and a pair joined only by a link (links are IPv4), are expected blocked; the outside is expected
reachable from hosts with an IPv6 default route.

With a port: "open" (connected, or a UDP answer) and "refused" (the host answered with a TCP reset or ICMP
port unreachable) both mean the network delivered, so both count as reachable; the cell says which. A UDP
service that stays silent cannot be told from a drop: it shows as blocked ("timeout").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from ..drivers import Drivers
    from ..drivers.probe import Prober
    from ..model import Host, Lab

#: The column of the outside (the machine's uplink gateway).
OUTSIDE = "outside"
#: Seconds a probe waits for its answer (blocked cells cost this once, all together).
TIMEOUT = 1.0


@dataclass
class Cell:
    source: str
    target: str  # a host, or OUTSIDE
    address: str | None  # None: nothing to probe (the target has no address)
    reachable: bool
    result: str  # reply | open | refused | timeout | unreachable: ... | no address
    expected: bool

    @property
    def ok(self) -> bool:
        return self.reachable == self.expected


@dataclass
class Matrix:
    lab: str
    probe: str  # icmp | tcp/PORT | udp/PORT
    hosts: list[str]  # the rows (all hosts, or the one given with --from)
    columns: list[str]  # every host, then OUTSIDE when the machine has a default route
    outside: str | None  # the address probed as the outside
    cells: list[Cell]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cells)

    def cell(self, source: str, target: str) -> Cell:
        return next(c for c in self.cells if c.source == source and c.target == target)

    def to_json(self) -> dict[str, Any]:
        return {
            "lab": self.lab, "probe": self.probe, "outside": self.outside, "ok": self.ok,
            "cells": [{**dataclasses.asdict(c), "ok": c.ok} for c in self.cells],
        }


def parse_port(text: str | None) -> tuple[str, int | None]:
    """``--port`` as (proto, port): ``None`` -> icmp, ``80`` / ``80/tcp`` -> tcp, ``53/udp`` -> udp."""
    if text is None:
        return "icmp", None
    number, _, proto = text.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp") or not number.isdigit() or not 1 <= int(number) <= 65535:
        raise UserError(f"--port {text}: expected PORT, PORT/tcp or PORT/udp with PORT in 1-65535")
    return proto, int(number)


# ----------------------------------------------------------------------------------------------------------
# Policy
# ----------------------------------------------------------------------------------------------------------
def down_interfaces(lab: Lab, records: Mapping[str, Any]) -> set[tuple[str, str]]:
    from ..core.features import links

    return links.down_interfaces(lab, records.get(links.KEY))


def expected(lab: Lab, records: Mapping[str, Any], source: str, target: str) -> bool:
    """THE EXTENSION POINT of the policy: whether ``source`` should reach ``target`` (a host or
    :data:`OUTSIDE`), from the lab as recorded and its features' records (``records``: feature KEY -> record,
    as kept in the lab's state). Features that cut traffic add their rule here, after the wiring's verdict:
    partitions block the pairs they cut; impairments change nothing (even a total loss is left to the probe)."""
    from ..core.features import partitions

    if source != target and target != OUTSIDE and partitions.cut(lab, records.get(partitions.KEY), source, target):
        return False
    return wiring_verdict(lab, down_interfaces(lab, records), source, target)


def wiring_verdict(lab: Lab, down: set[tuple[str, str]], source: str, target: str) -> bool:
    """The verdict of the wiring alone: same network, isolation, internal networks, links, interfaces down."""
    if source == target:
        return True
    src = lab.hosts[source]
    if target == OUTSIDE:
        return any(i.network and not lab.networks[i.network].internal and (source, i.name) not in down
                   and lab.networks[i.network].gateway.ip == src.gateway for i in src.interfaces)
    dst = lab.hosts[target]
    for i in src.interfaces:
        if (source, i.name) in down:
            continue
        if i.network is not None:
            peer = dst.interface_on(i.network)
            if peer is not None and (target, peer.name) not in down:
                return True
        elif i.link is not None:
            lk = lab.links[i.link]
            if {lk.a, lk.b} == {source, target}:
                return True
    return False


def target_address(lab: Lab, source: str, target: str, ipv6: bool = False) -> str | None:
    """Where ``source`` probes ``target`` (see the module docstring)."""
    if ipv6:
        return _target_address6(lab, source, target)
    if source == target:
        return "127.0.0.1"
    src, dst = lab.hosts[source], lab.hosts[target]
    for i in src.interfaces:
        peer = dst.interface_on(i.network) if i.network else None
        if peer is not None:
            return str(peer.address.ip)
    for lk in lab.links:
        if {lk.a, lk.b} == {source, target}:
            return str(lk.b_address.ip if lk.b == target else lk.a_address.ip)
    return str(dst.interfaces[0].address.ip) if dst.interfaces else None


def _target_address6(lab: Lab, source: str, target: str) -> str | None:
    if source == target:
        return "::1"
    src, dst = lab.hosts[source], lab.hosts[target]
    for i in src.interfaces:
        peer = dst.interface_on(i.network) if i.network else None
        if peer is not None and peer.address6 is not None:
            return str(peer.address6.ip)
    return next((str(i.address6.ip) for i in dst.interfaces if i.address6), None)


def expected6(lab: Lab, records: Mapping[str, Any], source: str, target: str) -> bool:
    """:func:`expected` over IPv6: the same policy, where the two ends have IPv6 on what joins them."""
    if source == target:
        return True
    src = lab.hosts[source]
    down = down_interfaces(lab, records)
    if target == OUTSIDE:
        return _outside6(lab, source, down)
    from ..core.features import partitions

    if partitions.cut(lab, records.get(partitions.KEY), source, target):
        return False
    dst = lab.hosts[target]
    for i in src.interfaces:
        peer = dst.interface_on(i.network) if i.network else None
        if (peer is not None and i.address6 and peer.address6 and (source, i.name) not in down
                and (target, peer.name) not in down):
            return True
    return False


def _outside6(lab: Lab, source: str, down: set[tuple[str, str]]) -> bool:
    """Whether ``source`` reaches the outside over IPv6: an interface that is up, with IPv6, on a NAT network
    whose IPv6 gateway is the host's."""
    src = lab.hosts[source]
    for i in src.interfaces:
        net = lab.networks[i.network] if i.network else None
        if (net is not None and i.address6 and not net.internal and (source, i.name) not in down
                and net.gateway6 is not None and net.gateway6.ip == src.gateway6):
            return True
    return False


# ----------------------------------------------------------------------------------------------------------
# Probing
# ----------------------------------------------------------------------------------------------------------
def check(
    name: str,
    port: str | None = None,
    source: str | None = None,
    drivers: Drivers | None = None,
    prober: Prober | None = None,
    timeout: float = TIMEOUT,
    ipv6: bool = False,
) -> Matrix:
    """Probe lab ``name`` (rows: every host, or ``source``) and compare each cell with :func:`expected`
    (over IPv6 with ``ipv6``: :func:`expected6`)."""
    from ..core import state

    proto, number = parse_port(port)
    st = state.LabState.load(name)
    if st is None:
        from ..core.which import not_up

        raise not_up(name)
    lab = st.lab
    if source is not None and source not in lab.hosts:
        from ..core.which import no_host

        raise no_host(name, source, lab.hosts)
    gateway = _machine_gateway(drivers, ipv6)
    rows = [source] if source else list(lab.hosts)
    columns = list(lab.hosts) + ([OUTSIDE] if gateway else [])
    cells = _plan_cells(lab, st.extra, rows, columns, str(gateway) if gateway else None, ipv6)
    _probe(lab, cells, proto, number, prober, timeout)
    label = proto if number is None else f"{proto}/{number}"
    return Matrix(name, label, rows, columns, str(gateway) if gateway else None, cells)


def _machine_gateway(drivers: Drivers | None, ipv6: bool) -> Any:
    """The machine's default gateway (IPv6 with ``ipv6``): the outside the lab's NAT hosts are probed towards;
    None without one, or when it is link-local (not reachable by address from a lab host)."""
    from ..drivers import Drivers as _Drivers

    own = drivers is None
    drivers = drivers or _Drivers.live()
    try:
        gateway: Any = drivers.kernel.default_gateway6() if ipv6 else drivers.kernel.default_gateway()
    finally:
        if own:
            drivers.close()
    return None if gateway is not None and gateway.version == 6 and gateway.is_link_local else gateway


def _plan_cells(lab: Lab, records: Mapping[str, Any], rows: Sequence[str], columns: Sequence[str],
                outside: str | None, ipv6: bool = False) -> list[Cell]:
    cells = []
    verdict = expected6 if ipv6 else expected
    for src in rows:
        for dst in columns:
            address = outside if dst == OUTSIDE else target_address(lab, src, dst, ipv6)
            result = "" if address else "no address"
            cells.append(Cell(src, dst, address, False, result, verdict(lab, records, src, dst)))
    return cells


def _probe(lab: Lab, cells: list[Cell], proto: str, port: int | None, prober: Prober | None,
           timeout: float) -> None:
    if prober is None:
        from ..drivers.probe import LiveProber

        prober = LiveProber()
    todo = [c for c in cells if c.address]
    hosts: Mapping[str, Host] = lab.hosts
    probes = [(hosts[c.source].namespace, c.address or "") for c in todo]
    for cell, (reachable, result) in zip(todo, prober.probe(probes, proto, port, timeout), strict=True):
        cell.reachable, cell.result = reachable, result
