"""Feature 'firewall' (see features.py): NAT egress, internal networks, isolation and published ports.

Everything lives in ONE nft table, ``table inet nslab``, holding every lab's chains. On each change the
table is rendered again from all labs' records and replaced in one atomic libnftables transaction
(``add table; delete table; table inet nslab {...}``); the last lab's ``down`` deletes it. Every rule carries
``comment "nslab:<lab>[:<what>]"``. No other table, chain policy or global setting is changed (with the one
documented exception of Docker's DOCKER-USER chain, below).

Rule shapes (what Docker, CNI and netavark converge on)::

    prerouting  nat dstnat    ip daddr != 127/8 fib daddr type local jump lab.L.publish
    output      nat dstnat    fib daddr type local jump lab.L.publish     (the machine, 127.0.0.1 too)
    lab.L.publish             [ip daddr HOST_IP] tcp dport 6000 dnat ip to HOSTADDR:8080
    postrouting nat srcnat    jump lab.L.snat
    lab.L.snat                oifname BR ip saddr 127/8 masquerade        (localhost publish)
                              oifname BR ip saddr NET ct status dnat masquerade   (hairpin)
                              oifname BR ct status dnat masquerade   (internal: its hosts have no route out)
                              ip saddr NET oifname != BR masquerade       (egress; NAT networks only)
    forward     filter -10    jump lab.L.forward
    lab.L.forward             oifname BR iifname != BR jump lab.L.into.N  (established / DNAT, else drop)
                              iifname BR oifname != BR jump lab.L.out.N   (internal: established, else drop)
    guard       filter raw    iifname BR ip daddr 127/8 drop   (route_localnet is on for BR: no loopback
                                                                  access from the lab to the machine)

Bridge ports of publishing hosts are put in hairpin mode (``ip link set PORT type bridge_slave hairpin on``):
with br_netfilter loaded, a host's connection to its own published port is bridged back out of the port it
came in by. Recorded as ``hairpin`` and switched off again when the host stops publishing.

Sysctls: ``net.ipv4.ip_forward`` is set to 1 while a lab needs forwarding, its prior value is kept in
``/run/nslab/.firewall.json`` and restored when no lab needs it any more; ``route_localnet=1`` is set on
nslab's own bridges that carry published ports only (prior value kept in the lab's record).

Docker coexistence (the choice, and why). In nftables a packet is dropped if ANY base chain on its hook
drops it: an ``accept`` in our table ends only our table's evaluation, and Docker's ``table ip filter``
chain ``FORWARD`` (policy drop, iptables-nft) then drops lab egress and published traffic. Nothing inside
our own table can change that: marks, priorities and flowtables all still pass the first packet of a
connection through Docker's FORWARD chain; keeping lab traffic off the forward hook altogether would need a
proxy or a second uplink. The only working way is for the drop-policy chain to accept our packets. Docker
documents ``DOCKER-USER`` (jumped to first from its FORWARD) as the place for the user's own rules, so:
when ``table ip filter`` has a ``DOCKER-USER`` chain, and only then, nslab inserts there, in the same
transaction as its table, two rules per nslab bridge (``iifname BR accept``, ``oifname BR accept``, each
commented ``nslab:<lab>:<network>``) and removes exactly those rules (found by that comment) when the lab
goes. They accept only what our own forward chain (priority filter - 10, evaluated before Docker's at
filter 0) has already let through: isolation and internal drops happen in our table first. Docker's own
traffic (its bridges to the uplink, between containers, its published ports) matches none of them.
Known limits of this choice: a new connection from a NAT lab host straight to an address on one of
Docker's bridges is accepted by our DOCKER-USER rule before Docker's own DOCKER chain could refuse it (Docker
would refuse it for any non-Docker source; naming Docker's bridges here would guess at names such as
``br-*`` that uplinks use too); and if Docker starts after a lab is up, the rules appear with the next
``nslab up``/``down`` of any lab (each one re-renders everything).
A forward-hook chain with policy drop WITHOUT a DOCKER-USER chain (e.g. ``iptables -P FORWARD DROP`` by
hand) is not touched: it is detected and reported as a warning in ``up`` / ``status``, with the command
that would let the lab's traffic pass.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import paths, publish, state
from .errors import FirewallError, NslabError, Problem
from .model import IPv4Addr, Lab

if TYPE_CHECKING:  # the spec needs pydantic + yaml: `down` and `status` do without them
    from .spec import SourceMap

KEY = "firewall"
BEFORE_NAMESPACES = False

TABLE = "nslab"
FAMILY = "inet"
LOOPBACK = "127.0.0.0/8"
DOCKER_USER = ("ip", "filter", "DOCKER-USER")


# --- the record of one lab (what `up` returns and `down` works from) ------------------------------
def desired(lab: Lab) -> dict[str, Any]:
    """What this lab asks of the firewall, as the JSON-able record kept in its state."""
    from .spec import field_path

    networks = [
        {"name": n.name, "bridge": n.bridge, "subnet": str(n.subnet), "internal": n.internal}
        for n in lab.networks.values()
    ]
    ports: list[dict[str, Any]] = []
    spec = lab.spec
    if spec is not None:
        for host_name, host_spec in spec.hosts.items():
            host = lab.hosts.get(host_name)
            if host is None:
                continue
            iface = next((i for i in host.interfaces if i.network), None)
            for index, text in enumerate(host_spec.publish):
                if iface is None:
                    continue
                try:
                    mappings = publish.parse(text)
                except publish.PublishSyntaxError:
                    continue
                for m in mappings:
                    ports.append(
                        {
                            "host": host_name,
                            "field": field_path(("hosts", host_name, "publish", index)),
                            "spec": text,
                            "proto": m.proto,
                            "host_ip": str(m.host_ip),
                            "host_port": m.host_port,
                            "network": iface.network,
                            "address": str(iface.address.ip),
                            "port": m.port,
                        }
                    )
    return {"networks": networks, "ports": ports}


def _needs_forwarding(record: Mapping[str, Any]) -> bool:
    return bool(record.get("ports")) or any(not n["internal"] for n in record.get("networks", []))


def _published_bridges(record: Mapping[str, Any]) -> list[str]:
    by_name = {n["name"]: n["bridge"] for n in record.get("networks", [])}
    out: list[str] = []
    for p in record.get("ports", []):
        bridge = by_name.get(p["network"])
        if bridge and bridge not in out:
            out.append(bridge)
    return out


# --- rendering (pure; golden-tested) ---------------------------------------------------------------
def _q(text: str) -> str:
    return '"' + text.replace('"', "") + '"'


def render_table(records: Mapping[str, Mapping[str, Any]]) -> str:
    """``table inet nslab {...}`` for all labs' records (lab name -> record), in a stable order."""
    labs = [name for name in sorted(records) if records[name].get("networks") or records[name].get("ports")]
    pre, out, post, fwd, guard = [], [], [], [], []
    chains: list[tuple[str, list[str]]] = []
    for lab in labs:
        rec = records[lab]
        owner = f"nslab:{lab}"
        networks = rec.get("networks", [])
        ports = rec.get("ports", [])
        if ports:
            target = f"lab.{lab}.publish"
            pre.append(f"ip daddr != {LOOPBACK} fib daddr type local jump {target} comment {_q(owner)}")
            out.append(f"meta nfproto ipv4 fib daddr type local jump {target} comment {_q(owner)}")
            rules = []
            for p in ports:
                match = "" if p["host_ip"] == str(publish.ANY) else f"ip daddr {p['host_ip']} "
                rules.append(
                    f"{match}{p['proto']} dport {p['host_port']} dnat ip to {p['address']}:{p['port']} "
                    f"comment {_q(owner + ':' + p['field'])}"
                )
            chains.append((target, rules))
        published = set(_published_bridges(rec))
        snat: list[str] = []
        forward: list[str] = []
        for n in networks:
            br, net, name = _q(n["bridge"]), n["subnet"], n["name"]
            tag = f"{owner}:{name}"
            if n["bridge"] in published:
                guard.append(f"iifname {br} ip daddr {LOOPBACK} drop comment {_q(tag + ':no-loopback')}")
                snat.append(f"oifname {br} ip saddr {LOOPBACK} masquerade comment {_q(tag + ':localhost')}")
                if n["internal"]:  # its hosts have no route back to a client elsewhere: answer via the gateway
                    snat.append(f"oifname {br} ct status dnat masquerade comment {_q(tag + ':published')}")
                else:
                    snat.append(
                        f"oifname {br} ip saddr {net} ct status dnat masquerade comment {_q(tag + ':hairpin')}"
                    )
            if not n["internal"]:
                snat.append(f"ip saddr {net} oifname != {br} masquerade comment {_q(tag + ':egress')}")
            into = f"lab.{lab}.into.{name}"
            forward.append(f"oifname {br} iifname != {br} jump {into} comment {_q(tag + ':isolation')}")
            chains.append(
                (
                    into,
                    [
                        f"ct state established,related return comment {_q(tag + ':replies')}",
                        f"ct status dnat return comment {_q(tag + ':published')}",
                        f"drop comment {_q(tag + ':isolation')}",
                    ],
                )
            )
            if n["internal"]:
                leave = f"lab.{lab}.out.{name}"
                forward.append(f"iifname {br} oifname != {br} jump {leave} comment {_q(tag + ':internal')}")
                chains.append(
                    (
                        leave,
                        [
                            f"ct state established,related return comment {_q(tag + ':replies')}",
                            f"drop comment {_q(tag + ':internal')}",
                        ],
                    )
                )
        if snat:
            post.append(f"jump lab.{lab}.snat comment {_q(owner)}")
            chains.append((f"lab.{lab}.snat", snat))
        if forward:
            fwd.append(f"jump lab.{lab}.forward comment {_q(owner)}")
            chains.append((f"lab.{lab}.forward", forward))

    base = [
        ("prerouting", "type nat hook prerouting priority dstnat; policy accept;", pre),
        ("output", "type nat hook output priority -100; policy accept;", out),
        ("postrouting", "type nat hook postrouting priority srcnat; policy accept;", post),
        ("forward", "type filter hook forward priority filter - 10; policy accept;", fwd),
        ("guard", "type filter hook prerouting priority raw; policy accept;", guard),
    ]
    lines = [f"table {FAMILY} {TABLE} {{"]
    for name, head, rules in base:
        if not rules:
            continue
        lines += [f"\tchain {name} {{", f"\t\t{head}", *[f"\t\t{r}" for r in rules], "\t}"]
    for name, rules in chains:
        lines += [f"\tchain {name} {{", *[f"\t\t{r}" for r in rules], "\t}"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def docker_user_rules(records: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The rules nslab inserts into Docker's DOCKER-USER chain (only when that chain exists)."""
    family, table, chain = DOCKER_USER
    out = []
    for lab in sorted(records):
        for n in records[lab].get("networks", []):
            tag = _q(f"nslab:{lab}:{n['name']}")
            for direction in ("iifname", "oifname"):
                out.append(f"insert rule {family} {table} {chain} {direction} {_q(n['bridge'])} accept comment {tag}")
    return out


@dataclass
class Observed:
    """What the machine's ruleset holds that matters here (from ``nft -j list ruleset``)."""

    table_exists: bool = False
    docker_user: bool = False
    our_docker_rules: tuple[int, ...] = ()  # handles of rules commented nslab:* in DOCKER-USER
    foreign_drops: tuple[str, ...] = ()  # "table ip filter chain FORWARD" with a forward hook + policy drop

    @classmethod
    def from_ruleset(cls, objects: Iterable[Mapping[str, Any]]) -> Observed:
        seen = cls()
        handles, drops = [], []
        family, table, chain = DOCKER_USER
        for obj in objects:
            if "table" in obj:
                t = obj["table"]
                if t.get("family") == FAMILY and t.get("name") == TABLE:
                    seen.table_exists = True
            elif "chain" in obj:
                c = obj["chain"]
                if (c.get("family"), c.get("table"), c.get("name")) == DOCKER_USER:
                    seen.docker_user = True
                mine = c.get("family") == FAMILY and c.get("table") == TABLE
                if not mine and c.get("hook") == "forward" and c.get("policy") == "drop":
                    if c.get("family") in ("ip", "inet"):
                        drops.append(f"table {c['family']} {c['table']} chain {c['name']}")
            elif "rule" in obj:
                r = obj["rule"]
                if (r.get("family"), r.get("table"), r.get("chain")) == DOCKER_USER and str(
                    r.get("comment", "")
                ).startswith("nslab:"):
                    handles.append(int(r["handle"]))
        seen.our_docker_rules = tuple(handles)
        seen.foreign_drops = tuple(drops)
        return seen


def transaction(records: Mapping[str, Mapping[str, Any]], seen: Observed) -> str:
    """The one nft buffer that brings the machine from ``seen`` to ``records`` ('' if nothing to do)."""
    wanted = {k: v for k, v in records.items() if v.get("networks") or v.get("ports")}
    lines: list[str] = []
    if wanted:
        lines += [f"add table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}", render_table(wanted).rstrip()]
    elif seen.table_exists:
        lines.append(f"delete table {FAMILY} {TABLE}")
    if seen.docker_user:
        family, table, chain = DOCKER_USER
        current = sorted(seen.our_docker_rules)
        desired_rules = docker_user_rules(wanted)
        if current or desired_rules:
            lines += [f"delete rule {family} {table} {chain} handle {h}" for h in current]
            lines += desired_rules
    return "\n".join(lines) + "\n" if lines else ""


def warnings(seen: Observed, records: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if seen.docker_user or not any(_needs_forwarding(r) for r in records.values()):
        return []
    return [
        f"{where} drops forwarded packets by policy (and has no Docker DOCKER-USER chain): lab egress and "
        "published ports will not pass it. nslab does not change other tables; to let them through run "
        "e.g. 'iptables -I FORWARD -i nsl+ -j ACCEPT; iptables -I FORWARD -o nsl+ -j ACCEPT' "
        "(nslab's own table still applies isolation and internal networks first)"
        for where in seen.foreign_drops
    ]


# --- validate ----------------------------------------------------------------------------------
@dataclass
class Machine:
    """What validation needs to know about the machine (injectable for unit tests)."""

    addresses: frozenset[IPv4Addr] | None = None  # None: unknown, do not check HOST_IP
    listeners: tuple[tuple[str, IPv4Addr | None, int, int], ...] = ()  # (proto, addr or None=any, port, inode)

    def owner_of(self, inode: int) -> str:
        return process_of_socket(inode)


def validate(lab: Lab, source: SourceMap, file: str, others: list[Any]) -> list[Problem]:
    spec = lab.spec
    if spec is None or not any(h.publish for h in spec.hosts.values()):
        return []
    return check(lab, source, file, {o.lab.name: o.extra.get(KEY) or {} for o in others}, live_machine())


def check(
    lab: Lab, source: SourceMap, file: str, others: Mapping[str, Mapping[str, Any]], machine: Machine
) -> list[Problem]:
    """Every problem with the lab's ``publish`` entries, located by file:line and field path."""
    from .spec import field_path

    problems: list[Problem] = []
    claimed: list[tuple[publish.Mapping, str]] = []
    foreign = [
        (publish.Mapping(IPv4Addr(p["host_ip"]), p["host_port"], p["port"], p["proto"]), name, p["host"])
        for name, rec in others.items()
        for p in rec.get("ports", [])
    ]
    spec = lab.spec
    for host_name, host_spec in spec.hosts.items():
        host = lab.hosts.get(host_name)
        for index, text in enumerate(host_spec.publish):
            loc = ("hosts", host_name, "publish", index)

            def add(message: str, loc: tuple[Any, ...] = loc) -> None:
                problems.append(Problem(message, field_path(loc), file, source.line(loc)))

            try:
                mappings = publish.parse(text)
            except publish.PublishSyntaxError as exc:
                add(f"{exc}")
                continue
            if host is not None and not any(i.network for i in host.interfaces):
                add(f"host '{host_name}' is on no network: a published port needs one to lead to")
                continue
            first = mappings[0]
            if (
                machine.addresses is not None
                and not first.any_address
                and first.host_ip not in publish.LOOPBACK
                and first.host_ip not in machine.addresses
            ):
                add(f"HOST_IP {first.host_ip} is not an address of this machine")
                continue
            reported = False
            for m in mappings:
                if reported:
                    break
                for prior, where in claimed:
                    if m.overlaps(prior):
                        add(f"host port {m.label()} is published twice (also by {where})")
                        reported = True
                        break
                if reported:
                    break
                for prior, other_lab, other_host in foreign:
                    if m.overlaps(prior):
                        add(f"host port {m.label()} is already published by lab '{other_lab}' (host '{other_host}')")
                        reported = True
                        break
                if reported:
                    break
                for proto, address, port, inode in machine.listeners:
                    if proto == m.proto and port == m.host_port and (
                        address is None or m.any_address or address == m.host_ip
                    ):
                        bound = f"{address or '*'}:{port}/{proto}"
                        add(f"host port {m.label()} is in use on this machine: {machine.owner_of(inode)} "
                            f"listens on {bound}")
                        reported = True
                        break
            for m in mappings:
                claimed.append((m, field_path(loc)))
    return problems


def live_machine() -> Machine:
    addresses: frozenset[IPv4Addr] | None = None
    try:
        from .drivers import netlink

        sock = netlink.root_socket()
        try:
            addresses = frozenset(
                a.ip for lk in netlink.links(sock) for a in lk.addresses if a.version == 4  # type: ignore[misc]
            )
        finally:
            sock.close()
    except (OSError, NslabError):
        addresses = None
    return Machine(addresses=addresses, listeners=tuple(listening_sockets()))


def _hex_address(text: str) -> tuple[IPv4Addr | None, int, bool]:
    """``0100007F:1F90`` -> (127.0.0.1, 8080); IPv6: None for any address, else (None, port, False)."""
    addr, port_hex = text.split(":")
    port = int(port_hex, 16)
    if len(addr) == 8:
        ip = IPv4Addr(int.from_bytes(bytes.fromhex(addr), "little"))
        return (None if ip == publish.ANY else ip), port, True
    raw = bytes.fromhex(addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    import ipaddress

    ip6 = ipaddress.IPv6Address(words)
    if ip6.is_unspecified:
        return None, port, True
    if ip6.ipv4_mapped is not None:
        return ip6.ipv4_mapped, port, True
    return None, port, False  # an IPv6-only address does not take IPv4 packets


def listening_sockets(root: str = "/proc/net") -> list[tuple[str, IPv4Addr | None, int, int]]:
    """TCP listeners and bound UDP sockets of the caller's namespace: (proto, address|None, port, inode)."""
    out = []
    for name, proto, wanted_state in (("tcp", "tcp", "0A"), ("tcp6", "tcp", "0A"), ("udp", "udp", "07"),
                                      ("udp6", "udp", "07")):
        try:
            with open(os.path.join(root, name)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10 or fields[3] != wanted_state:
                continue
            address, port, ipv4 = _hex_address(fields[1])
            if ipv4:
                out.append((proto, address, port, int(fields[9])))
    return out


def process_of_socket(inode: int) -> str:
    """'process NAME (pid N)' owning socket ``inode``, or 'a process' if it cannot be found."""
    target = f"socket:[{inode}]"
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return "a process"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    with open(f"/proc/{pid}/comm") as f:
                        return f"process '{f.read().strip()}' (pid {pid})"
            except OSError:
                continue
    return "a process"


# --- machine-wide record of sysctls -------------------------------------------------------------
def _machine_record_path() -> str:
    return os.path.join(paths.state_root(), ".firewall.json")


def _load_machine_record() -> dict[str, Any]:
    try:
        with open(_machine_record_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _save_machine_record(record: dict[str, Any]) -> None:
    os.makedirs(paths.state_root(), exist_ok=True)
    tmp = _machine_record_path() + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, _machine_record_path())


def _ensure_forwarding() -> None:
    from .drivers import sysctl

    record = _load_machine_record()
    if "ip_forward" not in record:
        record["ip_forward"] = sysctl.read(sysctl.IP_FORWARD)
        _save_machine_record(record)
    if sysctl.read(sysctl.IP_FORWARD) != "1":
        sysctl.write(sysctl.IP_FORWARD, "1")


def _release_forwarding() -> list[str]:
    from .drivers import sysctl

    record = _load_machine_record()
    if "ip_forward" not in record:
        return []
    try:
        if sysctl.read(sysctl.IP_FORWARD) != record["ip_forward"]:
            sysctl.write(sysctl.IP_FORWARD, record["ip_forward"])
        os.unlink(_machine_record_path())
    except (OSError, NslabError) as exc:
        return [f"restoring {sysctl.IP_FORWARD}={record['ip_forward']}: {exc}"]
    return []


# --- the feature surface -------------------------------------------------------------------------
def _other_records(name: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for other in state.lab_names():
        if other == name:  # not even read: a big lab's own record is long
            continue
        record = state.LabState.load(other)
        if record is not None and record.extra.get(KEY):
            out[record.lab.name] = record.extra[KEY]
    return out


def _nft() -> Any:
    from .drivers.nftables import Nft

    return Nft()


def commands(lab: Lab, previous: dict[str, Any] | None) -> list[str]:
    from .drivers import sysctl

    want = desired(lab)
    records = {**_other_records(lab.name), lab.name: want}
    seen = Observed.from_ruleset(_nft().ruleset())
    out: list[str] = []
    if _needs_forwarding(want) and sysctl.read(sysctl.IP_FORWARD) != "1":
        out.append(f"sysctl -w {sysctl.IP_FORWARD}=1")
    for bridge in _published_bridges(want):
        key = sysctl.route_localnet(bridge)
        if not sysctl.exists(key) or sysctl.read(key) != "1":
            out.append(f"sysctl -w {key}=1")
    text = "" if _up_to_date(want, previous, seen) else transaction(records, seen)
    if text:
        out += ["nft -f - <<'EOF'", *text.rstrip("\n").split("\n"), "EOF"]
    hairpin = _hairpin_ports(lab, want)
    done = (previous or {}).get("hairpin", [])
    out += [f"ip link set {port} type bridge_slave hairpin on" for port in hairpin if port not in done]
    out += [f"ip link set {port} type bridge_slave hairpin off" for port in done if port not in hairpin]
    out += [f"# warning: {w}" for w in warnings(seen, records)]
    return out


def _up_to_date(want: Mapping[str, Any], previous: Mapping[str, Any] | None, seen: Observed) -> bool:
    """The lab's part of the ruleset is loaded as wanted (nothing to do for it)."""
    if not previous or {k: previous.get(k) for k in want} != dict(want):
        return False
    loaded = bool(want.get("networks") or want.get("ports"))
    return seen.table_exists == loaded or (seen.table_exists and not loaded)


def _apply(records: Mapping[str, Mapping[str, Any]], nft: Any = None) -> Observed:
    nft = nft or _nft()
    seen = Observed.from_ruleset(nft.ruleset())
    text = transaction(records, seen)
    if text:
        nft.run(text)
    return seen


def up(lab: Lab, previous: dict[str, Any] | None, recreated: set[str]) -> dict[str, Any]:
    from .drivers import sysctl

    previous = previous or {}
    want = desired(lab)
    records = {**_other_records(lab.name), lab.name: want}
    localnet: dict[str, str] = dict(previous.get("route_localnet", {}))
    if any(_needs_forwarding(r) for r in records.values()):
        _ensure_forwarding()
    for bridge in _published_bridges(want):
        key = sysctl.route_localnet(bridge)
        if bridge not in localnet or bridge in recreated:
            localnet[bridge] = sysctl.read(key)
        if sysctl.read(key) != "1":
            sysctl.write(key, "1")
    for bridge in [b for b in localnet if b not in _published_bridges(want)]:
        key = sysctl.route_localnet(bridge)
        if sysctl.exists(key):
            sysctl.write(key, localnet[bridge])
        del localnet[bridge]
    try:
        seen = _apply(records)
    except FirewallError:
        if not any(_needs_forwarding(r) for r in _other_records(lab.name).values()):
            _release_forwarding()
        raise
    hairpin = _hairpin_ports(lab, want)
    # after the ruleset is in: a failure here must not lose this record, only a host's way to itself
    hairpin_failures = _set_hairpin(hairpin, [p for p in previous.get("hairpin", []) if p not in hairpin])
    return {
        **want,
        "hairpin": hairpin,
        "route_localnet": localnet,
        "docker_user": seen.docker_user,
        "warnings": warnings(seen, records) + [f"a host cannot reach its own published port: {f}"
                                               for f in hairpin_failures],
    }


def _hairpin_ports(lab: Lab, want: Mapping[str, Any]) -> list[str]:
    """Bridge ports of publishing hosts. A host reaching its own published port (through the machine's
    address) is DNATed back to itself; with br_netfilter loaded (Docker loads it) the kernel then bridges
    that frame out of the port it came in by, which a bridge port refuses unless in hairpin mode."""
    ports = []
    for p in want["ports"]:
        iface = lab.hosts[p["host"]].interface_on(p["network"])
        if iface is not None and iface.host_veth not in ports:
            ports.append(iface.host_veth)
    return ports


def _set_hairpin(on: list[str], off: list[str]) -> list[str]:
    if not on and not off:
        return []
    import errno

    from .drivers import netlink

    batch = netlink.Batch()
    for name in on:
        netlink.set_hairpin(batch, name, True)
    for name in off:
        netlink.set_hairpin(batch, name, False)
    sock = netlink.root_socket()
    try:
        return batch.commit(sock, tolerate=(errno.ENODEV,))  # a port that went with its host
    finally:
        sock.close()


def down(name: str, recorded: dict[str, Any] | None, lab: Lab | None) -> list[str]:
    from .drivers import sysctl

    failures: list[str] = []
    records = _other_records(name)
    try:
        nft = _nft()
        seen = Observed.from_ruleset(nft.ruleset())
        if seen.table_exists or seen.our_docker_rules:  # re-render without this lab (also after a crash)
            text = transaction(records, seen)
            if text:
                nft.run(text)
    except NslabError as exc:
        failures.append(f"firewall of lab '{name}': {exc}")
    for bridge, value in ((recorded or {}).get("route_localnet") or {}).items():
        key = sysctl.route_localnet(bridge)
        try:
            if sysctl.exists(key):
                sysctl.write(key, value)
        except NslabError as exc:
            if sysctl.exists(key):  # else the bridge went meanwhile (down deletes it in parallel), and its key
                failures.append(str(exc))
    if not any(_needs_forwarding(r) for r in records.values()):
        failures += _release_forwarding()
    return failures


def status(lab: Lab, recorded: dict[str, Any] | None) -> dict[str, Any]:
    recorded = recorded or {}
    ports = [
        {
            "publish": p["spec"],
            "host": p["host"],
            "proto": p["proto"],
            "host_ip": p["host_ip"],
            "host_port": p["host_port"],
            "to": f"{p['address']}:{p['port']}",
            "network": p["network"],
        }
        for p in recorded.get("ports", [])
    ]
    return {
        "table": f"{FAMILY} {TABLE}",
        "ports": ports,
        "docker_user": bool(recorded.get("docker_user")),
        "warnings": list(recorded.get("warnings", [])),
    }
