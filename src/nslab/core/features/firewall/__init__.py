"""Feature 'firewall' (see features/__init__.py): NAT egress, internal networks, isolation and published ports.

Everything lives in ONE nft table, ``table inet nslab``, holding every lab's chains. On each change the
table is rendered again from all labs' records and replaced in one atomic libnftables transaction
(``add table; delete table; table inet nslab {...}``); the last lab's ``down`` deletes it. Every rule carries
``comment "nslab:<lab>[:<what>]"``. No other table, chain policy or global setting is changed (with the one
documented exception of Docker's DOCKER-USER chain, below).

Rule shapes: render.py. Validation of ``publish``: ports.py. The record kept per lab: record.py. Host ports
picked for entries that name none (``publish: ["80"]``), kept while the lab is up: pick.py.

Bridge ports of publishing hosts are put in hairpin mode (``ip link set PORT type bridge_slave hairpin on``):
with br_netfilter loaded, a host's connection to its own published port is bridged back out of the port it
came in by. Recorded as ``hairpin`` and switched off again when the host stops publishing.

Sysctls: ``net.ipv4.ip_forward`` (and ``net.ipv6.conf.all.forwarding`` for dual-stack labs) is set to 1 while a
lab needs forwarding, its prior value is kept in ``/run/nslab/.firewall.json`` and restored when no lab needs
it any more; ``route_localnet=1`` is set on
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

IPv6 (dual-stack networks): the same table holds NAT66 egress (or none with ``nat6: false``), IPv6 hairpin
and IPv6 publish rules (render.py); internal networks and isolation match interfaces, so they hold for both
families. ``::1`` is left out of the IPv6 publish jump: the lab's supervisor relays ``[::1]`` ports
(loopproxy.py). Docker's ``ip6 filter DOCKER-USER`` gets the same accept rules as its IPv4 twin, for
dual-stack bridges.

Replaces: ``nft -f``, ``sysctl -w net.ipv4.ip_forward=1``, ``sysctl -w net.ipv6.conf.all.forwarding=1``,
``sysctl -w net.ipv4.conf.BR.route_localnet=1``, ``ip link set PORT type bridge_slave hairpin on``.
"""


from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ....errors import KernelError, Problem
from ....model import Publish
from ....paths import machine_record
from ...plan import Action
from .. import DownContext, FeaturePlan, UpContext, ValidateContext
from .record import FirewallRecord, PublishedPort, desired, docker_port_lines
from .render import (
    DOCKER_USER6,
    FAMILY,
    TABLE,
    Observed,
    changed_chains,
    docker_user_rules,
    lab_chains,
    transaction,
    warnings,
)

if TYPE_CHECKING:
    from ....drivers import Drivers
    from ....model import Lab
    from ...difference import Difference
    from ...spec import HostSpec

KEY = "firewall"
STATUS_KEY = "firewall"
IP_FORWARD = "net.ipv4.ip_forward"
#: IPv6 forwarding on the machine (all interfaces): note that an interface with ``accept_ra=1`` then ignores
#: router advertisements (an uplink configured by SLAAC wants ``accept_ra=2``; see docs/lab-file.md, IPv6)
IP6_FORWARD = "net.ipv6.conf.all.forwarding"
NEW_INTERFACE_ROUTE_LOCALNET = "net.ipv4.conf.default.route_localnet"  # what a new bridge starts with


def route_localnet(interface: str) -> str:
    """The sysctl key of ``route_localnet`` of one interface (interface names have no dots in nslab)."""
    return f"net.ipv4.conf.{interface}.route_localnet"


def resolve(name: str, host: HostSpec) -> tuple[Publish, ...]:
    """Host ``name``'s ``publish:`` entries as written, each with its field path (validate checks them)."""
    return tuple(Publish(text, ("hosts", name, "publish", i)) for i, text in enumerate(host.publish))


def validate(ctx: ValidateContext) -> list[Problem]:
    if not any(h.publish for h in (*ctx.lab.hosts.values(), *ctx.lab.remote.values())):
        return []
    from .ports import Machine, check

    machine = Machine()
    if ctx.drivers is not None:
        d = ctx.drivers
        machine = Machine(d.kernel.machine_addresses(), tuple(d.machine.listeners()), d.machine.socket_owner)
    return check(ctx.lab, ctx.source, ctx.file, _other_records(ctx.others), machine)


def _other_records(others: list[Any]) -> dict[str, FirewallRecord]:
    return {o.lab.name: FirewallRecord.from_json(o.extra.get(KEY)) for o in others if o.extra.get(KEY)}


