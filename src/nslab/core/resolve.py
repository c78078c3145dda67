"""From a :class:`~nslab.core.spec.LabSpec` to a frozen, fully concrete :class:`~nslab.model.Lab`.

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
- IPv6 (networks with ``ipv6: true`` or ``subnet6``): each network's /64 (written and checked, else the one
  it had before if still free, else the next free /64 of the machine's ULA /48, see :mod:`nslab.core.ula`), the
  bridge's gateway (the subnet's first address), and each host's address: fixed (``address6``), then the one
  it had before, then one derived from the lab, host and network names (stable across machines and
  re-creations, whatever the file order); the IPv6 default route via the gateway of the host's first
  dual-stack network that is not internal.
- a lab across machines (``machines:``): decided from the file alone, the same on every machine: no machine's
  routes, no previous allocations, pools searched from a place derived from the lab's name, the lab's own ULA
  /48, every interface's MAC derived; each host's machine, each network's home and machines and VNI, the
  overlay MTU on every interface of a spanning network or link, and a link between machines of kind ``vxlan``
  (core/overlay.py, core/kinds/vxlan.py); ``Lab.digest`` hashes the result.
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
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..errors import Problem, ResolveError, field_path
from ..model import (
    NO_CONTAINMENT,
    Dns,
    Host,
    Interface,
    IPv4Addr,
    IPv4Net,
    IPv6Addr,
    IPv6Net,
    Lab,
    Link,
    Network,
    Occupied,
    Route,
)
from ..naming import blake2s, bridge_name, host_veth_name, mac_address, namespace_name
from ..values import replace
from . import kinds, labtests, overlay
from .features import contain, containers, dns, firewall, impair, limits, macvlan, partitions, services
from .spec import OBJECT_NAME, HostSpec, LabSpec, LinkSpec, SourceMap, name_rule
from .wiring import PER_INTERFACE_SYSCTL

#: Automatic network subnets are /24s carved from this pool.
DEFAULT_POOL = IPv4Net("10.213.0.0/16")
#: Automatic point-to-point link subnets are /30s carved from this pool.
LINK_POOL = IPv4Net("10.214.0.0/16")
#: Automatic IPv6 subnets are /64s of the machine's ULA /48 (nslab.core.ula); this one when none is given (tests).
FALLBACK_ULA = IPv6Net("fd6e:736c:6162::/48")

HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")


class _Collector:
    def __init__(self, source: SourceMap, file: str):
        self.problems: list[Problem] = []
        self.source = source
        self.file = file

    def add(self, loc: tuple[Any, ...], message: str) -> None:
        self.problems.append(Problem(message, field_path(loc), self.file, self.source.line(loc)))


def _free_subnets(pool: IPv4Net, prefix: int, taken: list[IPv4Net], start: str = "") -> Iterator[IPv4Net]:
    """The subnets of ``pool`` that overlap nothing ``taken``, in order; ``start``: a lab across machines' name,
    where the search begins (overlay.pool_offset), wrapping round."""
    count = 1 << (prefix - pool.prefixlen)
    first = overlay.pool_offset(start, count) if start else 0
    size = 1 << (32 - prefix)
    for n in range(count):
        candidate = IPv4Net((int(pool.network_address) + ((first + n) % count) * size, prefix))
        if not any(candidate.overlaps(t) for t in taken):
            yield candidate


class _Resolution:
    """The shared state of one :func:`resolve` call, filled phase by phase (each reads what earlier ones decided).

    Every phase reports its problems to ``out`` and goes on, so that one run finds them all; the order of the
    phases is the order of the problems and of the allocations (network subnets before link subnets).
    """

    def __init__(self, spec: LabSpec, out: _Collector, occupied: Iterable[Occupied], previous: Mapping[str, Any],
                 ula: IPv6Net = FALLBACK_ULA):
        self.spec = spec
        self.lab = spec.name
        self.out = out
        #: a lab across machines resolves from its file alone: no machine's routes, no memory, its own ULA range
        self.across = bool(spec.machines)
        if self.across:
            occupied, previous, ula = (), {}, overlay.lab_ula(spec.name)
        self.previous = previous
        self.ula = ula
        self.machines = overlay.machines(spec, out.add)
        self.placed = overlay.placement(spec, self.machines, out.add)
        self.overlay_mtu = overlay.overlay_mtu(spec, self.machines, out.add)
        self.vnis: set[int] = set()
        #: the lab file's folder (``env_file`` paths are relative to it); "": the working directory
        self.base = os.path.dirname(os.path.abspath(out.file)) if out.file and not out.file.startswith("<") else ""
        occupied = list(occupied)
        #: every IPv4 range in use so far, with who uses it: the machine and other labs, then this lab's subnets
        self.taken: list[tuple[IPv4Net, str]] = [(o.network, o.owner) for o in occupied
                                                 if isinstance(o.network, IPv4Net)]
        #: the same for IPv6 (the two families never overlap; ipaddress would compare them bit by bit)
        self.taken6: list[tuple[IPv6Net, str]] = [(o.network, o.owner) for o in occupied
                                                  if isinstance(o.network, IPv6Net)]
        #: per dual-stack network, the IPv6 addresses given out so far (the gateway first)
        self.used6: dict[str, dict[IPv6Addr, str]] = {}
        self.addresses6: dict[tuple[str, str], IPv6Addr] = {}
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
                    self.out.add((kind, name), f"{kind[:-1]} name '{name}': {name_rule(31)}")

    def check_macs(self) -> None:
        """A MAC address written for two interfaces of the lab: reported at the second, naming the first."""
        first: dict[str, tuple[Any, ...]] = {}
        for host_name, host in self.spec.hosts.items():
            for net_name in host.networks:
                mac = host.interface(net_name).mac
                if mac is None:
                    continue
                loc = ("hosts", host_name, "networks", net_name, "mac")
                if mac in first:
                    line = self.out.source.line(first[mac])
                    where = field_path(first[mac]) + (f" (line {line})" if line else "")
                    self.out.add(loc, f"MAC address {mac} is also given to {where}: each interface needs its own")
                else:
                    first[mac] = loc

    # --- subnets (IPAM) ----------------------------------------------------------------------------

    def _network_owner(self, name: str) -> str:
        return f"network '{name}' of lab '{self.lab}'"

    def _link_owner(self, index: int) -> str:
        return f"links[{index}] of lab '{self.lab}'"

    def _claim(self, loc: tuple[Any, ...], subnet: IPv4Net, what: str, external: str | None = None) -> None:
        """Take an explicit subnet, or report the first range it overlaps (then it is not taken). ``external``:
        the machine's interface the network borrows, whose own addresses and routes are that network's (the
        feature external checks that they match)."""
        for other, owner in self.taken:
            if external is not None and owner.endswith(f" on {external}"):
                continue
            if subnet.overlaps(other):
                self.out.add(loc, f"subnet {subnet} overlaps {other} ({owner})")
                return
        self.taken.append((subnet, what))

    def _pick_subnet(self, wanted: str | None, pool: IPv4Net, prefix: int) -> IPv4Net | None:
        """``wanted`` (the subnet it had before) if it is still free, else the first free /``prefix`` of ``pool``."""
        if wanted and not any(IPv4Net(wanted).overlaps(t) for t, _ in self.taken):
            return IPv4Net(wanted)
        return next(_free_subnets(pool, prefix, [t for t, _ in self.taken], self.lab if self.across else ""), None)

    def _claim_explicit_subnets(self) -> dict[str, IPv4Net]:
        """Check every written subnet (networks, then links) against what is taken; return the networks' ones."""
        subnets: dict[str, IPv4Net] = {}
        for name, net in self.spec.networks.items():
            if net.subnet is not None:
                subnets[name] = net.subnet
                self._claim(("networks", name, "subnet"), net.subnet, self._network_owner(name), net.external)
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
        """Every network that got a subnet, in file order, with its bridge and its gateway (the first address);
        across machines its home, the machines with a bridge of it and, spanning several, its VNI."""
        subnets = self._network_subnets()
        homes = overlay.network_machines(self.spec, self.machines, self.placed, self.out.add)
        self.networks = {}
        for name, net in self.spec.networks.items():
            if name not in subnets:
                continue
            home, machines = homes.get(name, (None, ()))
            self.networks[name] = Network(
                name=name,
                bridge=bridge_name(self.lab, name),
                subnet=subnets[name],
                gateway=ipaddress.IPv4Interface(f"{subnets[name][1]}/{subnets[name].prefixlen}"),
                internal=net.internal or net.external is not None,  # the LAN is its way out, not NAT
                external=net.external,
                home=home,
                machines=machines,
                vni=overlay.vni(self.lab, "net", name, self.vnis) if len(machines) > 1 else None,
            )

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

    def _outside(self, loc: tuple[Any, ...], net_name: str, fixed: IPv4Addr | IPv6Addr, key: str) -> None:
        """A written address outside its network's subnet (``key``: subnet or subnet6): said against the subnet
        the user wrote; none written: that one is needed (the automatic one is no promise); one written but
        rejected: nothing more (its own problem says what is wrong with it)."""
        written = getattr(self.spec.networks[net_name], key)
        if written is not None:
            self.out.add(loc, f"address {fixed} is not a host address of {written}")
        elif not self.out.source.written(("networks", net_name, key)):
            self.out.add(loc, f"address {fixed}: network '{net_name}' has no {key} written; give it one that "
                              f"holds {fixed} (networks.{net_name}.{key})")

    def _fixed_address(self, loc: tuple[Any, ...], host_name: str, net_name: str, fixed: IPv4Addr) -> None:
        subnet = self.networks[net_name].subnet
        if fixed not in subnet or fixed in (subnet.network_address, subnet.broadcast_address):
            self._outside(loc, net_name, fixed, "subnet")
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

    # --- IPv6 (dual-stack networks) -------------------------------------------------------------------

    def resolve_networks6(self) -> None:
        """A /64 (or the written subnet6) and a gateway for each resolved dual-stack network, in file order."""
        wanted: Mapping[str, str] = self.previous.get("networks6", {})
        for name, net in self.spec.networks.items():
            if name not in self.networks or not net.dual_stack:
                continue
            subnet = self._subnet6(("networks", name), self._network_owner(name), net.subnet6, wanted.get(name))
            if subnet is None:
                continue
            gateway = ipaddress.IPv6Interface(f"{subnet[1]}/{subnet.prefixlen}")
            self.networks[name] = replace(self.networks[name], subnet6=subnet, gateway6=gateway,
                                                      nat6=net.nat6)

    def _subnet6(self, loc: tuple[Any, ...], owner: str, written: IPv6Net | None, before: str | None
                 ) -> IPv6Net | None:
        """``written`` if it overlaps nothing taken, else the /64 had ``before`` if still free, else the next free
        /64 of the ULA range; None (reported at ``loc``) when there is none."""
        if written is not None:
            for other, who in self.taken6:
                if written.overlaps(other):
                    self.out.add((*loc, "subnet6"), f"subnet6 {written} overlaps {other} ({who})")
                    return None
            self.taken6.append((written, owner))
            return written
        taken = [t for t, _ in self.taken6]
        if before and not any(IPv6Net(before).overlaps(t) for t in taken):
            chosen: IPv6Net | None = IPv6Net(before)
        else:
            chosen = next((c for c in self.ula.subnets(new_prefix=64) if not any(c.overlaps(t) for t in taken)), None)
        if chosen is None:
            self.out.add(loc, f"no free /64 left in {self.ula}; give a subnet6")
            return None
        self.taken6.append((chosen, owner))
        return chosen

    def assign_addresses6(self) -> None:
        """Fixed ``address6`` first, then the address each host had before, then a derived one."""
        self.used6 = {n: {net.gateway6.ip: "the gateway"} for n, net in self.networks.items() if net.gateway6}
        prev: Mapping[str, Mapping[str, str]] = self.previous.get("hosts6", {})
        pending: list[tuple[str, str]] = []
        for host_name, host in self.spec.hosts.items():
            for net_name in host.networks:
                if net_name not in self.networks:
                    continue
                fixed = host.interface(net_name).address6
                loc = ("hosts", host_name, "networks", net_name, "address6")
                if net_name not in self.used6:
                    if fixed is not None and not self.spec.networks[net_name].dual_stack:  # else: reported
                        self.out.add(loc, f"network '{net_name}' has no IPv6 (give it ipv6: true or a subnet6)")
                elif fixed is not None:
                    self._fixed6(loc, host_name, net_name, fixed)
                else:
                    pending.append((host_name, net_name))
        later = []
        for host_name, net_name in pending:
            before = prev.get(host_name, {}).get(net_name)
            if before is None or not self._free6(net_name, IPv6Addr(before)):
                later.append((host_name, net_name))
            else:
                self._give6(host_name, net_name, IPv6Addr(before))
        for host_name, net_name in later:
            ip = self._derived6(host_name, net_name)
            if ip is None:
                subnet = self.networks[net_name].subnet6
                self.out.add(("hosts", host_name, "networks", net_name), f"network '{net_name}' ({subnet}) is full")
                continue
            self._give6(host_name, net_name, ip)

    def _free6(self, net_name: str, ip: IPv6Addr) -> bool:
        subnet = self.networks[net_name].subnet6
        return subnet is not None and ip in subnet and ip != subnet.network_address and ip not in self.used6[net_name]

    def _give6(self, host_name: str, net_name: str, ip: IPv6Addr) -> None:
        self.used6[net_name][ip] = f"used by host '{host_name}'"
        self.addresses6[(host_name, net_name)] = ip

    def _fixed6(self, loc: tuple[Any, ...], host_name: str, net_name: str, fixed: IPv6Addr) -> None:
        if fixed in self.used6[net_name]:
            self.out.add(loc, f"address {fixed} is already {self.used6[net_name][fixed]}")
        elif not self._free6(net_name, fixed):
            self._outside(loc, net_name, fixed, "subnet6")
        else:
            self._give6(host_name, net_name, fixed)

    def _derived6(self, host_name: str, net_name: str) -> IPv6Addr | None:
        """The host's stable address: a hash of lab/host/network as the interface part (the next hash on a
        clash); the same on every machine and every ``up``, whatever else the file holds."""
        subnet = self.networks[net_name].subnet6
        assert subnet is not None
        room = subnet.num_addresses
        for attempt in range(1 << 16):
            digest = blake2s(f"{self.lab}/{host_name}/{net_name}/{attempt}".encode(), digest_size=16).digest()
            ip = subnet.network_address + int.from_bytes(digest, "big") % room
            if self._free6(net_name, ip):
                return ip
        return None  # (a small subnet6 that is full: the hash walked its addresses many times over)

    # --- links -------------------------------------------------------------------------------------

    def resolve_links(self) -> None:
        """Every valid link, with a subnet and the next ``ethN`` of both hosts (after their network interfaces),
        made by its kind (kinds/)."""
        next_if = {h: len(host.networks) for h, host in self.spec.hosts.items()}
        for i, link in enumerate(self.spec.links):
            subnet = self._link_subnet(i, link)
            if subnet is None:
                continue
            a, b = link.endpoints
            a_if, b_if = f"eth{next_if[a]}", f"eth{next_if[b]}"
            next_if[a] += 1
            next_if[b] += 1
            subnet6 = self._link_subnet6(i, link) if link.dual_stack else None
            self.links.append(kinds.kind(self._link_kind(i, link)).resolve(self, link, a_if, b_if, subnet, subnet6))
            self.link_ifnames[a].append((len(self.links) - 1, a_if))
            self.link_ifnames[b].append((len(self.links) - 1, b_if))

    def _link_kind(self, index: int, link: LinkSpec) -> str:
        """The link's kind: ``vxlan`` between hosts on two machines (chosen, never written), else as written."""
        a, b = link.endpoints
        across = self.placed.get(a) != self.placed.get(b)
        if across and link.kind != kinds.LINK_KIND:
            self.out.add(("links", index, "kind"), f"a link between machines is a VXLAN (made by itself): "
                                                   f"kind {link.kind} joins hosts of one machine")
        elif not across and link.kind == overlay.LINK_KIND:
            self.out.add(("links", index, "kind"), "kind vxlan is chosen by itself for a link between machines: "
                                                   "leave kind: out")
        return overlay.LINK_KIND if across else link.kind

    def next_vni(self, kind: str, name: str) -> int:
        """The next of the lab's own VNIs (networks first, then links, in file order): overlay.vni."""
        return overlay.vni(self.lab, kind, name, self.vnis)

    def _link_subnet6(self, index: int, link: LinkSpec) -> IPv6Net | None:
        a, b = link.endpoints
        wanted: Mapping[str, str] = self.previous.get("links6", {})
        return self._subnet6(("links", index), self._link_owner(index), link.subnet6, wanted.get(f"{a}|{b}|{index}"))

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
        resolvers = dns.resolve(self.spec, self.out.add)
        services.check_order(self.spec, self.out.add)
        return {host_name: self._host(host_name, host, resolvers[host_name])
                for host_name, host in self.spec.hosts.items()}

    def _host(self, host_name: str, host: HostSpec, resolver: Dns) -> Host:
        """A host's namespace, hostname, interfaces (``ethN`` = N-th network, then links), default route, and
        what its features ask (each feature resolves its own part)."""
        hostname = host.hostname or host_name
        named_badly = host.hostname is None and not OBJECT_NAME.fullmatch(host_name)  # reported as the name
        if not HOSTNAME.fullmatch(hostname) and not named_badly:
            self.out.add(("hosts", host_name, "hostname"), f"'{hostname}' is not a valid hostname")
        interfaces, gateway = self._network_interfaces(host_name, host)
        for link_index, ifname in self.link_ifnames[host_name]:
            lk = self.links[link_index]
            address, address6 = (lk.a_address, lk.a_address6) if lk.a == host_name else (lk.b_address, lk.b_address6)
            interfaces.append(Interface(name=ifname, address=address, link=link_index, address6=address6))
        routes = self._routes(host_name, host, interfaces)
        if host.default == "none" or isinstance(host.default, IPv4Addr):
            gateway = None  # `default: none`, or a written gateway: one of the routes
        # `default: none`, or a written IPv6 gateway (one of the routes): no automatic IPv6 default route
        gateway6 = None if host.default == "none" or isinstance(host.default, IPv6Addr) else self._gateway6(host)
        self._check_sysctl_interfaces(host_name, host)
        report = self.out.add
        return Host(
            name=host_name,
            namespace=namespace_name(self.lab, host_name),
            interfaces=tuple(interfaces),
            gateway=gateway,
            hostname=hostname,
            routes=routes,
            sysctls=tuple(host.sysctls.items()),
            container=containers.resolve(host_name, host, namespace_name(self.lab, host_name), report),
            gateway6=gateway6,
            services=services.resolve(host_name, host, report, self.base),
            contain=contain.resolve(host_name, host, report) if host.image is None else NO_CONTAINMENT,
            dns=resolver,
            publish=firewall.resolve(host_name, host),
            impair=impair.resolve(host),
            macvlans=macvlan.resolve(self.lab, host_name, host),
            resources=limits.resolve(host),
            profiles=tuple(host.profiles),
            machine=self.placed.get(host_name),
        )

    def _check_sysctl_interfaces(self, host_name: str, host: HostSpec) -> None:
        """A per-interface sysctl key (``net.ipv4.conf.eth1.rp_filter``) names one of the host's interfaces as
        written: eth0.. for its networks, then its links (whatever else resolving found wrong)."""
        count = len(host.networks) + sum(e == host_name for lk in self.spec.links for e in lk.endpoints)
        interfaces = [f"eth{n}" for n in range(count)]
        for key, _ in host.sysctls.items():
            match = re.match(PER_INTERFACE_SYSCTL, key)
            if match and match.group(2) not in ("all", "default", "lo", *interfaces):
                self.out.add(("hosts", host_name, "sysctls", key),
                             f"host '{host_name}' has no interface '{match.group(2)}' (its interfaces: "
                             f"{', '.join(['lo', *interfaces])})")

    def _gateway6(self, host: HostSpec) -> IPv6Addr | None:
        for net_name in host.networks:
            net = self.networks.get(net_name)
            if net is not None and net.gateway6 is not None and not net.internal:
                return net.gateway6.ip
        return None

    def _routes(self, host_name: str, host: HostSpec, interfaces: list[Interface]) -> tuple[Route, ...]:
        """The host's static routes (and a written default gateway, last), each via an address on one of its
        own subnets (networks and links), as the kernel requires."""
        wanted: list[tuple[tuple[Any, ...], IPv4Net | IPv6Net, IPv4Addr | IPv6Addr]] = [
            (("hosts", host_name, "routes", i), r.to, r.via) for i, r in enumerate(host.routes)
        ]
        if isinstance(host.default, IPv4Addr):
            wanted.append((("hosts", host_name, "default"), IPv4Net("0.0.0.0/0"), host.default))
        elif isinstance(host.default, IPv6Addr):
            wanted.append((("hosts", host_name, "default"), IPv6Net("::/0"), host.default))
        return tuple(Route(to, via) for loc, to, via in wanted if self._gateway_ok(loc, via, interfaces))

    def _gateway_ok(self, loc: tuple[Any, ...], via: IPv4Addr | IPv6Addr, interfaces: list[Interface]) -> bool:
        """``via`` is on one of the host's own subnets and is not its own address; else a problem at ``loc``."""
        mine = [a for i in interfaces for a in (i.address, i.address6) if a is not None and a.version == via.version]
        on = [a for a in mine if via in a.network]
        if not on:
            subnets = ", ".join(str(a.network) for a in mine) or "none"
            self.out.add(loc, f"gateway {via} is on none of the host's subnets ({subnets})")
        elif any(via == a.ip for a in on):
            self.out.add(loc, f"gateway {via} is the host's own address")
        return bool(on) and not any(via == a.ip for a in on)

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
            mtu = written.mtu or host.mtu or self.spec.networks[net_name].mtu
            interfaces.append(
                Interface(
                    name=ifname,
                    address=ipaddress.IPv4Interface(f"{ip}/{net.subnet.prefixlen}"),
                    network=net_name,
                    host_veth=host_veth_name(self.lab, host_name, ifname),
                    mtu=self.spanning_mtu(mtu) if net.spans() else mtu,
                    # across machines every MAC is known to every machine (remote hosts' forwarding entries)
                    mac=written.mac or (mac_address(self.lab, "host", host_name, ifname) if self.across else None),
                    address6=self._address6(host_name, net_name),
                )
            )
            if gateway is None and not net.internal:
                gateway = net.gateway.ip
        return interfaces, gateway

    def spanning_mtu(self, written: int | None) -> int | None:
        """The MTU of an interface of a network or link across machines: the overlay's, or a smaller one written."""
        if self.overlay_mtu is None:
            return written
        return min(written, self.overlay_mtu) if written else self.overlay_mtu

    def _address6(self, host_name: str, net_name: str) -> ipaddress.IPv6Interface | None:
        ip = self.addresses6.get((host_name, net_name))
        subnet = self.networks[net_name].subnet6
        return ipaddress.IPv6Interface(f"{ip}/{subnet.prefixlen}") if ip is not None and subnet else None


