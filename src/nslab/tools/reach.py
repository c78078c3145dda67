"""The reachability model: where a packet from one lab host goes, hop by hop, and whether its reply comes back.

Pure logic over the resolved lab (model.py) and the faults in force (:class:`Faults`: interfaces put down with
``nslab link``, partitions, impairments that drop everything), for IPv4 and IPv6. ``nslab check`` takes its
expected verdicts from here, ``check --explain`` prints the hops, ``doctor`` its fixes.

What it knows, as the kernel does it:

- every host routes by longest prefix: its connected subnets (interfaces that are up), its ``routes:``, its
  default route (``Host.gateway``/``gateway6``, or a written ``default:``, one of its routes);
- a host forwards a packet that is not for it only when its ``sysctls:`` turn forwarding on
  (``net.ipv4.ip_forward`` or ``net.ipv4.conf.all.forwarding``; ``net.ipv6.conf.all.forwarding``), else drops it;
- a next hop must own its address on the segment (a network's bridge or a link) with an interface that is up;
- the machine is on every network's bridge (its gateway) and forwards between them and to the outside
  (its uplink) under nslab's rules (features/firewall): a new connection into a bridge from anywhere else
  is dropped (isolation), nothing new leaves an internal network's bridge, and only a NAT network's own
  subnet is masqueraded on the way out (anything else leaves with an address the outside cannot answer);
  replies of a connection that got through pass (conntrack);
- a lab across machines (core/overlay.py): each network's gateway is on its home machine; the machine the
  model runs for is :data:`MACHINE` (with the uplink), another home is its own node (``machine NAME``) routing
  only between the networks homed there, with no way out this machine knows of;
- a partition drops, inside each host of its sides, packets from (prerouting) and to (postrouting) the other
  side's addresses; a 100 % loss drops what an interface sends (``out``) or receives (``in``).

A verdict holds both legs: "there" (source to destination) and "back" (the reply to the source address the
first route chose); reachable means both arrive. The reply's forwarding hops give the TTL a ping shows.
The model cannot know whether something listens on a port: a port only names the cell.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model import Host, Lab

#: The machine's node name in hops (it holds every bridge's gateway).
MACHINE = "machine"
#: Beyond the machine's uplink (its default route).
OUTSIDE = "outside"
UPLINK = "uplink"
MAX_HOPS = 32
TTL = 64

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Iface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

FORWARDING = {4: ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding"), 6: ("net.ipv6.conf.all.forwarding",)}


@dataclass(frozen=True)
class Faults:
    """What cuts traffic on purpose while the lab is up."""

    down: frozenset[tuple[str, str]] = frozenset()  # (host, interface) down, both ends
    cuts: tuple[tuple[str, str], ...] = ()  # partitions: host or network names
    drops: frozenset[tuple[str, str, str]] = frozenset()  # (host, interface, "in"|"out"): 100 % loss


def faults_from(lab: Lab, records: Mapping[str, Any]) -> Faults:
    """The faults recorded in the lab's state (feature KEY -> record)."""
    from ..core.features import hoststate, impair, links, partitions

    # (a one-way cut stops round trips both ways too: the requests one way, the replies the other)
    cuts = tuple((str(c[0]), str(c[1])) for c in partitions.PartitionsRecord.from_json(records.get(partitions.KEY)).cuts
                 if not partitions.problems_of(lab, str(c[0]), str(c[1])))
    drops = set()
    for host, iface, entry in impair.ImpairRecord.from_json(records.get(impair.KEY)).entries():
        drops |= {(host, iface, d) for d in ("in", "out") if float(entry[d].get("loss") or 0) >= 100}
    down = links.down_interfaces(lab, records.get(links.KEY)) | hoststate.meant_down(lab, records.get(hoststate.KEY))
    return Faults(frozenset(down), cuts, frozenset(drops))