# --- actions -------------------------------------------------------------------------------------------------
class LoadRuleset(Action):
    """Replace nslab's table (and its DOCKER-USER rules) in one transaction; the inverse loads the former.

    ``seen``: the ruleset as observed while planning, under the same machine lock (so not listed again);
    ``None`` (an inverse: the ruleset changed since) makes ``apply`` list it first."""

    records: Mapping[str, FirewallRecord]
    former: Mapping[str, FirewallRecord]
    seen: Observed | None = None
    picked: tuple[PublishedPort, ...] = ()  # host ports picked by this plan (``up`` and ``--dry-run`` name them)
    picked_from: str = ""  # the ephemeral range they come from

    def commands(self) -> list[str]:
        text = transaction(self.records, self.seen or Observed())
        notes = [f"# {p.field} '{p.spec}': host port {p.host_port}/{p.proto} picked (free, in the ephemeral range "
                 f"{self.picked_from}; kept while the lab is up)" for p in self.picked]
        return [*notes, "nft -f - <<'EOF'", *text.rstrip("\n").split("\n"), "EOF"] if text else notes

    def summary(self) -> str:
        picked = ", ".join(f"{p.host} {line}" for p in self.picked for line in docker_port_lines(p))
        return f"load the {FAMILY} {TABLE} table" + (f"; picked {picked}" if picked else "")

    def apply(self, drivers: Drivers) -> Action | None:
        seen = self.seen or Observed.from_ruleset(drivers.nft.ruleset())
        text = transaction(self.records, seen)
        if text:
            drivers.nft.run(text)
        return LoadRuleset(self.former, self.records)


class SetSysctl(Action):
    """``sysctl -w KEY=VALUE``; the inverse writes back ``former``."""

    key: str
    value: str
    former: str

    def commands(self) -> list[str]:
        return [f"sysctl -qw {self.key}={self.value}"]

    def summary(self) -> str:
        return f"set {self.key}"

    def apply(self, drivers: Drivers) -> Action | None:
        drivers.sysctl.write(self.key, self.value)
        return SetSysctl(self.key, self.former, self.value)

    def teardown(self, drivers: Drivers) -> list[str]:
        try:
            if drivers.sysctl.exists(self.key):
                drivers.sysctl.write(self.key, self.value)
        except KernelError as exc:
            if drivers.sysctl.exists(self.key):  # else its bridge went meanwhile (down deletes it in parallel)
                return [str(exc)]
        return []


def _record_key(key: str) -> str:
    """The machine record's entry for a forwarding sysctl (``ip_forward`` as before IPv6 came)."""
    return "ip_forward" if key == IP_FORWARD else "ipv6_forwarding"


class EnableForwarding(Action):
    """``ip_forward=1`` (or IPv6's ``all.forwarding=1``) while any lab needs it; the value before is kept in
    the machine record, once."""

    former: str
    key: str = IP_FORWARD

    def commands(self) -> list[str]:
        return [f"sysctl -qw {self.key}=1", f"# prior {self.key}={self.former} kept in {machine_record()}"]

    def summary(self) -> str:
        return "enable forwarding" + (" (IPv6)" if self.key != IP_FORWARD else "")

    def apply(self, drivers: Drivers) -> Action | None:
        kept = drivers.files.read_json(machine_record()) or {}
        entry = _record_key(self.key)
        made_record = entry not in kept
        if made_record:
            drivers.files.write_json(machine_record(), {**kept, entry: self.former})
        try:
            drivers.sysctl.write(self.key, "1")
        except BaseException:
            if made_record:
                rest = {k: v for k, v in kept.items() if k != entry}
                if rest:
                    drivers.files.write_json(machine_record(), rest)
                else:
                    drivers.files.remove(machine_record())
            raise
        return ReleaseForwarding(self.key) if made_record else SetSysctl(self.key, self.former, "1")


class ReleaseForwarding(Action):
    """No lab needs forwarding any more: the sysctl goes back to the value kept before the first lab."""

    key: str = IP_FORWARD

    def commands(self) -> list[str]:
        return [f"# {self.key} back to the value kept in {machine_record()}"]

    def summary(self) -> str:
        return "restore forwarding" + (" (IPv6)" if self.key != IP_FORWARD else "")

    def apply(self, drivers: Drivers) -> Action | None:
        kept = drivers.files.read_json(machine_record()) or {}
        entry = _record_key(self.key)
        if entry not in kept:
            return None
        if drivers.sysctl.read(self.key) != kept[entry]:
            drivers.sysctl.write(self.key, kept[entry])
        rest = {k: v for k, v in kept.items() if k != entry}
        if rest:
            drivers.files.write_json(machine_record(), rest)
        else:
            drivers.files.remove(machine_record())
        return None

    def teardown(self, drivers: Drivers) -> list[str]:
        try:
            self.apply(drivers)
        except KernelError as exc:
            return [f"restoring {self.key}: {exc}"]
        return []


