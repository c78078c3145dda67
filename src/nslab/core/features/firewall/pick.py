"""Host ports nslab picks for ``publish`` entries that name none (``"80"``, ``":80"``, ``"127.0.0.1::80"``), as
Docker's ``-p 80`` does (pure: the machine's facts come in as arguments; unit-tested).

A picked port is
- in the machine's ephemeral range (``net.ipv4.ip_local_port_range``), not one of its reserved ports
  (``ip_local_reserved_ports``);
- held by no socket of its protocol on the machine (listening, connected or waiting, any address);
- published by no lab (another lab's entries, this lab's written host ports and its other picks);
- sticky: the port picked for an entry (same host, same text, same port and protocol) by the last ``up`` is
  kept while the lab is up, unless a host port now written in the lab file takes it. ``down`` forgets it
  (it lives in the lab's firewall record only).
The lowest free port of the range is taken (Docker's allocator also walks its range from the start), so
``up --dry-run`` shows the port that ``up`` would pick on the machine as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ....errors import ConflictError
from .record import PublishedPort

Key = tuple[str, str, str, str, int]  # (host, entry as written, proto, host_ip, port in the host)


def _key(p: PublishedPort) -> Key:
    return (p.host, p.spec, p.proto, p.host_ip, p.port)


def _with_port(p: PublishedPort, host_port: int) -> PublishedPort:
    return PublishedPort(p.host, p.field, p.spec, p.proto, p.host_ip, host_port, p.network, p.address, p.port,
                         picked=True, address6=p.address6)


def pick_ports(
    ports: list[PublishedPort],
    previous: Iterable[PublishedPort],
    foreign: Iterable[PublishedPort],
    bound: Callable[[str], set[int]],
    ephemeral: tuple[int, int, frozenset[int]],
) -> list[PublishedPort]:
    """``ports`` with every ``picked`` one (host_port 0) given a host port; the others as they are.

    ``previous``: this lab's ports as recorded (their picks are kept); ``foreign``: every other lab's ports;
    ``bound(proto)``: the ports sockets of that protocol hold; ``ephemeral``: (low, high, reserved)."""
    wanted = {i for i, p in enumerate(ports) if p.picked and p.host_port == 0}
    if not wanted:
        return ports
    taken: dict[str, set[int]] = {"tcp": set(), "udp": set()}
    for p in [*foreign, *(p for p in ports if not p.picked)]:
        taken.setdefault(p.proto, set()).add(p.host_port)
    chosen = _keep_previous(ports, wanted, previous, taken)
    chosen.update(_pick_free(ports, wanted - set(chosen), taken, bound, ephemeral))
    return [_with_port(p, chosen[i]) if i in chosen else p for i, p in enumerate(ports)]


def _keep_previous(
    ports: list[PublishedPort], wanted: set[int], previous: Iterable[PublishedPort], taken: dict[str, set[int]]
) -> dict[int, int]:
    """The picks of the last ``up`` that are still free (index in ``ports`` -> host port), marked taken.

    Done before any new pick: a new entry must not take one of them."""
    kept: dict[Key, list[int]] = {}
    for p in previous:
        if p.picked and p.host_port:
            kept.setdefault(_key(p), []).append(p.host_port)
    chosen: dict[int, int] = {}
    for i in sorted(wanted):
        p = ports[i]
        port = next((n for n in kept.get(_key(p), []) if n not in taken[p.proto]), None)
        if port is not None:
            kept[_key(p)].remove(port)
            chosen[i] = port
            taken[p.proto].add(port)
    return chosen


def _pick_free(
    ports: list[PublishedPort],
    wanted: set[int],
    taken: dict[str, set[int]],
    bound: Callable[[str], set[int]],
    ephemeral: tuple[int, int, frozenset[int]],
) -> dict[int, int]:
    """The lowest free port of the ephemeral range for each of ``wanted`` (index in ``ports``), marked taken."""
    low, high, reserved = ephemeral
    in_use: dict[str, set[int]] = {}
    chosen: dict[int, int] = {}
    for i in sorted(wanted):
        p = ports[i]
        if p.proto not in in_use:
            in_use[p.proto] = bound(p.proto)
        free = next((n for n in range(low, high + 1)
                     if n not in taken[p.proto] and n not in in_use[p.proto] and n not in reserved), None)
        if free is None:
            raise ConflictError(f"{p.field}: no free {p.proto} port left in the ephemeral range {low}-{high} "
                                f"to publish '{p.spec}' on")
        chosen[i] = free
        taken[p.proto].add(free)
    return chosen


def newly_picked(ports: list[PublishedPort], previous: Iterable[PublishedPort]) -> list[PublishedPort]:
    """The ports picked anew (not kept from the last ``up``): ``up`` and ``up --dry-run`` name them."""
    before = {(_key(p), p.host_port) for p in previous if p.picked}
    return [p for p in ports if p.picked and (_key(p), p.host_port) not in before]