@dataclass(frozen=True)
class Hop:
    node: str  # a host, MACHINE or OUTSIDE
    inbound: str | None = None  # the interface it arrived on (None: where the packet starts)
    outbound: str | None = None  # the interface it left by (None: where it ends)
    note: str = ""  # "forwards", "masquerades", ...

    def text(self) -> str:
        parts = [f"[{self.inbound}]" if self.inbound else "", self.node, f"[{self.outbound}]" if self.outbound else ""]
        return "".join(parts) + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Leg:
    hops: tuple[Hop, ...]
    ok: bool
    why: str = ""  # where and why it stops

    def forwarders(self) -> int:
        return sum(1 for h in self.hops if h.inbound is not None and h.outbound is not None)

    def text(self) -> str:
        return " -> ".join(h.text() for h in self.hops) + ("" if self.ok else f"  STOPS: {self.why}")


@dataclass(frozen=True)
class Verdict:
    source: str
    target: str  # a host, OUTSIDE or an address
    address: str | None  # the destination address (None: nothing to reach it at)
    there: Leg
    back: Leg | None = None  # None when the packet never arrived
    source_address: str | None = None

    @property
    def reachable(self) -> bool:
        return self.there.ok and self.back is not None and self.back.ok

    @property
    def ttl(self) -> int | None:
        """The TTL (hop limit) of the reply as the source sees it, from 64."""
        return TTL - self.back.forwarders() if self.reachable and self.back is not None else None

    @property
    def why(self) -> str:
        if not self.there.ok:
            return self.there.why
        return self.back.why if self.back is not None else ""

    def lines(self) -> list[str]:
        head = f"{self.source} -> {self.target}"
        if self.address is None:
            return [f"{head}: blocked ({self.there.why})"]
        state = f"reachable, ttl {self.ttl}" if self.reachable else f"blocked: {self.why}"
        out = [f"{head} ({self.address}, from {self.source_address or '?'}): {state}",
               f"  there: {self.there.text()}"]
        if self.back is not None:
            out.append(f"  back:  {self.back.text()}")
        return out

    def path(self) -> str:
        """One line: the hops the model expects, both legs."""
        text = self.there.text()
        return text + (f" | back: {self.back.text()}" if self.back is not None else "")


@dataclass(frozen=True)
class _Port:
    node: str
    ifname: str
    address: Iface


@dataclass
class _Table:
    routes: list[tuple[Net, str, Address | None]] = field(default_factory=list)  # (to, dev, via)
    local: list[Net] = field(default_factory=list)