class SetHairpin(Action):
    """Bridge ports of publishing hosts: a host's connection to its own published port is DNATed back to it,
    and with br_netfilter loaded (Docker loads it) the bridge must send that frame out of the port it came in by."""

    on: tuple[str, ...]
    off: tuple[str, ...] = ()

    def commands(self) -> list[str]:
        return [f"ip link set {p} type bridge_slave hairpin on" for p in self.on] + [
            f"ip link set {p} type bridge_slave hairpin off" for p in self.off
        ]

    def summary(self) -> str:
        return "set hairpin mode"

    def apply(self, drivers: Drivers) -> Action | None:
        failures = drivers.kernel.set_hairpin(list(self.on), list(self.off))
        if failures:
            raise KernelError("; ".join(failures))
        return SetHairpin(self.off, self.on)


# --- plans ---------------------------------------------------------------------------------------------------
def _hairpin_ports(lab: Lab, want: FirewallRecord) -> list[str]:
    ports: list[str] = []
    for p in want.ports:
        if p.host not in lab.hosts:
            continue  # (across machines: a host on another machine, published on its network's home)
        iface = lab.hosts[p.host].interface_on(p.network)
        if iface is not None and iface.host_veth and iface.host_veth not in ports:
            ports.append(iface.host_veth)
    return ports


def _pick_ports(ctx: UpContext, old: FirewallRecord, want: FirewallRecord,
                others: Mapping[str, FirewallRecord]) -> tuple[list[PublishedPort], str]:
    """Give the entries without a host port theirs (pick.py); returns the ports picked anew, and the range."""
    if not any(p.picked for p in want.ports):
        return [], ""
    from .pick import newly_picked, pick_ports

    machine = ctx.drivers.machine
    ephemeral = machine.ephemeral_ports()
    foreign = [p for rec in others.values() for p in rec.ports]
    want.ports = pick_ports(want.ports, old.ports, foreign, machine.bound_ports, ephemeral)
    return newly_picked(want.ports, old.ports), f"{ephemeral[0]}-{ephemeral[1]}"


def plan_up(ctx: UpContext) -> FeaturePlan:
    lab, drivers = ctx.lab, ctx.drivers
    old = FirewallRecord.from_json(ctx.record)
    want = desired(lab)
    others = _other_records(ctx.others)
    picked, picked_from = _pick_ports(ctx, old, want, others)
    records = {**others, lab.name: want}
    seen = Observed.from_ruleset(drivers.nft.ruleset())
    actions = _plan_forwarding(drivers, records)
    want.route_localnet = _plan_route_localnet(ctx, old, want, actions)
    if not _ruleset_up_to_date(lab.name, old, want, records, seen):
        actions.append(LoadRuleset(records, {**others, lab.name: old}, seen, tuple(picked), picked_from))
    actions += _plan_hairpin(ctx, old, want)
    want.docker_user = seen.docker_user
    want.warnings = warnings(seen, records)
    return FeaturePlan(after=actions, record=want)


def _plan_forwarding(drivers: Drivers, records: Mapping[str, FirewallRecord]) -> list[Action]:
    """ip_forward (and IPv6 forwarding where the machine has it) on while any lab needs it."""
    actions: list[Action] = []
    if any(r.needs_forwarding() for r in records.values()):
        current = drivers.sysctl.read(IP_FORWARD)
        if current != "1":
            actions.append(EnableForwarding(current))
    if any(r.needs_forwarding6() for r in records.values()) and drivers.sysctl.exists(IP6_FORWARD):
        current = drivers.sysctl.read(IP6_FORWARD)
        if current != "1":
            actions.append(EnableForwarding(current, IP6_FORWARD))
    return actions


def _ruleset_up_to_date(
    name: str, old: FirewallRecord, want: FirewallRecord, records: Mapping[str, FirewallRecord], seen: Observed
) -> bool:
    """Whether the loaded ruleset already is what ``records`` render to (else it is loaded again)."""
    if not old.same_rules(want) or seen.table_exists != want.loaded or seen.docker_user != old.docker_user:
        return False
    if not lab_chains(name, want) <= seen.chains or changed_chains(name, want, seen):  # changed by hand: reload
        return False
    # Docker's IPv6 DOCKER-USER: our accept rules there match the dual-stack networks
    if seen.docker_user6 and bool(seen.our_docker_rules6) != bool(docker_user_rules(records, DOCKER_USER6)):
        return False
    # our table gone (flushed by hand) while other labs need it
    return seen.table_exists or not any(r.loaded for n, r in records.items() if n != name)


def _plan_hairpin(ctx: UpContext, old: FirewallRecord, want: FirewallRecord) -> list[Action]:
    """Hairpin on the bridge ports of publishing hosts (again on recreated ones), off where no longer needed."""
    lab = ctx.lab
    want.hairpin = _hairpin_ports(lab, want)
    recreated_ports = {i.host_veth for h in ctx.recreated if h in lab.hosts for i in lab.hosts[h].interfaces}
    on = tuple(p for p in want.hairpin if p not in old.hairpin or p in recreated_ports)
    off = tuple(p for p in old.hairpin if p not in want.hairpin)
    return [SetHairpin(on, off)] if on or off else []