def resolve_all(
    spec: LabSpec,
    source: SourceMap | None = None,
    file: str = "",
    occupied: Iterable[Occupied] = (),
    previous: Mapping[str, Any] | None = None,
    ula: IPv6Net = FALLBACK_ULA,
) -> tuple[Lab, list[Problem]]:
    """Resolve as far as it goes: the lab made of what resolved, and every problem found on the way (the
    later checks, features' and the machine's, run on that lab too, so one run reports them all).
    ``ula``: the /48 automatic IPv6 subnets come from (the machine's, see nslab.core.ula)."""
    out = _Collector(source or SourceMap(), file)
    resolution = _Resolution(spec, out, occupied, previous or {}, ula)
    resolution.check_names()
    resolution.check_macs()
    resolution.resolve_networks()
    resolution.resolve_networks6()
    resolution.assign_addresses()
    resolution.assign_addresses6()
    resolution.resolve_links()
    hosts = resolution.build_hosts()
    expect, tests = labtests.resolve(spec, out.add)
    lab = Lab(
        name=spec.name,
        source=file,
        networks=resolution.networks,
        hosts=hosts,
        links=tuple(resolution.links),
        partitions=partitions.resolve(spec),
        expect=expect,
        tests=tests,
        machines=resolution.machines,
        overlay_port=spec.overlay.port,
        overlay_mtu=resolution.overlay_mtu,
        underlay_mtu=spec.overlay.underlay_mtu if spec.machines else None,
    )
    if lab.machines:
        lab = replace(lab, digest=overlay.digest(lab))
    return lab, out.problems


def resolve(
    spec: LabSpec,
    source: SourceMap | None = None,
    file: str = "",
    occupied: Iterable[Occupied] = (),
    previous: Mapping[str, Any] | None = None,
    ula: IPv6Net = FALLBACK_ULA,
) -> Lab:
    """Resolve ``spec`` against what the machine already uses; raise ResolveError with every problem.

    ``previous`` is :meth:`Lab.allocations` of the lab as it is up now, so that an edit keeps the subnets
    and addresses that are still valid (a converging ``up`` then leaves those hosts alone).
    """
    lab, problems = resolve_all(spec, source, file, occupied, previous, ula)
    if problems:
        raise ResolveError(problems)
    return lab