class Topology:
    """One family's view of a lab: every node's routes, every segment's interfaces that are up."""

    def __init__(self, lab: Lab, faults: Faults = Faults(), family: int = 4) -> None:
        self.lab, self.faults, self.family = lab, faults, family
        self.tables: dict[str, _Table] = {}
        self.segment_of: dict[tuple[str, str], str] = {}  # (node, ifname) -> segment
        self.members: dict[tuple[str, Address], list[_Port]] = {}  # (segment, address) -> who has it, up
        self.holder: dict[Address, str] = {}  # every address of the lab -> its node
        self.internal: set[str] = set()  # bridges of internal networks
        self.masqueraded: list[Net] = []
        self.routed_back: list[Net] = []  # IPv6 subnets of `nat6: false` networks: the upstream routes them
        self.sides: dict[str, list[Net]] = {}  # host -> addresses whose packets its partition table drops
        for host in lab.hosts.values():
            self._host(host)
        self._machine()
        self._partitions()

    # --- building ---------------------------------------------------------------------------------------
    def _address(self, iface: Any) -> Iface | None:
        address: Iface | None = iface.address if self.family == 4 else iface.address6
        return address

    def _host(self, host: Host) -> None:
        table = _Table(local=[ipaddress.ip_network("127.0.0.0/8" if self.family == 4 else "::1/128")])
        for iface in host.interfaces:
            address = self._address(iface)
            segment = f"network {iface.network}" if iface.network else f"link {iface.link}"
            self.segment_of[(host.name, iface.name)] = segment
            if address is None:
                continue
            table.local.append(ipaddress.ip_network(address.ip))
            self.holder.setdefault(address.ip, host.name)
            if (host.name, iface.name) in self.faults.down:
                continue
            table.routes.append((address.network, iface.name, None))
            self.members.setdefault((segment, address.ip), []).append(_Port(host.name, iface.name, address))
        gateway = host.gateway if self.family == 4 else host.gateway6
        wanted = [(r.to, r.via) for r in host.routes if r.to.version == self.family]
        if gateway is not None:
            wanted.append((ipaddress.ip_network("0.0.0.0/0" if self.family == 4 else "::/0"), gateway))
        connected = list(table.routes)
        for to, via in wanted:
            dev = next((d for net, d, _ in connected if via in net), None)
            if dev is not None:
                table.routes.append((to, dev, via))
        self.tables[host.name] = table

    def machine_node(self, home: str | None) -> str:
        """The node routing a network homed on ``home``: :data:`MACHINE` (the machine this runs on, with the
        uplink), or across machines another home's ``machine NAME`` (it routes between its own networks only,
        and its way out is not this machine's outside)."""
        return MACHINE if home is None or home == self.lab.machine else f"{MACHINE} {home}"

    def is_machine(self, node: str) -> bool:
        return node == MACHINE or node.startswith(MACHINE + " ")

    def _machine(self) -> None:
        table = _Table()
        for n in self.lab.networks.values():
            address: Iface | None = n.gateway if self.family == 4 else n.gateway6
            subnet: Net | None = n.subnet if self.family == 4 else n.subnet6
            if address is None or subnet is None:
                continue
            node = self.machine_node(n.home)
            own = table if node == MACHINE else self.tables.setdefault(node, _Table())
            segment = f"network {n.name}"
            self.segment_of[(node, n.bridge)] = segment
            self.members.setdefault((segment, address.ip), []).append(_Port(node, n.bridge, address))
            own.local.append(ipaddress.ip_network(address.ip))
            self.holder.setdefault(address.ip, node)
            own.routes.append((subnet, n.bridge, None))
            if n.internal:
                self.internal.add(n.bridge)
            elif self.family == 4 or n.nat6:
                self.masqueraded.append(subnet)
            else:
                self.routed_back.append(subnet)
        table.routes.append((ipaddress.ip_network("0.0.0.0/0" if self.family == 4 else "::/0"), UPLINK, None))
        self.tables[MACHINE] = table

    def _side(self, name: str) -> tuple[list[str], list[Net]]:
        from ..core.features.partitions import side, side6

        hosts, addresses = side(self.lab, name)
        if self.family == 6:
            addresses = side6(self.lab, name)
        return hosts, [ipaddress.ip_network(a, strict=False) for a in addresses]

    def _partitions(self) -> None:
        for a, b in self.faults.cuts:
            (a_hosts, a_nets), (b_hosts, b_nets) = self._side(a), self._side(b)
            for hosts, nets in ((a_hosts, b_nets), (b_hosts, a_nets)):
                for host in hosts:
                    self.sides.setdefault(host, []).extend(nets)

    # --- questions ----------------------------------------------------------------------------------------
    def forwards(self, node: str) -> bool:
        if node == OUTSIDE or self.is_machine(node):
            return True
        keys = FORWARDING[self.family]
        return any(k.replace("/", ".") in keys and v.strip() == "1" for k, v in self.lab.hosts[node].sysctls)

    def is_local(self, node: str, address: Address) -> bool:
        if node == OUTSIDE:
            return address not in self.holder and not address.is_loopback
        return self.holder.get(address) == node or address.is_loopback or \
            any(address in net for net in self.tables[node].local)

    def lookup(self, node: str, address: Address) -> tuple[str, Address | None] | None:
        matches = [(net, dev, via) for net, dev, via in self.tables[node].routes if address in net]
        if not matches:
            return None
        best = max(matches, key=lambda m: m[0].prefixlen)
        return best[1], best[2]

    def owner(self, segment: str, address: Address, sender: tuple[str, str]) -> _Port | None:
        return next((p for p in self.members.get((segment, address), []) if (p.node, p.ifname) != sender), None)

    def cut(self, node: str, address: Address) -> bool:
        return any(address in net for net in self.sides.get(node, []))

    def source_address(self, node: str, dev: str) -> Address | None:
        """The address a host's packet leaves with: its address on the outgoing interface."""
        if self.is_machine(node):
            return None
        iface = next(i for i in self.lab.hosts[node].interfaces if i.name == dev)
        address = self._address(iface)
        return address.ip if address is not None else None

    def addresses(self, host: str) -> list[tuple[str, Address]]:
        """(interface, address) of a host in this family, in interface order."""
        out = []
        for i in self.lab.hosts[host].interfaces:
            address = self._address(i)
            if address is not None:
                out.append((i.name, address.ip))
        return out


