"""The nft text of nslab's table, and what the machine's ruleset already holds (pure; golden-tested).

Rule shapes (what Docker, CNI and netavark converge on)::

    prerouting  nat dstnat    ip daddr != 127/8 fib daddr type local jump lab.L.publish
    output      nat dstnat    fib daddr type local jump lab.L.publish     (the machine, 127.0.0.1 too)
    lab.L.publish             [ip daddr HOST_IP] tcp dport 6000 dnat ip to HOSTADDR:8080
    prerouting, output        ip6 daddr != ::1 fib daddr type local jump lab.L.publish6   (dual stack)
    lab.L.publish6            [ip6 daddr HOST_IP] tcp dport 6000 dnat ip6 to [HOSTADDR6]:8080
    postrouting nat srcnat    jump lab.L.snat
    lab.L.snat                oifname BR ip saddr 127/8 masquerade        (localhost publish)
                              oifname BR ip saddr NET ct status dnat masquerade   (hairpin)
                              oifname BR ct status dnat masquerade   (internal: its hosts have no route out)
                              ip saddr NET oifname != BR masquerade       (egress; NAT networks only)
                              ip6 saddr NET6 ... (the same for a dual-stack network's IPv6 subnet: NAT66)
    forward     filter -10    jump lab.L.forward
    lab.L.forward             oifname BR iifname != BR jump lab.L.into.N  (established / DNAT, else drop)
                              iifname BR oifname != BR jump lab.L.out.N   (internal: established, else drop)
    guard       filter raw    iifname BR ip daddr 127/8 drop   (route_localnet is on for BR: no loopback
                                                                  access from the lab to the machine)
    input       filter -10    udp dport PORT ip saddr != { MACHINES } drop   (a lab across machines: its VXLAN
                              port only from the other machines, of every lab sharing that port)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ....values import Value, field
from ... import publish
from .record import FirewallRecord, FwNetwork, PublishedPort

TABLE = "nslab"
FAMILY = "inet"
LOOPBACK = "127.0.0.0/8"
LOOPBACK6 = "::1"
DOCKER_USER = ("ip", "filter", "DOCKER-USER")
DOCKER_USER6 = ("ip6", "filter", "DOCKER-USER")  # Docker with ip6tables (its default since 27)

Records = Mapping[str, FirewallRecord]  # lab name -> its record


def _q(text: str) -> str:
    return '"' + text.replace('"', "") + '"'


class _Table(Value):
    """The base chains' rules and the per-lab chains, filled lab by lab."""

    pre: list[str] = field(default_factory=list)
    out: list[str] = field(default_factory=list)
    post: list[str] = field(default_factory=list)
    fwd: list[str] = field(default_factory=list)
    guard: list[str] = field(default_factory=list)
    inp: list[str] = field(default_factory=list)
    #: (port, family) -> every lab's other machines on it (labs share the VXLAN port)
    overlay: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    chains: list[tuple[str, list[str]]] = field(default_factory=list)

    def text(self) -> str:
        base = [
            ("prerouting", "type nat hook prerouting priority dstnat; policy accept;", self.pre),
            ("output", "type nat hook output priority -100; policy accept;", self.out),
            ("postrouting", "type nat hook postrouting priority srcnat; policy accept;", self.post),
            ("forward", "type filter hook forward priority filter - 10; policy accept;", self.fwd),
            ("guard", "type filter hook prerouting priority raw; policy accept;", self.guard),
            ("input", "type filter hook input priority filter - 10; policy accept;", self.inp),
        ]
        lines = [f"table {FAMILY} {TABLE} {{"]
        for name, head, rules in base:
            if rules:
                lines += [f"\tchain {name} {{", f"\t\t{head}", *[f"\t\t{r}" for r in rules], "\t}"]
        for name, rules in self.chains:
            lines += [f"\tchain {name} {{", *[f"\t\t{r}" for r in rules], "\t}"]
        lines.append("}")
        return "\n".join(lines) + "\n"


