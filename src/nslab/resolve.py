"""From a raw :class:`~nslab.spec.LabSpec` to a frozen, fully concrete :class:`Lab`.

This module owns every decision that turns what the user wrote into kernel names and numbers:

- names: namespace ``<lab>-<host>``, interfaces ``eth0..`` inside hosts (networks first, then links),
  bridge and host-side veth names (``nsl``/``nsv`` + a short hash, always <= 15 characters);
- IPAM: automatic subnets from :data:`DEFAULT_POOL` / :data:`LINK_POOL` that avoid the machine's routes and
  addresses and other labs, the bridge's gateway address, host addresses (fixed, then the address the host
  had before, then the next free one in file order);
- consistency: references, duplicates, out-of-subnet addresses, overlaps.

It never touches the kernel: what the machine already uses is passed in as :class:`Occupied` entries, so
the whole module is unit-testable. All problems are collected and raised together as ResolveError.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import Problem, ResolveError
from .model import (
    Host,
    Interface,
    IPv4Addr,
    IPv4Net,
    Lab,
    Link,
    Network,
    Occupied,
    bridge_name,
    host_veth_name,
    namespace_name,
)
from .spec import OBJECT_NAME, LabSpec, SourceMap, field_path

#: Automatic network subnets are /24s carved from this pool.
DEFAULT_POOL = IPv4Net("10.213.0.0/16")
#: Automatic point-to-point link subnets are /30s carved from this pool.
LINK_POOL = IPv4Net("10.214.0.0/16")

HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")


class _Collector:
    def __init__(self, source: SourceMap, file: str):
        self.problems: list[Problem] = []
        self.source = source
        self.file = file

    def add(self, loc: tuple[Any, ...], message: str) -> None:
        self.problems.append(Problem(message, field_path(loc), self.file, self.source.line(loc)))


def _free_subnets(pool: IPv4Net, prefix: int, taken: list[IPv4Net]) -> Iterable[IPv4Net]:
    for candidate in pool.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(t) for t in taken):
            yield candidate


def resolve(
    spec: LabSpec,
    source: SourceMap | None = None,
    file: str = "",
    occupied: Iterable[Occupied] = (),
    previous: Mapping[str, Any] | None = None,
) -> Lab:
    """Resolve ``spec`` against what the machine already uses; raise ResolveError with every problem.

    ``previous`` is :meth:`Lab.allocations` of the lab as it is up now, so that an edit keeps the subnets
    and addresses that are still valid (a converging ``up`` then leaves those hosts alone).
    """
    out = _Collector(source or SourceMap(), file)
    previous = previous or {}
    occupied = list(occupied)
    lab = spec.name

    for kind in ("networks", "hosts"):
        for name in getattr(spec, kind):
            if not OBJECT_NAME.fullmatch(name):
                out.add((kind, name), f"name '{name}' must match [a-z][a-z0-9-]{{0,30}}")

    # --- subnets: explicit ones first (checked), then automatic ones from the pool -----------------
    subnets: dict[str, IPv4Net] = {}
    taken: list[tuple[IPv4Net, str]] = [(o.network, o.owner) for o in occupied]

    def claim(loc: tuple[Any, ...], subnet: IPv4Net, what: str) -> None:
        for other, owner in taken:
            if subnet.overlaps(other):
                out.add(loc, f"subnet {subnet} overlaps {other} ({owner})")
                return
        taken.append((subnet, what))

    for name, net in spec.networks.items():
        if net.subnet is not None:
            subnets[name] = net.subnet
            claim(("networks", name, "subnet"), net.subnet, f"network '{name}' of lab '{lab}'")
    for i, link in enumerate(spec.links):
        if link.subnet is not None:
            claim(("links", i, "subnet"), link.subnet, f"links[{i}] of lab '{lab}'")

    prev_nets: Mapping[str, str] = previous.get("networks", {})
    for name, net in spec.networks.items():
        if net.subnet is not None:
            continue
        wanted = prev_nets.get(name)
        chosen: IPv4Net | None = None
        if wanted and not any(IPv4Net(wanted).overlaps(t) for t, _ in taken):
            chosen = IPv4Net(wanted)
        if chosen is None:
            chosen = next(_free_subnets(DEFAULT_POOL, 24, [t for t, _ in taken]), None)
        if chosen is None:
            out.add(("networks", name), f"no free /24 left in the pool {DEFAULT_POOL}; give a subnet")
            continue
        subnets[name] = chosen
        taken.append((chosen, f"network '{name}' of lab '{lab}'"))

    networks = {
        name: Network(
            name=name,
            bridge=bridge_name(lab, name),
            subnet=subnets[name],
            gateway=ipaddress.IPv4Interface(f"{subnets[name][1]}/{subnets[name].prefixlen}"),
            internal=net.internal,
        )
        for name, net in spec.networks.items()
        if name in subnets
    }

    # --- host addresses on networks ----------------------------------------------------------------
    used: dict[str, dict[IPv4Addr, str]] = {n: {net.gateway.ip: "the gateway"} for n, net in networks.items()}
    addresses: dict[tuple[str, str], IPv4Addr] = {}
    for host_name, host in spec.hosts.items():
        for net_name, fixed in host.networks.items():
            loc = ("hosts", host_name, "networks", net_name)
            if net_name not in spec.networks:
                known = ", ".join(spec.networks) or "none defined"
                out.add(loc, f"unknown network '{net_name}' (networks: {known})")
                continue
            if fixed is None or net_name not in networks:
                continue
            subnet = networks[net_name].subnet
            if fixed not in subnet or fixed in (subnet.network_address, subnet.broadcast_address):
                out.add(loc, f"address {fixed} is not a host address of {subnet}")
            elif fixed in used[net_name]:
                out.add(loc, f"address {fixed} is already {used[net_name][fixed]}")
            else:
                used[net_name][fixed] = f"used by host '{host_name}'"
                addresses[(host_name, net_name)] = fixed

    prev_hosts: Mapping[str, Mapping[str, str]] = previous.get("hosts", {})
    for host_name, host in spec.hosts.items():  # keep what each host had, where still free
        for net_name in host.networks:
            if net_name not in networks or (host_name, net_name) in addresses:
                continue
            before = prev_hosts.get(host_name, {}).get(net_name)
            if before is None:
                continue
            ip = IPv4Addr(before)
            subnet = networks[net_name].subnet
            if ip in subnet and ip not in used[net_name] and ip != subnet.broadcast_address:
                used[net_name][ip] = f"used by host '{host_name}'"
                addresses[(host_name, net_name)] = ip

    free = {n: (a for a in net.subnet.hosts()) for n, net in networks.items()}  # one cursor per network
    for host_name, host in spec.hosts.items():  # the rest: next free, in file order
        for net_name in host.networks:
            if net_name not in networks or (host_name, net_name) in addresses:
                continue
            subnet = networks[net_name].subnet
            ip = next((a for a in free[net_name] if a not in used[net_name]), None)
            if ip is None:
                out.add(("hosts", host_name, "networks", net_name), f"network '{net_name}' ({subnet}) is full")
                continue
            used[net_name][ip] = f"used by host '{host_name}'"
            addresses[(host_name, net_name)] = ip

    # --- links -------------------------------------------------------------------------------------
    links: list[Link] = []
    link_ifnames: dict[str, list[tuple[int, str]]] = {h: [] for h in spec.hosts}
    next_if = {h: len(host.networks) for h, host in spec.hosts.items()}
    prev_links: Mapping[str, str] = previous.get("links", {})
    for i, link in enumerate(spec.links):
        a, b = link.endpoints
        bad = False
        for j, end in enumerate((a, b)):
            if end not in spec.hosts:
                out.add(("links", i, "endpoints", j), f"unknown host '{end}'")
                bad = True
        if a == b:
            out.add(("links", i, "endpoints"), "a link needs two different hosts")
            bad = True
        subnet = link.subnet
        if subnet is None and not bad:
            wanted = prev_links.get(f"{a}|{b}|{i}")
            if wanted and not any(IPv4Net(wanted).overlaps(t) for t, _ in taken):
                subnet = IPv4Net(wanted)
            else:
                subnet = next(_free_subnets(LINK_POOL, 30, [t for t, _ in taken]), None)
            if subnet is None:
                out.add(("links", i), f"no free /30 left in the pool {LINK_POOL}; give a subnet")
                bad = True
            else:
                taken.append((subnet, f"links[{i}] of lab '{lab}'"))
        if bad or subnet is None:
            continue
        ips = list(subnet.hosts()) if subnet.prefixlen < 31 else list(subnet)
        a_if, b_if = f"eth{next_if[a]}", f"eth{next_if[b]}"
        next_if[a] += 1
        next_if[b] += 1
        links.append(
            Link(
                a=a,
                b=b,
                a_ifname=a_if,
                b_ifname=b_if,
                subnet=subnet,
                a_address=ipaddress.IPv4Interface(f"{ips[0]}/{subnet.prefixlen}"),
                b_address=ipaddress.IPv4Interface(f"{ips[1]}/{subnet.prefixlen}"),
            )
        )
        link_ifnames[a].append((len(links) - 1, a_if))
        link_ifnames[b].append((len(links) - 1, b_if))

    # --- hosts -------------------------------------------------------------------------------------
    hosts: dict[str, Host] = {}
    for host_name, host in spec.hosts.items():
        hostname = host.hostname or host_name
        if not HOSTNAME.match(hostname):
            out.add(("hosts", host_name, "hostname"), f"'{hostname}' is not a valid hostname")
        interfaces: list[Interface] = []
        gateway: IPv4Addr | None = None
        for idx, net_name in enumerate(host.networks):
            ip = addresses.get((host_name, net_name))
            if ip is None:
                continue
            net = networks[net_name]
            ifname = f"eth{idx}"
            interfaces.append(
                Interface(
                    name=ifname,
                    address=ipaddress.IPv4Interface(f"{ip}/{net.subnet.prefixlen}"),
                    network=net_name,
                    host_veth=host_veth_name(lab, host_name, ifname),
                )
            )
            if gateway is None and not net.internal:
                gateway = net.gateway.ip
        for link_index, ifname in link_ifnames[host_name]:
            lk = links[link_index]
            address = lk.a_address if lk.a == host_name else lk.b_address
            interfaces.append(Interface(name=ifname, address=address, link=link_index))
        hosts[host_name] = Host(
            name=host_name,
            namespace=namespace_name(lab, host_name),
            interfaces=tuple(interfaces),
            gateway=gateway,
            hostname=hostname,
        )

    if out.problems:
        raise ResolveError(out.problems)
    return Lab(
        name=lab,
        source=file,
        networks=networks,
        hosts=hosts,
        links=tuple(links),
        spec=spec,
    )