# --- walking ------------------------------------------------------------------------------------------------
@dataclass
class _Walk:
    topo: Topology
    src: Address
    dst: Address
    reply: bool
    hops: list[Hop] = field(default_factory=list)
    masqueraded: bool = False

    def stop(self, node: str, inbound: str | None, why: str) -> Leg:
        self.hops.append(Hop(node, inbound, None))
        return Leg(tuple(self.hops), False, why)

    def run(self, node: str, inbound: str | None = None) -> Leg:
        for _ in range(MAX_HOPS):
            if self.topo.is_local(node, self.dst):
                self.hops.append(Hop(node, inbound, None))
                return Leg(tuple(self.hops), True)
            if node == OUTSIDE:
                return self.stop(node, inbound, f"{self.dst} is not on the outside")
            blocked = self._leave_check(node, inbound)
            if blocked:
                return self.stop(node, inbound, blocked)
            route = self.topo.lookup(node, self.dst)
            if route is None:
                return self.stop(node, inbound, f"{node} has no route to {self.dst}")
            dev, via = route
            step = self._step(node, inbound, dev, via)
            if isinstance(step, Leg):
                return step
            node, inbound = step
        return self.stop(node, inbound, f"more than {MAX_HOPS} hops (a routing loop)")

    def _leave_check(self, node: str, inbound: str | None) -> str:
        if inbound is None or node == OUTSIDE or self.topo.forwards(node):
            return ""
        key = FORWARDING[self.topo.family][0]
        return f"{node} does not forward (its sysctls do not set {key}: 1)"

    def _step(self, node: str, inbound: str | None, dev: str, via: Address | None) -> tuple[str, str] | Leg:
        topo = self.topo
        note = ""
        if topo.is_machine(node):
            blocked, note = self._machine(inbound, dev)
            if blocked:
                return self.stop(node, inbound, blocked)
        else:
            if (node, dev, "out") in topo.faults.drops:
                return self.stop(node, inbound, f"{node}:{dev} drops everything it sends (100 % loss)")
            if topo.cut(node, self.dst):
                return self.stop(node, inbound, f"a partition on {node} drops packets to {self.dst}")
            note = "forwards" if inbound is not None else ""
        self.hops.append(Hop(node, inbound, dev, note))
        if dev == UPLINK:
            return self._outside()
        nexthop = via or self.dst
        segment = topo.segment_of[(node, dev)]
        peer = topo.owner(segment, nexthop, (node, dev))
        if peer is None:
            return self.stop(segment, None, f"nothing on {segment} has {nexthop}")
        if (peer.node, peer.ifname, "in") in topo.faults.drops:
            return self.stop(peer.node, peer.ifname, f"{peer.node}:{peer.ifname} drops everything it receives "
                             "(100 % loss)")
        if topo.cut(peer.node, self.src):
            return self.stop(peer.node, peer.ifname, f"a partition on {peer.node} drops packets from {self.src}")
        return peer.node, peer.ifname

    def _machine(self, inbound: str | None, dev: str) -> tuple[str, str]:
        """(why the machine drops it or "", a note) under nslab's forward rules."""
        topo = self.topo
        if self.reply or inbound == dev:
            return "", "forwards"
        if inbound in topo.internal:
            return f"the machine drops it: {_network(topo, inbound)} is internal (nothing new leaves it)", ""
        if dev in topo.internal or dev != UPLINK:
            return f"the machine drops it: isolation (a new connection into {_network(topo, dev)} from " \
                   "elsewhere)", ""
        if any(self.src in net for net in topo.masqueraded):
            self.masqueraded = True
            return "", "masquerades"
        return "", "forwards"

    def _outside(self) -> tuple[str, str] | Leg:
        if self.reply:
            return self.stop(OUTSIDE, UPLINK, f"{self.dst} is not on the outside")
        return OUTSIDE, UPLINK