def render_table(records: Records) -> str:
    """``table inet nslab {...}`` for all labs' records, in a stable order."""
    table = _Table()
    for rec in records.values():
        for peer in rec.overlay_peers if rec.loaded else ():
            peers = table.overlay.setdefault((rec.overlay_port, 6 if ":" in peer else 4), [])
            peers += [] if peer in peers else [peer]
    for lab in sorted(name for name, rec in records.items() if rec.loaded):
        _render_lab(table, lab, records[lab])
    return table.text()


def _render_lab(table: _Table, lab: str, rec: FirewallRecord) -> None:
    owner = f"nslab:{lab}"
    ports4 = [p for p in rec.ports if ":" not in p.host_ip]
    ports6 = [p for p in rec.ports if p.address6]
    if ports4:
        target = f"lab.{lab}.publish"
        table.pre.append(f"ip daddr != {LOOPBACK} fib daddr type local jump {target} comment {_q(owner)}")
        table.out.append(f"meta nfproto ipv4 fib daddr type local jump {target} comment {_q(owner)}")
        table.chains.append((target, [_dnat(p, owner) for p in ports4]))
    if ports6:  # ::1 is left to the lab's proxy: the kernel drops a reply to ::1 that arrives on a bridge
        target = f"lab.{lab}.publish6"
        for chain in (table.pre, table.out):
            chain.append(f"ip6 daddr != {LOOPBACK6} fib daddr type local jump {target} comment {_q(owner)}")
        table.chains.append((target, [_dnat6(p, owner) for p in ports6]))
    published = set(rec.published_bridges())
    snat: list[str] = []
    forward: list[str] = []
    for n in rec.networks:
        snat += _snat(n, f"{owner}:{n.name}", n.bridge in published, table)
        forward += _isolation(n, lab, f"{owner}:{n.name}", table)
    if snat:
        table.post.append(f"jump lab.{lab}.snat comment {_q(owner)}")
        table.chains.append((f"lab.{lab}.snat", snat))
    if forward:
        table.fwd.append(f"jump lab.{lab}.forward comment {_q(owner)}")
        table.chains.append((f"lab.{lab}.forward", forward))
    _overlay(table, rec, owner)


def _overlay(table: _Table, rec: FirewallRecord, owner: str) -> None:
    """A lab across machines: its VXLAN port dropped from anyone but the machines of the labs that share it, and
    its own VNIs (the VXLAN header's bits 32-55, after the 8-byte UDP header) from anyone but its own machines."""
    for family in sorted({6 if ":" in p else 4 for p in rec.overlay_peers}):
        ip = "ip6" if family == 6 else "ip"
        peers = ", ".join(sorted(table.overlay[(rec.overlay_port, family)]))
        table.inp.append(f"udp dport {rec.overlay_port} {ip} saddr != {{ {peers} }} drop "
                         f"comment {_q(owner + ':overlay')}")
        if rec.overlay_vnis:
            vnis = ", ".join(str(v) for v in rec.overlay_vnis)
            own = ", ".join(sorted(p for p in rec.overlay_peers if (":" in p) == (family == 6)))
            table.inp.append(f"udp dport {rec.overlay_port} @th,96,24 {{ {vnis} }} {ip} saddr != {{ {own} }} drop "
                             f"comment {_q(owner + ':overlay-vni')}")


def _dnat(p: PublishedPort, owner: str) -> str:
    match = "" if p.host_ip == str(publish.ANY) else f"ip daddr {p.host_ip} "
    return f"{match}{p.proto} dport {p.host_port} dnat ip to {p.address}:{p.port} comment {_q(owner + ':' + p.field)}"


def _dnat6(p: PublishedPort, owner: str) -> str:
    match = "" if ":" not in p.host_ip or p.host_ip == "::" else f"ip6 daddr {p.host_ip} "
    return (f"{match}{p.proto} dport {p.host_port} dnat ip6 to [{p.address6}]:{p.port} "
            f"comment {_q(owner + ':' + p.field)}")


