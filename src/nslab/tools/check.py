"""``nslab check``: the reachability matrix of a lab that is up, next to what the lab's policy implies.

Every ordered pair of hosts is probed (ICMP echo, or a TCP connect / UDP round trip to a port), and each host
toward the outside (a lab across machines: from this machine's hosts to every host of the lab): the
machine's uplink gateway (the next hop of the machine's default route), and nothing
else outside the lab. All probes run at once from the hosts' namespaces (drivers/probe.py).

What a cell is probed at (:func:`target_address`): a host probes itself at 127.0.0.1 (::1); another host at
its address on a network they share, else at its end of a link between them, else at its first address the
reachability model says is reachable, else its first address (where the lab's isolation should stop it).

The expected verdict of a cell comes from the reachability model (tools/reach.py: routes, `default:`,
forwarding hosts, internal networks, isolation, NAT, partitions, links put down, total loss), unless an
``expect:`` entry of the lab file covers the cell (core/labtests.py); each cell keeps the hops the model
expects (``path``), shown for a cell that differs. Impairments short of a total loss do not change what is
expected. With ``ipv6`` (``nslab check -6``) every cell is probed and judged over IPv6; the outside is the
machine's IPv6 default gateway (not a link-local one).

With a port: "open" (connected, or a UDP answer) and "refused" (the host answered with a TCP reset or ICMP
port unreachable) both mean the network delivered, so both count as reachable; the cell says which. A UDP
service that stays silent cannot be told from a drop: it shows as blocked ("timeout").
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import model
from ..core import labtests
from ..errors import UserError
from . import is_address, reach

if TYPE_CHECKING:
    from ..drivers import Drivers
    from ..drivers.probe import Prober
    from ..model import Lab

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
    path: str = ""  # the hops the model expects (tools/reach.py), or why it expects none
    by: str = "model"  # model | expect (an `expect:` entry of the lab file gave the verdict)

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
# Policy: the reachability model (tools/reach.py), then the lab file's expect: entries
# ----------------------------------------------------------------------------------------------------------
#: Stands for the outside when the machine has none to probe (any address outside the lab behaves the same).
SOME_OUTSIDE = {4: "192.0.2.1", 6: "2001:db8::1"}


def verdict(lab: Lab, records: Mapping[str, Any], source: str, target: str, ipv6: bool = False,
            outside: str | None = None) -> reach.Verdict:
    """What the model says of one cell: ``target`` a host, :data:`OUTSIDE` or an address."""
    family = 6 if ipv6 else 4
    topo = reach.Topology(lab, reach.faults_from(lab, records), family)
    return _verdict(topo, source, target, outside or SOME_OUTSIDE[family])


def _verdict(topo: reach.Topology, source: str, target: str, outside: str) -> reach.Verdict:
    if target == OUTSIDE:
        address: Any = ipaddress.ip_address(outside)
    elif target in topo.lab.hosts:
        address = reach.target_address(topo, source, target)
    else:
        address = ipaddress.ip_address(target)
    return reach.verdict(topo, source, target, address)


def expected(lab: Lab, records: Mapping[str, Any], source: str, target: str, ipv6: bool = False) -> bool:
    """Whether ``source`` should reach ``target`` (a host or :data:`OUTSIDE`): the model's verdict from the lab
    as recorded and its features' records (``records``: feature KEY -> record, as kept in the lab's state)."""
    return verdict(lab, records, source, target, ipv6).reachable


def target_address(lab: Lab, source: str, target: str, ipv6: bool = False) -> str | None:
    """Where ``source`` probes ``target`` (see the module docstring)."""
    address = reach.target_address(reach.Topology(lab, family=6 if ipv6 else 4), source, target)
    return None if address is None else str(address)


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
        from ..core.which import no_host, on_another_machine

        on_another_machine(lab, source)
        raise no_host(name, source, lab.hosts)
    gateway = _machine_gateway(drivers, ipv6)
    rows = [source] if source else list(lab.hosts)  # (across machines: this machine's hosts probe every host)
    whole = lab.whole()
    columns = list(whole.hosts) + ([OUTSIDE] if gateway else [])
    cells = _plan_cells(whole, st.extra, rows, columns, str(gateway) if gateway else None, ipv6, (proto, number))
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
                outside: str | None, ipv6: bool = False, probe: tuple[str, int | None] = ("icmp", None)) -> list[Cell]:
    """Each cell with its address and the verdict: the model's, unless an ``expect:`` entry covers it."""
    family = 6 if ipv6 else 4
    topo = reach.Topology(lab, reach.faults_from(lab, records), family)
    cells = []
    for src in rows:
        for dst in columns:
            v = _verdict(topo, src, dst, outside or SOME_OUTSIDE[family])
            address = outside if dst == OUTSIDE else v.address
            want, overridden = labtests.expected(lab.expect, src, dst, probe[0], probe[1], v.reachable)
            path = v.path() if v.address is not None else v.why
            if not v.reachable and v.address is not None:
                path += f"  ({v.why})"
            cells.append(Cell(src, dst, address, False, "" if address else "no address", want, path,
                              "expect" if overridden else "model"))
    return cells


def _probe(lab: Lab, cells: list[Cell], proto: str, port: int | None, prober: Prober | None,
           timeout: float) -> None:
    if prober is None:
        from ..drivers.probe import LiveProber

        prober = LiveProber()
    todo = [c for c in cells if c.address]
    hosts: Mapping[str, model.Host] = lab.hosts
    probes = [(hosts[c.source].namespace, c.address or "") for c in todo]
    for cell, (reachable, result) in zip(todo, prober.probe(probes, proto, port, timeout), strict=True):
        cell.reachable, cell.result = reachable, result


def explain(name: str, source: str, target: str, ipv6: bool = False, drivers: Drivers | None = None) -> reach.Verdict:
    """``nslab check --explain A B[:PORT]``: the hops the model expects from host ``source`` to ``target`` (a
    host, ``outside`` or an address; ``[ADDR]`` for IPv6 with a port), and back. The port only names the
    probe: the model cannot know what listens."""
    from ..core import state
    from ..core.which import no_host, not_up

    st = state.LabState.load(name)
    if st is None:
        raise not_up(name)
    lab = st.lab
    where, _port = _split_target(target)
    for host in (source, where):
        if host != OUTSIDE and host not in lab.whole().hosts and not is_address(host):
            raise no_host(name, host, lab.hosts)
    if source not in lab.hosts:
        raise UserError(f"--explain {source}: the source must be a host of lab '{name}'")
    gateway = _machine_gateway(drivers, ipv6) if where == OUTSIDE else None
    v6 = ipv6 or (is_address(where) and ipaddress.ip_address(where).version == 6)
    return verdict(lab.whole(), st.extra, source, where, v6, str(gateway) if gateway else None)


def _split_target(text: str) -> tuple[str, str | None]:
    """``B``, ``B:80``, ``B:53/udp``, ``ADDR6``, ``[ADDR6]:80`` -> (B, port text)."""
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        return address, rest[1:] if rest.startswith(":") else None
    if text.count(":") > 1:
        return text, None
    where, sep, port = text.partition(":")
    if sep:
        parse_port(port)
    return where, port if sep else None
