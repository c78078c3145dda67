"""From a :class:`~nslab.spec.LabSpec` to a frozen, fully concrete :class:`~nslab.model.Lab`.

This module owns every decision that turns what the user wrote into kernel names and numbers:

- names: which object gets which name. Namespaces, bridges and host-side veths are named by the rules of
  :mod:`nslab.naming`; inside a host, interface ``ethN`` is its N-th network in file order, then its links
  follow in file order; a host's hostname defaults to its name.
- IPAM: network subnets (a written one is checked; otherwise the subnet the network had before if it is
  still free, else the next free /24 of :data:`DEFAULT_POOL`), each bridge's gateway (the subnet's first
  address), host addresses (fixed, then the address the host had before, then the next free one in file
  order), each host's default route (the gateway of its first network that is not internal, unless the host
  says ``default: none`` or ``default: GW``), its static routes (each gateway on one of its subnets), its MTU
  and MAC per interface, and link subnets (written, had before, or the next free /30 of :data:`LINK_POOL`)
  with their two addresses.
- consistency: network and host names, references to unknown networks and hosts, links from a host to
  itself, addresses outside their subnet or already taken, overlapping subnets, exhausted pools, full
  networks, invalid hostnames.

It never touches the kernel: the ranges already in use (the caller passes the machine's routes and
addresses and the other labs' subnets) come in as :class:`~nslab.model.Occupied` entries, and the previous
allocations as a mapping, so the whole module is unit-testable. All problems are collected and raised
together as :class:`~nslab.errors.ResolveError`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .errors import Problem, ResolveError, field_path
from .model import Host, Interface, IPv4Addr, IPv4Net, Lab, Link, Network, Occupied, Route
from .naming import bridge_name, host_veth_name, namespace_name
from .spec import OBJECT_NAME, HostSpec, LabSpec, LinkSpec, SourceMap

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


def _free_subnets(pool: IPv4Net, prefix: int, taken: list[IPv4Net]) -> Iterator[IPv4Net]:
    for candidate in pool.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(t) for t in taken):
            yield candidate


class _Resolution:
    """The shared state of one :func:`resolve` call, filled phase by phase (each reads what earlier ones decided).

    Every phase reports its problems to ``out`` and goes on, so that one run finds them all; the order of the
    phases is the order of the problems and of the allocations (network subnets before link subnets).
    """

    def __init__(self, spec: LabSpec, out: _Collector, occupied: Iterable[Occupied], previous: Mapping[str, Any]):
        self.spec = spec
        self.lab = spec.name
        self.out = out
        self.previous = previous
        #: every IPv4 range in use so far, with who uses it: the machine and other labs, then this lab's subnets
        self.taken: list[tuple[IPv4Net, str]] = [(o.network, o.owner) for o in occupied]
        self.networks: dict[str, Network] = {}
        #: per network, the addresses given out so far (the gateway first), and to whom, for messages
        self.used: dict[str, dict[IPv4Addr, str]] = {}
        #: (host, network) -> the host's address on that network
        self.addresses: dict[tuple[str, str], IPv4Addr] = {}
        self.links: list[Link] = []
        #: per host, its link interfaces: (index in ``links``, interface name)
        self.link_ifnames: dict[str, list[tuple[int, str]]] = {h: [] for h in spec.hosts}

    # --- names -------------------------------------------------------------------------------------

    def check_names(self) -> None:
        """Network and host names become parts of kernel names: only :data:`OBJECT_NAME` is allowed."""
        for kind, names in (("networks", list(self.spec.networks)), ("hosts", list(self.spec.hosts))):
            for name in names:
                if not OBJECT_NAME.fullmatch(name):
                    self.out.add((kind, name), f"name '{name}' must match [a-z][a-z0-9-]{{0,30}}")

    # --- subnets (IPAM) ----------------------------------------------------------------------------

    def _network_owner(self, name: str) -> str:
        return f"network '{name}' of lab '{self.lab}'"

    def _link_owner(self, index: int) -> str:
        return f"links[{index}] of lab '{self.lab}'"

    def _claim(self, loc: tuple[Any, ...], subnet: IPv4Net, what: str) -> None:
        """Take an explicit subnet, or report the first range it overlaps (then it is not taken)."""
        for other, owner in self.taken:
            if subnet.overlaps(other):
                self.out.add(loc, f"subnet {subnet} overlaps {other} ({owner})")
                return
        self.taken.append((subnet, what))

    def _pick_subnet(self, wanted: str | None, pool: IPv4Net, prefix: int) -> IPv4Net | None:
        """``wanted`` (the subnet it had before) if it is still free, else the first free /``prefix`` of ``pool``."""
        if wanted and not any(IPv4Net(wanted).overlaps(t) for t, _ in self.taken):
            return IPv4Net(wanted)
        return next(_free_subnets(pool, prefix, [t for t, _ in self.taken]), None)

    def _claim_explicit_subnets(self) -> dict[str, IPv4Net]:
        """Check every written subnet (networks, then links) against what is taken; return the networks' ones."""
        subnets: dict[str, IPv4Net] = {}
        for name, net in self.spec.networks.items():
            if net.subnet is not None:
                subnets[name] = net.subnet
                self._claim(("networks", name, "subnet"), net.subnet, self._network_owner(name))
        for i, link in enumerate(self.spec.links):
            if link.subnet is not None:
                self._claim(("links", i, "subnet"), link.subnet, self._link_owner(i))
        return subnets

    def _network_subnets(self) -> dict[str, IPv4Net]:
        """Explicit subnets first (checked), then a /24 of :data:`DEFAULT_POOL` for each network without one."""
        subnets = self._claim_explicit_subnets()
        prev_nets: Mapping[str, str] = self.previous.get("networks", {})
        for name, net in self.spec.networks.items():
            if net.subnet is not None:
                continue
            chosen = self._pick_subnet(prev_nets.get(name), DEFAULT_POOL, 24)
            if chosen is None:
                self.out.add(("networks", name), f"no free /24 left in the pool {DEFAULT_POOL}; give a subnet")
                continue
            subnets[name] = chosen
            self.taken.append((chosen, self._network_owner(name)))
        return subnets

    def resolve_networks(self) -> None:
        """Every network that got a subnet, in file order, with its bridge and its gateway (the first address)."""
        subnets = self._network_subnets()
        self.networks = {
            name: Network(
                name=name,
                bridge=bridge_name(self.lab, name),
                subnet=subnets[name],
                gateway=ipaddress.IPv4Interface(f"{subnets[name][1]}/{subnets[name].prefixlen}"),
                internal=net.internal,
            )
            for name, net in self.spec.networks.items()
            if name in subnets
        }

    # --- host addresses on networks ----------------------------------------------------------------

    def assign_addresses(self) -> None:
        """Fixed addresses first, then the address each host had before, then the next free one in file order."""
        self.used = {n: {net.gateway.ip: "the gateway"} for n, net in self.networks.items()}
        self._fixed_addresses()
        self._previous_addresses()
        self._free_addresses()

    def _give(self, host_name: str, net_name: str, ip: IPv4Addr) -> None:
        self.used[net_name][ip] = f"used by host '{host_name}'"
        self.addresses[(host_name, net_name)] = ip

    def _unaddressed(self) -> Iterator[tuple[str, str]]:
        """(host, network) in file order, for each resolved network a host is on and has no address on yet."""
        for host_name, host in self.spec.hosts.items():
            for net_name in host.networks:
                if net_name in self.networks and (host_name, net_name) not in self.addresses:
                    yield host_name, net_name

    def _fixed_addresses(self) -> None:
        """Check every network reference of the hosts, and give the fixed addresses that are valid and free."""
        for host_name, host in self.spec.hosts.items():
            for net_name in host.networks:
                fixed = host.interface(net_name).address
                loc = ("hosts", host_name, "networks", net_name)
                if net_name not in self.spec.networks:
                    known = ", ".join(self.spec.networks) or "none defined"
                    self.out.add(loc, f"unknown network '{net_name}' (networks: {known})")
                elif fixed is not None and net_name in self.networks:
                    self._fixed_address(loc, host_name, net_name, fixed)

    def _fixed_address(self, loc: tuple[Any, ...], host_name: str, net_name: str, fixed: IPv4Addr) -> None:
        subnet = self.networks[net_name].subnet
        if fixed not in subnet or fixed in (subnet.network_address, subnet.broadcast_address):
            self.out.add(loc, f"address {fixed} is not a host address of {subnet}")
        elif fixed in self.used[net_name]:
            self.out.add(loc, f"address {fixed} is already {self.used[net_name][fixed]}")
        else:
            self._give(host_name, net_name, fixed)

    def _previous_addresses(self) -> None:
        """Keep the address a host had on a network (``previous``) where it is still in the subnet and free."""
        prev_hosts: Mapping[str, Mapping[str, str]] = self.previous.get("hosts", {})
        for host_name, net_name in self._unaddressed():
            before = prev_hosts.get(host_name, {}).get(net_name)
            if before is None:
                continue
            ip = IPv4Addr(before)
            subnet = self.networks[net_name].subnet
            reserved = (subnet.network_address, subnet.broadcast_address)
            if ip in subnet and ip not in self.used[net_name] and ip not in reserved:
                self._give(host_name, net_name, ip)

    def _free_addresses(self) -> None:
        """The rest: the next free host address of the subnet, in file order; report a full network."""
        free = {n: iter(net.subnet.hosts()) for n, net in self.networks.items()}  # one cursor per network
        for host_name, net_name in self._unaddressed():
            ip = next((a for a in free[net_name] if a not in self.used[net_name]), None)
            if ip is None:
                subnet = self.networks[net_name].subnet
                self.out.add(("hosts", host_name, "networks", net_name), f"network '{net_name}' ({subnet}) is full")
                continue
            self._give(host_name, net_name, ip)

    # --- links -------------------------------------------------------------------------------------

    def resolve_links(self) -> None:
        """Every valid link, with a subnet and the next ``ethN`` of both hosts (after their network interfaces)."""
        next_if = {h: len(host.networks) for h, host in self.spec.hosts.items()}
        for i, link in enumerate(self.spec.links):
            subnet = self._link_subnet(i, link)
            if subnet is None:
                continue
            a, b = link.endpoints
            a_if, b_if = f"eth{next_if[a]}", f"eth{next_if[b]}"
            next_if[a] += 1
            next_if[b] += 1
            ips = list(subnet.hosts()) if subnet.prefixlen < 31 else list(subnet)
            self.links.append(
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
            self.link_ifnames[a].append((len(self.links) - 1, a_if))
            self.link_ifnames[b].append((len(self.links) - 1, b_if))

    def _endpoints_ok(self, index: int, link: LinkSpec) -> bool:
        """Report unknown hosts and a link from a host to itself."""
        ok = True
        for j, end in enumerate(link.endpoints):
            if end not in self.spec.hosts:
                self.out.add(("links", index, "endpoints", j), f"unknown host '{end}'")
                ok = False
        if link.endpoints[0] == link.endpoints[1]:
            self.out.add(("links", index, "endpoints"), "a link needs two different hosts")
            ok = False
        return ok

    def _link_subnet(self, index: int, link: LinkSpec) -> IPv4Net | None:
        """The subnet of a link with valid endpoints: written, kept from before, or a /30 of :data:`LINK_POOL`."""
        if not self._endpoints_ok(index, link):
            return None
        if link.subnet is not None:
            return link.subnet  # checked by _claim_explicit_subnets
        a, b = link.endpoints
        prev_links: Mapping[str, str] = self.previous.get("links", {})
        subnet = self._pick_subnet(prev_links.get(f"{a}|{b}|{index}"), LINK_POOL, 30)
        if subnet is None:
            self.out.add(("links", index), f"no free /30 left in the pool {LINK_POOL}; give a subnet")
            return None
        self.taken.append((subnet, self._link_owner(index)))
        return subnet

    # --- hosts -------------------------------------------------------------------------------------

    def build_hosts(self) -> dict[str, Host]:
        return {host_name: self._host(host_name, host) for host_name, host in self.spec.hosts.items()}

    def _host(self, host_name: str, host: HostSpec) -> Host:
        """A host's namespace, hostname, interfaces (``ethN`` = N-th network, then links) and default route."""
        hostname = host.hostname or host_name
        named_badly = host.hostname is None and not OBJECT_NAME.fullmatch(host_name)  # reported as the name
        if not HOSTNAME.fullmatch(hostname) and not named_badly:
            self.out.add(("hosts", host_name, "hostname"), f"'{hostname}' is not a valid hostname")
        interfaces, gateway = self._network_interfaces(host_name, host)
        for link_index, ifname in self.link_ifnames[host_name]:
            lk = self.links[link_index]
            address = lk.a_address if lk.a == host_name else lk.b_address
            interfaces.append(Interface(name=ifname, address=address, link=link_index))
        routes = self._routes(host_name, host, interfaces)
        if host.default is not None:
            gateway = None  # `default: none`, or a written gateway: one of the routes
        return Host(
            name=host_name,
            namespace=namespace_name(self.lab, host_name),
            interfaces=tuple(interfaces),
            gateway=gateway,
            hostname=hostname,
            routes=routes,
            sysctls=tuple(host.sysctls.items()),
        )

    def _routes(self, host_name: str, host: HostSpec, interfaces: list[Interface]) -> tuple[Route, ...]:
        """The host's static routes (and a written default gateway, last), each via an address on one of its
        own subnets (networks and links), as the kernel requires."""
        wanted: list[tuple[tuple[Any, ...], IPv4Net, IPv4Addr]] = [
            (("hosts", host_name, "routes", i), r.to, r.via) for i, r in enumerate(host.routes)
        ]
        if isinstance(host.default, IPv4Addr):
            wanted.append((("hosts", host_name, "default"), IPv4Net("0.0.0.0/0"), host.default))
        routes: list[Route] = []
        for loc, to, via in wanted:
            on = [i for i in interfaces if via in i.address.network]
            if not on:
                subnets = ", ".join(str(i.address.network) for i in interfaces) or "none"
                self.out.add(loc, f"gateway {via} is on none of the host's subnets ({subnets})")
            elif any(via == i.address.ip for i in on):
                self.out.add(loc, f"gateway {via} is the host's own address")
            else:
                routes.append(Route(to, via))
        return tuple(routes)

    def _network_interfaces(self, host_name: str, host: HostSpec) -> tuple[list[Interface], IPv4Addr | None]:
        """The host's interfaces on networks, and its gateway: that of its first network that is not internal."""
        interfaces: list[Interface] = []
        gateway: IPv4Addr | None = None
        for idx, net_name in enumerate(host.networks):
            ip = self.addresses.get((host_name, net_name))
            if ip is None:
                continue
            net = self.networks[net_name]
            ifname = f"eth{idx}"
            written = host.interface(net_name)
            interfaces.append(
                Interface(
                    name=ifname,
                    address=ipaddress.IPv4Interface(f"{ip}/{net.subnet.prefixlen}"),
                    network=net_name,
                    host_veth=host_veth_name(self.lab, host_name, ifname),
                    mtu=written.mtu or host.mtu or self.spec.networks[net_name].mtu,
                    mac=written.mac,
                )
            )
            if gateway is None and not net.internal:
                gateway = net.gateway.ip
        return interfaces, gateway


def resolve_all(
    spec: LabSpec,
    source: SourceMap | None = None,
    file: str = "",
    occupied: Iterable[Occupied] = (),
    previous: Mapping[str, Any] | None = None,
) -> tuple[Lab, list[Problem]]:
    """Resolve as far as it goes: the lab made of what resolved, and every problem found on the way (the
    later checks, features' and the machine's, run on that lab too, so one run reports them all)."""
    out = _Collector(source or SourceMap(), file)
    resolution = _Resolution(spec, out, occupied, previous or {})
    resolution.check_names()
    resolution.resolve_networks()
    resolution.assign_addresses()
    resolution.resolve_links()
    hosts = resolution.build_hosts()
    lab = Lab(
        name=spec.name,
        source=file,
        networks=resolution.networks,
        hosts=hosts,
        links=tuple(resolution.links),
        spec=spec,
    )
    return lab, out.problems


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
    lab, problems = resolve_all(spec, source, file, occupied, previous)
    if problems:
        raise ResolveError(problems)
    return lab