def _snat(n: FwNetwork, tag: str, published: bool, table: _Table) -> list[str]:
    br = _q(n.bridge)
    rules = []
    if published:
        table.guard.append(f"iifname {br} ip daddr {LOOPBACK} drop comment {_q(tag + ':no-loopback')}")
        rules.append(f"oifname {br} ip saddr {LOOPBACK} masquerade comment {_q(tag + ':localhost')}")
        if n.internal:  # its hosts have no route back to a client elsewhere: answer via the gateway
            rules.append(f"oifname {br} ct status dnat masquerade comment {_q(tag + ':published')}")
        else:
            rules.append(f"oifname {br} ip saddr {n.subnet} ct status dnat masquerade comment {_q(tag + ':hairpin')}")
            if n.subnet6:
                rules.append(f"oifname {br} ip6 saddr {n.subnet6} ct status dnat masquerade "
                             f"comment {_q(tag + ':hairpin')}")
    if not n.internal:
        rules.append(f"ip saddr {n.subnet} oifname != {br} masquerade comment {_q(tag + ':egress')}")
        if n.subnet6 and n.nat6:  # NAT66: the lab's ULA addresses leave as the machine's own (nat6: false: routed)
            rules.append(f"ip6 saddr {n.subnet6} oifname != {br} masquerade comment {_q(tag + ':egress')}")
    return rules


def _isolation(n: FwNetwork, lab: str, tag: str, table: _Table) -> list[str]:
    br = _q(n.bridge)
    into = f"lab.{lab}.into.{n.name}"
    rules = [f"oifname {br} iifname != {br} jump {into} comment {_q(tag + ':isolation')}"]
    table.chains.append((into, [
        f"ct state established,related return comment {_q(tag + ':replies')}",
        f"ct status dnat return comment {_q(tag + ':published')}",
        f"drop comment {_q(tag + ':isolation')}",
    ]))
    if n.internal:
        leave = f"lab.{lab}.out.{n.name}"
        rules.append(f"iifname {br} oifname != {br} jump {leave} comment {_q(tag + ':internal')}")
        table.chains.append((leave, [
            f"ct state established,related return comment {_q(tag + ':replies')}",
            f"drop comment {_q(tag + ':internal')}",
        ]))
    return rules


def docker_user_rules(records: Records, where: tuple[str, str, str] = DOCKER_USER) -> list[str]:
    """The rules nslab inserts into Docker's DOCKER-USER chain (only when that chain exists); in its IPv6 twin
    for dual-stack networks."""
    family, table, chain = where
    out = []
    for lab in sorted(records):
        for n in records[lab].networks:
            if where == DOCKER_USER6 and not n.subnet6:
                continue
            tag = _q(f"nslab:{lab}:{n.name}")
            for direction in ("iifname", "oifname"):
                out.append(f"insert rule {family} {table} {chain} {direction} {_q(n.bridge)} accept comment {tag}")
    return out


class Observed(Value):
    """What the machine's ruleset holds that matters here (from ``nft -j list ruleset``)."""

    table_exists: bool = False
    docker_user: bool = False
    our_docker_rules: tuple[int, ...] = ()  # handles of rules commented nslab:* in DOCKER-USER
    foreign_drops: tuple[str, ...] = ()  # "table ip filter chain FORWARD" with a forward hook + policy drop
    chains: frozenset[str] = frozenset()  # the chains of nslab's table
    docker_user6: bool = False  # ip6 filter DOCKER-USER exists
    our_docker_rules6: tuple[int, ...] = ()
    rules: tuple[tuple[str, str], ...] = ()  # (chain, comment) of each rule of nslab's table

    @classmethod
    def from_ruleset(cls, objects: Iterable[Mapping[str, Any]]) -> Observed:
        table = docker_user = docker_user6 = False
        handles: list[int] = []
        handles6: list[int] = []
        drops: list[str] = []
        chains: set[str] = set()
        rules: list[tuple[str, str]] = []
        for obj in objects:
            if "table" in obj:
                table = table or (obj["table"].get("family"), obj["table"].get("name")) == (FAMILY, TABLE)
            elif "chain" in obj:
                c = obj["chain"]
                docker_user = docker_user or (c.get("family"), c.get("table"), c.get("name")) == DOCKER_USER
                docker_user6 = docker_user6 or (c.get("family"), c.get("table"), c.get("name")) == DOCKER_USER6
                if (c.get("family"), c.get("table")) == (FAMILY, TABLE):
                    chains.add(str(c.get("name")))
                if _drops_forward(c):
                    drops.append(f"table {c['family']} {c['table']} chain {c['name']}")
            elif "rule" in obj and _is_our_docker_rule(obj["rule"]):
                handles.append(int(obj["rule"]["handle"]))
            elif "rule" in obj and _is_our_docker_rule(obj["rule"], DOCKER_USER6):
                handles6.append(int(obj["rule"]["handle"]))
            elif "rule" in obj and (obj["rule"].get("family"), obj["rule"].get("table")) == (FAMILY, TABLE):
                rules.append((str(obj["rule"].get("chain")), str(obj["rule"].get("comment", ""))))
        return cls(table, docker_user, tuple(handles), tuple(drops), frozenset(chains), docker_user6, tuple(handles6),
                   tuple(rules))