def _plan_route_localnet(
    ctx: UpContext, old: FirewallRecord, want: FirewallRecord, actions: list[Action]
) -> dict[str, str]:
    """``route_localnet=1`` on bridges with published ports (localhost publish), the value before kept."""
    sysctl = ctx.drivers.sysctl
    kept = dict(old.route_localnet)
    published = want.published_bridges()
    for bridge in published:
        key = route_localnet(bridge)
        exists = bridge not in ctx.new_bridges and sysctl.exists(key)
        current = sysctl.read(key) if exists else sysctl.read(NEW_INTERFACE_ROUTE_LOCALNET)
        if bridge not in kept or not exists:
            kept[bridge] = current
        if current != "1":
            actions.append(SetSysctl(key, "1", current))
    for bridge in [b for b in kept if b not in published]:
        key = route_localnet(bridge)
        if sysctl.exists(key) and bridge not in ctx.new_bridges and sysctl.read(key) != kept[bridge]:
            actions.append(SetSysctl(key, kept[bridge], sysctl.read(key)))
        del kept[bridge]
    return kept


def plan_down(ctx: DownContext) -> FeaturePlan:
    record = FirewallRecord.from_json(ctx.record)
    others = _other_records(ctx.others)
    actions: list[Action] = []
    seen = Observed.from_ruleset(ctx.drivers.nft.ruleset())
    if seen.table_exists or seen.our_docker_rules or seen.our_docker_rules6:  # re-render without this lab
        actions.append(LoadRuleset(others, {**others, ctx.name: record}, seen))
    for bridge, value in record.route_localnet.items():
        actions.append(SetSysctl(route_localnet(bridge), value, "1"))
    if not any(r.needs_forwarding() for r in others.values()):
        actions.append(ReleaseForwarding())
    if not any(r.needs_forwarding6() for r in others.values()):
        actions.append(ReleaseForwarding(IP6_FORWARD))
    return FeaturePlan(after=actions)


def status(lab: Lab, record: Any, drivers: Drivers) -> dict[str, Any]:
    rec = FirewallRecord.from_json(record)
    ports = [
        {"publish": p.spec, "host": p.host, "proto": p.proto, "host_ip": p.host_ip, "host_port": p.host_port,
         "to": f"{p.address}:{p.port}", "network": p.network, "picked": p.picked,
         **({"to6": f"[{p.address6}]:{p.port}"} if p.address6 else {})}
        for p in rec.ports
    ]
    return {"table": f"{FAMILY} {TABLE}", "ports": ports, "docker_user": rec.docker_user,
            "warnings": list(rec.warnings)}


def drift(lab: Lab, record: Any, drivers: Drivers) -> list[Difference]:
    """nslab's table or one of this lab's chains gone, or a chain holding other rules of the lab than those it
    was loaded with (``up`` loads the table again); forwarding or a bridge's ``route_localnet`` the lab needs
    set back by hand (``up`` sets it again)."""
    from ...difference import Difference

    rec = FirewallRecord.from_json(record)
    found = [Difference(f"firewall: sysctl {key} is {now}, the lab needs 1", "sysctl")
             for key, now in _sysctls_off(rec, drivers)]
    wanted = lab_chains(lab.name, rec)
    if not wanted:
        return found
    seen = Observed.from_ruleset(drivers.nft.ruleset())
    if not seen.table_exists:
        return [*found, Difference(f"firewall: table {FAMILY} {TABLE} is missing", "ruleset")]
    found += [Difference(f"firewall: chain {c} of table {FAMILY} {TABLE} is missing", "ruleset")
              for c in sorted(wanted - seen.chains)]
    return found + [Difference(f"firewall: chain {c} of table {FAMILY} {TABLE} has rules changed by hand", "ruleset")
                    for c in changed_chains(lab.name, rec, seen)]


def _sysctls_off(rec: FirewallRecord, drivers: Drivers) -> list[tuple[str, str]]:
    """The machine's sysctls this lab needs at 1 (forwarding, ``route_localnet`` of its publishing bridges) that
    are not, with what they are."""
    sysctl = drivers.sysctl
    keys = [IP_FORWARD] if rec.needs_forwarding() else []
    keys += [IP6_FORWARD] if rec.needs_forwarding6() else []
    keys += [route_localnet(bridge) for bridge in rec.published_bridges()]
    values = [(key, sysctl.read(key)) for key in keys if sysctl.exists(key)]
    return [(key, now) for key, now in values if now != "1"]
