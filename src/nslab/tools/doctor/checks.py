"""The checks of ``nslab doctor``: pure functions from observations to findings.

Each check reads one :class:`~nslab.tools.doctor.observe.NsView` (what a namespace looks like) or the
:class:`~nslab.tools.doctor.observe.MachineView` (the machine and its labs) and returns zero or more
:class:`Finding`: the problem in one line, why it breaks traffic, and the commands that fix it. Nothing here
touches the kernel, so every check is unit-tested over hand-made observations (tests/unit/test_doctor.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .observe import LabView, MachineView, NsView

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


@dataclass(frozen=True)
class Finding:
    check: str  # a short stable id: "lo-down", "no-default-route", ...
    where: str  # what it is about: "demo/web1", "netns blue", "machine", "lab demo"
    problem: str
    why: str
    fix: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "where": self.where, "problem": self.problem, "why": self.why,
                "fix": list(self.fix)}


# ------------------------------------------------------------------------------------------------
# Inside one namespace
# ------------------------------------------------------------------------------------------------


def lo_down(ns: NsView) -> list[Finding]:
    lo = next((lk for lk in ns.links if lk.name == "lo"), None)
    if lo is None or lo.up:
        return []
    return [Finding("lo-down", ns.label, "the loopback interface lo is down",
                    "127.0.0.1 and ::1 are unreachable: local services, stub resolvers and many tools fail",
                    (ns.ip("link set lo up"),))]


def interfaces_down(ns: NsView) -> list[Finding]:
    out = []
    for lk in ns.links:
        if lk.name == "lo":
            continue
        if not lk.up:
            out.append(Finding("link-down", ns.label, f"interface {lk.name} is down",
                               f"nothing is sent or received on {lk.name}", (ns.ip(f"link set {lk.name} up"),)))
        elif not lk.carrier:
            out.append(Finding("no-carrier", ns.label, f"interface {lk.name} is up but has no carrier",
                               f"the other end of {lk.name} (a veth peer or the bridge port) is down or gone",
                               ns.peer_fix(lk)))
    return out


def route_for(ns: NsView, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Any:
    matches = [r for r in (ns.routes6 if address.version == 6 else ns.routes) if address in r.destination]
    return max(matches, key=lambda r: r.destination.prefixlen) if matches else None


def _gateway_guess(ns: NsView) -> str:
    for lk in ns.links:
        for a in lk.addresses:
            if a.version == 4 and lk.name != "lo" and a.network.prefixlen < 31:
                gateway = next(h for h in a.network.hosts() if h != a.ip)
                return f"default via {gateway} dev {lk.name}"
    return "default via GATEWAY dev IF"


def _default_fix(ns: NsView) -> str | None:
    """The default route to add: the one the lab's model uses for a lab host (None: it has none on purpose,
    e.g. only internal networks), a guess from the first subnet elsewhere."""
    if not ns.planned:
        return _gateway_guess(ns)
    return None if ns.default_via is None else f"default via {ns.default_via[0]} dev {ns.default_via[1]}"


def routes(ns: NsView) -> list[Finding]:
    out = []
    fix = _default_fix(ns)
    if fix is not None and not any(r.destination.prefixlen == 0 for r in ns.routes):
        out.append(Finding("no-default-route", ns.label, "no default route",
                           "only directly connected subnets are reachable; anything else fails with "
                           "'Network is unreachable'", (ns.ip(f"route add {fix}"),)))
    if ns.to is not None and route_for(ns, ns.to) is None:
        out.append(Finding("no-route-to", ns.label, f"no route to {ns.to}",
                           f"packets to {ns.to} fail with 'Network is unreachable'",
                           (ns.ip(f"route add {ns.to} via GATEWAY"),)))
    return out


def gateway_arp(ns: NsView) -> list[Finding]:
    return [
        Finding("gateway-no-arp", ns.label, f"the gateway {gw} (on {dev}) does not answer ARP",
                f"every packet routed via {gw} is dropped: nothing on {dev}'s segment owns that address "
                "(wrong gateway, or the bridge/router end is down or has no address)",
                (ns.ip(f"neigh show dev {dev}"), ns.ip(f"route replace default via CORRECT_GATEWAY dev {dev}")))
        for gw, (dev, answered) in sorted(ns.gateway_arp.items()) if not answered
    ]


def forwarding(ns: NsView) -> list[Finding]:
    if not ns.forwards or ns.ip_forward == "1":
        return []
    what = "its lab file's sysctls set it to 1" if ns.planned else "this namespace routes between its networks"
    return [Finding("ip-forward-off", ns.label, f"net.ipv4.ip_forward is 0 but {what}",
                    "packets between its interfaces are dropped instead of forwarded",
                    (ns.sysctl("net.ipv4.ip_forward=1"),))]


def _effective_rp(ns: NsView, name: str) -> int:
    return max(ns.rp_filter.get("all", 0), ns.rp_filter.get(name, 0))


def rp_filter(ns: NsView) -> list[Finding]:
    """Strict reverse-path filtering matters where a namespace has several routed interfaces: a reply
    arriving on another interface than the route back to its source is dropped silently."""
    routed = [lk for lk in ns.links if lk.name != "lo" and lk.up and any(a.version == 4 for a in lk.addresses)]
    if len(routed) < 2:
        return []
    strict = [lk.name for lk in routed if _effective_rp(ns, lk.name) == 1]
    if not strict:
        return []
    fixes = [ns.sysctl(f"net.ipv4.conf.{name}.rp_filter=2") for name in strict]
    if ns.rp_filter.get("all", 0) == 1:
        fixes.insert(0, ns.sysctl("net.ipv4.conf.all.rp_filter=2"))
    return [Finding("rp-filter-strict", ns.label, f"strict rp_filter on {', '.join(strict)} with "
                    f"{len(routed)} routed interfaces",
                    "asymmetric traffic (in on one interface, the route back via another) is dropped without "
                    "a trace; loose mode (2) keeps the anti-spoofing check", tuple(fixes))]


def resolver(ns: NsView) -> list[Finding]:
    out = []
    for server in ns.nameservers:
        try:
            address = ipaddress.ip_address(server)
        except ValueError:
            continue
        if address.version == 4 and address in LOOPBACK and not ns.udp53 & {server, "0.0.0.0"}:
            out.append(_missing_stub(ns, server))
        elif server in ns.dns_answers and ns.dns_answers[server] != "ok":
            out.append(Finding("nameserver-silent", ns.label,
                               f"nameserver {server} (from {ns.resolv_path}) does not answer: "
                               f"{ns.dns_answers[server]}",
                               "every name lookup waits for the timeout and then fails",
                               (f"{ns.exec_prefix()}dig @{server} example.com",
                                f"# name a reachable resolver in {ns.etc_resolv_hint()}")))
    return out


def _missing_stub(ns: NsView, server: str) -> Finding:
    where = ns.etc_resolv_hint()
    fix = [f"mkdir -p {where.rsplit('/', 1)[0]}", f"echo 'nameserver REACHABLE_RESOLVER' > {where}"]
    if ns.lab:
        fix = [f"# or give the lab a resolver: dns: in {ns.lab}'s lab file, then nslab up"] + fix
    return Finding("stub-resolver-missing", ns.label,
                   f"{ns.resolv_path} names {server}, a loopback stub resolver that does not exist in this "
                   "namespace", f"nothing listens on {server}:53 here (the machine's stub, e.g. systemd-resolved, "
                   f"lives in another network namespace), so every lookup fails. nslab writes {where} for lab "
                   "hosts (ip netns exec and nslab exec bind it over /etc/resolv.conf) naming a resolver "
                   "reachable from the namespace", tuple(fix))


NS_CHECKS: tuple[Callable[[NsView], list[Finding]], ...] = (
    lo_down, interfaces_down, routes, gateway_arp, forwarding, rp_filter, resolver,
)


def check_namespace(ns: NsView) -> list[Finding]:
    return [finding for check in NS_CHECKS for finding in check(ns)]


# ------------------------------------------------------------------------------------------------
# The machine and its labs
# ------------------------------------------------------------------------------------------------


def machine_forwarding(m: MachineView) -> list[Finding]:
    nat = [lab.name for lab in m.labs if lab.nat_networks]
    if not nat or m.ip_forward == "1":
        return []
    return [Finding("ip-forward-off", "machine", "net.ipv4.ip_forward is 0 on the machine",
                    f"lab {', '.join(nat)} has NAT networks whose traffic the machine must forward: their hosts "
                    "reach nothing outside", ("sysctl -w net.ipv4.ip_forward=1",))]


def forward_drop(m: MachineView) -> list[Finding]:
    if not m.foreign_drops or not any(lab.nat_networks or lab.published for lab in m.labs):
        return []
    if m.docker_user:
        return []  # nslab accepts its traffic in Docker's DOCKER-USER chain (features/firewall)
    out = []
    for family, table, chain in m.foreign_drops:
        fix = [f"nft insert rule {family} {table} {chain} iifname \"{br}\" accept" for br in m.lab_bridges()]
        fix += [f"nft insert rule {family} {table} {chain} oifname \"{br}\" accept" for br in m.lab_bridges()]
        out.append(Finding("forward-drop", "machine", f"table {family} {table} chain {chain} drops forwarded "
                           "packets by policy (Docker, ufw, firewalld or by hand)",
                           "in nftables a packet is dropped if any forward-hook chain drops it: nslab's own "
                           "accept does not override another table, so lab egress and published ports fail",
                           tuple(fix)))
    return out


def masquerade(m: MachineView) -> list[Finding]:
    out = []
    for lab in m.labs:
        for name, subnet, bridge in lab.nat_networks:
            if any(f"ip saddr {subnet}" in line and "masquerade" in line for line in m.ruleset_lines):
                continue
            out.append(Finding("no-masquerade", f"lab {lab.name}", f"network {name} ({subnet}) is a NAT network "
                               "but no rule masquerades its traffic", "its hosts' packets leave with private "
                               "source addresses the outside cannot answer",
                               (f"nslab up {lab.source or lab.name}",
                                f"# or by hand: nft add rule inet nslab postrouting ip saddr {subnet} oifname != "
                                f"{bridge} masquerade")))
    return out


def overlaps(m: MachineView) -> list[Finding]:
    out = []
    for lab in m.labs:
        for name, subnet, _bridge in lab.all_networks:
            for network, who in m.foreign_networks:
                if subnet.version == network.version and subnet.overlaps(network):
                    out.append(Finding("subnet-overlap", f"lab {lab.name}",
                                       f"network {name} ({subnet}) overlaps {network} ({who})",
                                       "addresses in the overlap are ambiguous: traffic meant for one side goes "
                                       "to the other (a VPN, Docker or another network claims the same range)",
                                       (f"# give {name} another subnet in the lab file, then: nslab up "
                                        f"{lab.source or lab.name}",)))
    return out


def mtu(m: MachineView) -> list[Finding]:
    """MTUs that differ on one network: for a lab, those that differ from what its file asks for (set there
    on purpose, they are no finding), fixed back to that; elsewhere all down to the smallest."""
    out = []
    for lab in m.labs:
        for network, sizes in sorted(lab.mtus.items()):
            values = set(sizes.values())
            want = {where: lab.mtu_planned.get(where, min(values)) for where in sizes}
            if len(values) < 2 or all(sizes[w] == want[w] for w in sizes):
                continue
            listing = ", ".join(f"{where} {size}" for where, size in sorted(sizes.items()))
            fix = tuple(lab.mtu_fix(where, want[where]) for where, size in sorted(sizes.items())
                        if size != want[where])
            out.append(Finding("mtu-mismatch", f"lab {lab.name}", f"MTUs differ on network {network}: {listing}",
                               "large packets (TLS handshakes, file transfers) are dropped where the MTU is "
                               "smaller while small ones pass: connections hang after connecting", fix))
    return out


def leftovers(m: MachineView) -> list[Finding]:
    if not m.leftovers:
        return []
    return [Finding("leftovers", "machine", f"leftover nslab objects: {'; '.join(m.leftovers)}",
                    "namespaces, links or state of labs and runs that are gone hold addresses and names",
                    ("nslab gc",))]


MACHINE_CHECKS: tuple[Callable[[MachineView], list[Finding]], ...] = (
    machine_forwarding, forward_drop, masquerade, overlaps, mtu, leftovers,
)


def check_machine(m: MachineView) -> list[Finding]:
    return [finding for check in MACHINE_CHECKS for finding in check(m)]


__all__ = ["Finding", "LabView", "check_machine", "check_namespace"]