def lab_chains(lab: str, record: FirewallRecord) -> set[str]:
    """The chains of nslab's table that lab ``lab``'s rules need (the base chains it hooks into, its own)."""
    text = render_table({lab: record}) if record.loaded else ""
    return {line.split()[1] for line in text.splitlines() if line.startswith("\tchain ")}


def changed_chains(lab: str, record: FirewallRecord, seen: Observed) -> list[str]:
    """The chains of nslab's table whose rules of lab ``lab`` (by their comment) are not those ``record`` renders
    to: a rule deleted or added by hand (a chain missing altogether is :func:`lab_chains`' to find)."""
    from collections import Counter

    want: Counter[tuple[str, str]] = Counter()
    chain = ""
    for line in (render_table({lab: record}) if record.loaded else "").splitlines():
        if line.startswith("\tchain "):
            chain = line.split()[1]
        elif 'comment "' in line:
            want[(chain, line.rsplit('comment "', 1)[1].rstrip('"'))] += 1
    mine = f"nslab:{lab}"
    have = Counter(r for r in seen.rules if r[1] == mine or r[1].startswith(mine + ":"))
    mine_chains = {c for c, _ in want} & seen.chains  # (rules in a chain the lab has not: not its own)
    return sorted({c for c, _ in (want - have) + (have - want) if c in mine_chains})


def _drops_forward(chain: Mapping[str, Any]) -> bool:
    """A base chain of someone else's on the forward hook with policy drop (Docker's, ufw's, by hand)."""
    mine = chain.get("family") == FAMILY and chain.get("table") == TABLE
    return (not mine and chain.get("hook") == "forward" and chain.get("policy") == "drop"
            and chain.get("family") in ("ip", "inet"))


def _is_our_docker_rule(rule: Mapping[str, Any], chain: tuple[str, str, str] = DOCKER_USER) -> bool:
    where = (rule.get("family"), rule.get("table"), rule.get("chain"))
    return where == chain and str(rule.get("comment", "")).startswith("nslab:")


def transaction(records: Records, seen: Observed) -> str:
    """The one nft buffer that brings the machine from ``seen`` to ``records`` ('' if nothing to do)."""
    wanted = {k: v for k, v in records.items() if v.loaded}
    lines: list[str] = []
    if wanted:
        lines += [f"add table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}", render_table(wanted).rstrip()]
    elif seen.table_exists:
        lines.append(f"delete table {FAMILY} {TABLE}")
    for present, where, handles in ((seen.docker_user, DOCKER_USER, seen.our_docker_rules),
                                    (seen.docker_user6, DOCKER_USER6, seen.our_docker_rules6)):
        if present:
            family, table, chain = where
            current = sorted(handles)
            desired_rules = docker_user_rules(wanted, where)
            if current or desired_rules:
                lines += [f"delete rule {family} {table} {chain} handle {h}" for h in current]
                lines += desired_rules
    return "\n".join(lines) + "\n" if lines else ""


def warnings(seen: Observed, records: Records) -> list[str]:
    if seen.docker_user or not any(r.needs_forwarding() for r in records.values()):
        return []
    return [
        f"{where} drops forwarded packets by policy (and has no Docker DOCKER-USER chain): lab egress and "
        "published ports will not pass it. nslab does not change other tables; to let them through run "
        "e.g. 'iptables -I FORWARD -i nsl+ -j ACCEPT; iptables -I FORWARD -o nsl+ -j ACCEPT' "
        "(nslab's own table still applies isolation and internal networks first)"
        for where in seen.foreign_drops
    ]