def _network(topo: Topology, bridge: str | None) -> str:
    return next((f"network {n.name}" for n in topo.lab.networks.values() if n.bridge == bridge), str(bridge))


def walk(topo: Topology, start: str, src: Address, dst: Address, reply: bool = False) -> tuple[Leg, bool]:
    """One leg from ``start`` (a host, MACHINE or OUTSIDE) with source ``src`` to ``dst``; also whether the
    machine masqueraded it."""
    w = _Walk(topo, src, dst, reply)
    if start == OUTSIDE:
        w.hops.append(Hop(OUTSIDE, None, UPLINK))
        leg = w.run(MACHINE, UPLINK)
    else:
        leg = w.run(start)
    return leg, w.masqueraded


def _back_from_outside(topo: Topology, src: Address, dst: Address, masqueraded: bool) -> Leg:
    if masqueraded or any(dst in net for net in topo.routed_back):
        return walk(topo, OUTSIDE, src, dst, reply=True)[0]
    return Leg((Hop(OUTSIDE),), False, f"the outside has no route back to {dst} (only a NAT network's own subnet "
                                       "is masqueraded)")


def verdict(topo: Topology, source: str, target: str, address: Address | None) -> Verdict:
    """Whether ``source`` (a host) reaches ``address`` (of ``target``: a host, OUTSIDE or the address) and the
    reply comes back, with both legs' hops."""
    if address is None:
        return Verdict(source, target, None, Leg((Hop(source),), False, f"{target} has no IPv{topo.family} address"))
    src = _source_address(topo, source, address)
    if src is None:
        leg = Leg((Hop(source),), False, f"{source} has no route to {address}")
        return Verdict(source, target, str(address), leg)
    there, masqueraded = walk(topo, source, src, address)
    if not there.ok:
        return Verdict(source, target, str(address), there, None, str(src))
    end = there.hops[-1].node
    if end == OUTSIDE:
        back = _back_from_outside(topo, address, src, masqueraded)
    else:
        back = walk(topo, end, address, src, reply=True)[0]
    return Verdict(source, target, str(address), there, back, str(src))


def _source_address(topo: Topology, source: str, address: Address) -> Address | None:
    if topo.is_local(source, address):
        return address
    route = topo.lookup(source, address)
    return None if route is None else topo.source_address(source, route[0])


def target_address(topo: Topology, source: str, target: str) -> Address | None:
    """Where ``source`` probes host ``target``: itself at the loopback; another host at its address on a
    segment they share (a network, then a link), else at its first address the model says is reachable,
    else its first address."""
    if source == target:
        return ipaddress.ip_address("127.0.0.1" if topo.family == 4 else "::1")
    mine = {topo.segment_of[(source, i)] for i, _a in topo.addresses(source)}
    theirs = topo.addresses(target)
    shared = [a for i, a in theirs if topo.segment_of[(target, i)] in mine]
    if shared:
        return shared[0]
    for _i, a in theirs:
        if verdict(topo, source, target, a).reachable:
            return a
    return theirs[0][1] if theirs else None


def matrix(lab: Lab, faults: Faults, rows: Iterable[str], columns: Iterable[str], family: int = 4,
           outside: Address | None = None) -> dict[tuple[str, str], Verdict]:
    """Every (row, column) verdict; the column OUTSIDE is probed at ``outside``."""
    topo = Topology(lab, faults, family)
    out = {}
    for src in rows:
        for dst in columns:
            address = outside if dst == OUTSIDE else target_address(topo, src, dst)
            out[(src, dst)] = verdict(topo, src, dst, address)
    return out
