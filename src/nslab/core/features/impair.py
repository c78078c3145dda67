"""Feature 'impair': what a host's interface suffers, per direction, without netem where the kernel has none.

``hosts.NAME.impair: {eth0: {loss: 5%, rate: 10mbit, delay: 20ms, jitter: 5ms, direction: both}}`` in the lab
file, or ``nslab impair LAB/HOST[:IF] ...`` / ``lab.impair(...)`` at run time (recorded with ``source: cli`` in
the lab's state; a converge keeps them). "out" is what the host sends through the interface, "in" every packet
that arrives on it (replies to the host's own traffic included); ``both`` impairs each direction by the same
amount (a round trip meets the delay twice). The record keeps each direction's kinds apart, so impairments
compose: a second ``impair`` changes only the kinds (and directions) it names, ``--clear KINDS`` removes some.

How, with what this kernel has (no netem, matchall, gact or police):

==========  ========================================================================================
loss        nft in the host's namespace, ``table inet nslab-impair``: ``numgen random mod 1000 < N drop``
            (prerouting: in, postrouting: out)
rate        a root ``tbf`` qdisc on the egress of each end: the host's interface (out) and its peer — the
            machine-side veth of a network, the other host's end of a link (in)
delay       netem where the kernel has it (root ``netem delay D J [rate R]`` instead of tbf); otherwise
jitter      NFQUEUE rules (iptables-nft, mangle PREROUTING/POSTROUTING) and the lab's delayer
reorder     (daemons/delayer.py, one process per lab) holds each packet for delay ± jitter, ``reorder`` percent
            of them not at all. Inbound: a packet's receive timestamp is taken when the veth hands it over,
            before the delayer holds it, and ping reads that stamp; so the interface also gets a tc eBPF filter
            that clears it (drivers/tc.py), and the socket stamps the packet after the delay
duplicate   netem only: without it, one line says the kernel lacks it
corrupt
==========  ========================================================================================

``--for DURATION`` records when the kinds it set clear themselves; the delayer is the lab's timer (it runs
:func:`nslab.core.faults.expire` then). Every rule carries the comment ``nslab:<lab>:impair:<host>:<if>``.
Everything lives in the host's namespace or on the veth pair, so ``down`` (which deletes them) leaves nothing;
it stops the delayer first. Nothing touches the machine's own interfaces.

Replaces: ``ip netns exec NS nft -f -``, ``tc qdisc replace dev IF root tbf rate R burst B latency L``,
``tc filter add dev IF ingress bpf da ...``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...drivers.tc import NETEM, NFQUEUE, STAMP_FILTER
from ...errors import Problem
from ...model import Impairment
from ...paths import netns_path
from ...values import Value, field
from ..plan import Action
from . import DownContext, FeaturePlan, UpContext, ValidateContext
from .partitions import HostTable

if TYPE_CHECKING:
    from ...drivers import Drivers
    from ...model import Host, Lab
    from ..spec import HostSpec, ImpairSpec

KEY = "impair"
STATUS_KEY = "faults"
TABLE = "inet nslab-impair"
#: What an interface can suffer, in each direction: loss, duplicate, reorder and corrupt in percent, rate in
#: bit/s, delay and jitter in ms.
KINDS = ("loss", "rate", "delay", "jitter", "duplicate", "reorder", "corrupt")
NETEM_ONLY = ("duplicate", "corrupt")  # nothing else here can copy or damage a packet
DIRECTIONS = {"both": ("in", "out"), "in": ("in",), "out": ("out",)}
Kinds = dict[str, float]  # kind -> amount, only the kinds in force
#: What one interface suffers: {"in": Kinds, "out": Kinds, "source": "file" or "cli", "until": {"in:delay": t}}
#: ("until": when a kind set with ``--for`` clears itself, seconds since the epoch)
Entry = dict[str, Any]
Qdiscs = dict[tuple[str | None, str], str]  # (namespace or None for the machine, device) -> qdisc arguments
Queue = tuple[str, int, float, float, float]  # (netns path, queue, delay ms, jitter ms, reorder %)


def _upgraded(e: Entry) -> Entry:
    """An entry as recorded before impairments had a side per direction ({loss, ..., direction, source})."""
    if "direction" not in e:
        return e
    kinds = {k: e[k] for k in KINDS if e.get(k)}
    return {**{d: dict(kinds) if d in DIRECTIONS[e["direction"]] else {} for d in ("in", "out")},
            "source": e.get("source", "file")}


class ImpairRecord(Value):
    hosts: dict[str, dict[str, Entry]] = field(default_factory=dict)  # host -> interface -> entry

    def to_json(self) -> dict[str, Any]:
        return {"hosts": self.hosts}

    @classmethod
    def from_json(cls, data: Any) -> ImpairRecord:
        hosts = data.get("hosts") if isinstance(data, dict) else None
        return cls({h: {i: _upgraded(e) for i, e in ifs.items()} for h, ifs in (hosts or {}).items() if ifs})

    def entries(self) -> list[tuple[str, str, Entry]]:
        return [(h, i, e) for h, ifs in sorted(self.hosts.items()) for i, e in sorted(ifs.items())]

    def expiry(self) -> float:
        """When the first kind set with ``--for`` clears itself (0: none)."""
        return min((t for _, _, e in self.entries() for t in e.get("until", {}).values()), default=0.0)


def entry(impairment: Impairment, source: str) -> Entry:
    """An impairment as recorded (``source``: "file" or "cli")."""
    kinds = {k: float(getattr(impairment, k)) for k in KINDS if getattr(impairment, k)}
    sides = DIRECTIONS[impairment.direction]
    return {"in": dict(kinds) if "in" in sides else {}, "out": dict(kinds) if "out" in sides else {},
            "source": source}


def _delays(kinds: Kinds) -> bool:
    return bool(kinds.get("delay") or kinds.get("jitter"))


# --- resolve and validation ----------------------------------------------------------------------------
def impairment(interface: str, settings: ImpairSpec) -> Impairment:
    """One ``impair:`` entry (or ``nslab impair``'s settings, checked by the same schema) as the model holds it."""
    return Impairment(interface, settings.loss, settings.rate, settings.delay, settings.jitter, settings.direction,
                      settings.duplicate, settings.reorder, settings.corrupt)


def resolve(host: HostSpec) -> tuple[Impairment, ...]:
    """The host's ``impair:`` entries in file order (validate checks their interfaces)."""
    return tuple(impairment(ifname, settings) for ifname, settings in host.impair.items())


def validate(ctx: ValidateContext) -> list[Problem]:
    from ...errors import field_path

    problems = []
    for host in ctx.lab.hosts.values():
        name = host.name
        for written in host.impair:
            ifname = written.interface
            path = ("hosts", name, "impair", ifname)
            if ifname not in {i.name for i in host.interfaces}:
                known = ", ".join(i.name for i in host.interfaces) or "none"
                problems.append(Problem(f"host '{name}' has no interface '{ifname}' (it has: {known})",
                                        field_path(path), ctx.file, ctx.source.line(path)))
            else:
                kinds = {k: float(getattr(written, k)) for k in KINDS if getattr(written, k)}
                found = conflicts(kinds) + (support(kinds, ctx.drivers) if ctx.drivers is not None else [])
                problems += [Problem(p, field_path(path), ctx.file, ctx.source.line(path)) for p in found]
    return problems


def conflicts(kinds: Kinds) -> list[str]:
    """What does not go together in ``kinds`` (one direction of one interface)."""
    if kinds.get("reorder") and not kinds.get("delay"):
        return ["reorder needs a delay: it sends that share of the packets at once, the rest after the delay"]
    return []


def support(kinds: Kinds, drivers: Drivers) -> list[str]:
    """What this machine cannot do of ``kinds`` (one direction of one interface), one line each."""
    problems = []
    if _delays(kinds) and not (drivers.shaper.has(NETEM) or drivers.shaper.has(NFQUEUE)):
        problems.append("delay and jitter need netem (kernel: CONFIG_NET_SCH_NETEM) or NFQUEUE (kernel: "
                        "CONFIG_NETFILTER_XT_TARGET_NFQUEUE, and iptables-nft-restore: apt-get install iptables); "
                        "this machine has neither")
    lacking = [k for k in NETEM_ONLY if kinds.get(k)]
    if lacking and not drivers.shaper.has(NETEM):
        verb = "needs" if len(lacking) == 1 else "need"
        problems.append(f"{' and '.join(lacking)} {verb} netem (kernel: CONFIG_NET_SCH_NETEM), which this kernel "
                        "lacks (loss, rate, delay, jitter and reorder work without it)")
    return problems


# --- rendering -----------------------------------------------------------------------------------------
def queue_number(host: Host, ifname: str, direction: str) -> int:
    index = next(n for n, i in enumerate(host.interfaces) if i.name == ifname)
    return 2 * index + (1 if direction == "in" else 0)


def render_queues(lab: str, host: Host, ifs: dict[str, Entry], netem: bool) -> tuple[tuple[str, str, int, str], ...]:
    """The host's NFQUEUE rules for the delayer: (direction, interface, queue, comment)."""
    if netem:
        return ()
    return tuple((d, ifname, queue_number(host, ifname, d), f"nslab:{lab}:impair:{host.name}:{ifname}")
                 for ifname, e in sorted(ifs.items()) for d in ("in", "out") if _delays(e[d]))


def render_stamps(ifs: dict[str, Entry], netem: bool) -> frozenset[str]:
    """The interfaces whose inbound packets the delayer holds: their receive timestamps are cleared (tc.py)."""
    return frozenset() if netem else frozenset(i for i, e in ifs.items() if _delays(e["in"]))


def render_table(lab: str, host: Host, ifs: dict[str, Entry]) -> str:
    """The host's whole ``inet nslab-impair`` table ("" when nothing is impaired in nft)."""
    rules: dict[str, list[str]] = {"in": [], "out": []}
    for ifname, e in sorted(ifs.items()):
        comment = f'comment "nslab:{lab}:impair:{host.name}:{ifname}"'
        for direction in ("in", "out"):
            loss = e[direction].get("loss")
            if loss:
                match = f'{"iifname" if direction == "in" else "oifname"} "{ifname}"'
                chance = "" if loss >= 100 else f"numgen random mod 1000 < {round(loss * 10)} "
                rules[direction].append(f"{match} {chance}drop {comment}")
    if not rules["in"] and not rules["out"]:
        return ""
    hooks = {"in": "prerouting priority -350", "out": "postrouting priority 350"}
    chains = [f"  chain {d} {{\n    type filter hook {hooks[d]}; policy accept;\n"
              + "".join(f"    {r}\n" for r in rules[d]) + "  }\n" for d in ("in", "out") if rules[d]]
    return f"table {TABLE} {{\n" + "".join(chains) + "}\n"


def _netem(kinds: Kinds) -> str:
    args = ["netem"]
    if _delays(kinds):
        args.append(f"delay {kinds.get('delay', 0):g}ms" + (f" {kinds['jitter']:g}ms" if kinds.get("jitter") else ""))
    args += [f"{k} {kinds[k]:g}%" for k in ("reorder", "duplicate", "corrupt") if kinds.get(k)]
    if kinds.get("rate"):
        args.append(f"rate {int(kinds['rate'])}bit")
    return " ".join(args)


def _qdisc(kinds: Kinds, netem: bool) -> str:
    rate = int(kinds.get("rate", 0))
    if netem and any(kinds.get(k) for k in ("delay", "jitter", *NETEM_ONLY)):
        return _netem(kinds)
    if rate:
        burst = max(rate // 800, 3200)  # 10 ms of traffic, at least two full frames
        return f"tbf rate {rate}bit burst {burst} latency 100ms"
    return ""


def render_qdiscs(lab: Lab, host: Host, ifs: dict[str, Entry], netem: bool) -> Qdiscs:
    """The root qdisc of each end the host's impairments shape ("" for none): the host's own end for what it
    sends, the other end (whose egress it is) for what it receives."""
    out: Qdiscs = {}
    for ifname, e in ifs.items():
        if e["out"]:
            out[(host.namespace, ifname)] = _qdisc(e["out"], netem)
        if e["in"]:
            out[peer(lab, host, ifname)] = _qdisc(e["in"], netem)
    return out


def peer(lab: Lab, host: Host, ifname: str) -> tuple[str | None, str]:
    """The other end of the host's interface: (namespace or None for the machine, device)."""
    iface = next(i for i in host.interfaces if i.name == ifname)
    if iface.link is None:
        assert iface.host_veth is not None
        return None, iface.host_veth
    link = lab.links[iface.link]
    other = link.b if link.a == host.name else link.a
    if other not in lab.hosts:  # a link to a host on another machine (core/kinds/vxlan.py): its end is there
        from ...errors import TargetError

        raise TargetError(f"{host.name}:{ifname} is a link to {other} on machine {lab.remote[other].machine}: "
                          "impair what it sends (out) here, or what it receives on that machine")
    return lab.hosts[other].namespace, link.b_ifname if link.a == host.name else link.a_ifname


# --- actions -------------------------------------------------------------------------------------------
class SetQdiscs(Action):
    """Root qdiscs of veth ends: ``new`` replaces ``old`` (``""``: the default qdisc again)."""

    new: tuple[tuple[str | None, str, str], ...]  # (namespace, device, qdisc)
    old: tuple[tuple[str | None, str, str], ...]

    def _lines(self) -> dict[str | None, list[str]]:
        by_ns: dict[str | None, list[str]] = {}
        for (ns, dev, qdisc), (_, _, before) in zip(self.new, self.old, strict=True):
            if qdisc != before:
                line = f"qdisc replace dev {dev} root {qdisc}" if qdisc else f"qdisc del dev {dev} root"
                by_ns.setdefault(ns, []).append(line)
        return by_ns

    def commands(self) -> list[str]:
        return [f"tc{f' -n {ns}' if ns else ''} {line}" for ns, lines in self._lines().items() for line in lines]

    def summary(self) -> str:
        return f"shape {len(self.new)} interface end(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        for ns, lines in self._lines().items():
            drivers.shaper.tc(ns, lines)
        return SetQdiscs(self.old, self.new)


class SetQueues(Action):
    """The NFQUEUE rules of one host (iptables-nft: the xtables target is what this kernel has)."""

    namespace: str
    rules: tuple[tuple[str, str, int, str], ...]  # (direction, interface, queue, comment)
    old: tuple[tuple[str, str, int, str], ...]
    ipv6: bool = False  # a dual-stack host: the same rules with ip6tables (its IPv6 packets delayed too)

    def commands(self) -> list[str]:
        tools = ("iptables", "ip6tables") if self.ipv6 else ("iptables",)
        return [line for tool in tools for line in self._commands(tool)]

    def _commands(self, tool: str) -> list[str]:
        if not self.rules:
            return [f"ip netns exec {self.namespace} {tool} -t mangle -D PREROUTING -j NSLAB-IN",
                    f"ip netns exec {self.namespace} {tool} -t mangle -D POSTROUTING -j NSLAB-OUT",
                    f"ip netns exec {self.namespace} {tool} -t mangle -X NSLAB-IN",
                    f"ip netns exec {self.namespace} {tool} -t mangle -X NSLAB-OUT"]
        lines = ["*mangle", ":NSLAB-IN - [0:0]", ":NSLAB-OUT - [0:0]",
                 "-I PREROUTING -j NSLAB-IN", "-I POSTROUTING -j NSLAB-OUT"]
        for direction, ifname, queue, comment in self.rules:
            chain, match = ("NSLAB-IN", "-i") if direction == "in" else ("NSLAB-OUT", "-o")
            lines.append(f'-A {chain} {match} {ifname} -m comment --comment "{comment}" -j NFQUEUE --queue-num {queue}')
        body = "\n".join([*lines, "COMMIT"])
        return [f"ip netns exec {self.namespace} {tool}-nft-restore --noflush <<'EOF'\n{body}\nEOF"]

    def summary(self) -> str:
        return f"queue {len(self.rules)} direction(s) to the delayer"

    def apply(self, drivers: Drivers) -> Action | None:
        drivers.shaper.queues(self.namespace, list(self.rules), self.ipv6)
        return SetQueues(self.namespace, self.old, self.rules, self.ipv6)


class StampOnDelivery(Action):
    """Receive timestamps cleared on ``devices`` of one host (``on``), or no longer (drivers/tc.py): without it a
    packet the delayer held keeps the stamp of its arrival, and ping would not see the inbound delay."""

    namespace: str
    devices: tuple[str, ...]
    on: bool

    def commands(self) -> list[str]:
        if not self.on:
            return [f"tc -n {self.namespace} qdisc del dev {dev} clsact" for dev in self.devices]
        return [line for dev in self.devices for line in (
            f"tc -n {self.namespace} qdisc replace dev {dev} clsact",
            f"tc -n {self.namespace} filter replace dev {dev} ingress pref 1 handle 1 bpf direct-action "
            f"# {STAMP_FILTER}: skb->tstamp = 0, so the socket stamps the packet after the delay")]

    def summary(self) -> str:
        return f"{'clear' if self.on else 'keep'} receive timestamps on {len(self.devices)} interface(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        drivers.shaper.stamp_on_delivery(self.namespace, list(self.devices), self.on)
        return StampOnDelivery(self.namespace, self.devices, not self.on)


class SetDelayer(Action):
    """The lab's delayer holds ``queues`` and, at ``expire``, clears what ``impair --for`` set (restarted when
    either changes; stopped when there is neither). The one place the delayer is started and stopped."""

    lab: str
    queues: tuple[Queue, ...]
    old: tuple[Queue, ...]
    expire: float = 0.0  # seconds since the epoch (0: nothing to clear)
    old_expire: float = 0.0

    def commands(self) -> list[str]:
        if not self.queues and not self.expire:
            return [f"# stop nslab's packet delayer of lab {self.lab}"]
        held = ", ".join(f"{ns}#{q}: {d:g}±{j:g} ms" + (f" reorder {r:g}%" if r else "")
                         for ns, q, d, j, r in self.queues) or "nothing"
        timer = f"; at {time.strftime('%H:%M:%S', time.localtime(self.expire))} it clears what --for set" \
            if self.expire else ""
        return [f"# nslab's packet delayer (python -m nslab.daemons.delayer {self.lab}) holds NFQUEUE {held}{timer}"]

    def summary(self) -> str:
        return "restart the packet delayer" if self.queues or self.expire else "stop the packet delayer"

    def apply(self, drivers: Drivers) -> Action | None:
        from ...errors import KernelError

        failures = drivers.shaper.stop_delayer(self.lab) if self.old or self.old_expire else []
        if failures:
            raise KernelError("; ".join(failures))
        if self.queues or self.expire:
            drivers.shaper.start_delayer(self.lab, {"expire": self.expire, "queues": [
                {"netns": ns, "queue": q, "delay": d, "jitter": j, "reorder": r} for ns, q, d, j, r in self.queues]})
        return SetDelayer(self.lab, self.old, self.queues, self.old_expire, self.expire)

    def teardown(self, drivers: Drivers) -> list[str]:
        return drivers.shaper.stop_delayer(self.lab)


# --- planning ------------------------------------------------------------------------------------------
def desired(lab: Lab, old: ImpairRecord) -> ImpairRecord:
    """The lab file's impairments, plus those set at run time on interfaces the file leaves alone."""
    hosts: dict[str, dict[str, Entry]] = {}
    for each in lab.hosts.values():
        for written in each.impair:
            if written.active():
                hosts.setdefault(each.name, {})[written.interface] = entry(written, "file")
    for name, ifname, e in old.entries():
        host = lab.hosts.get(name)
        if e.get("source") == "cli" and host and any(i.name == ifname for i in host.interfaces):
            hosts.setdefault(name, {}).setdefault(ifname, e)
    return ImpairRecord(hosts)


def delayer_queues(lab: Lab, record: ImpairRecord, netem: bool) -> tuple[Queue, ...]:
    if netem:
        return ()
    return tuple(
        (netns_path(lab.hosts[h].namespace), queue_number(lab.hosts[h], i, d), float(e[d].get("delay", 0)),
         float(e[d].get("jitter", 0)), float(e[d].get("reorder", 0)))
        for h, i, e in record.entries() for d in ("in", "out") if _delays(e[d])
    )


def plan_change(lab: Lab, old: ImpairRecord, new: ImpairRecord, drivers: Drivers,
                fresh: frozenset[str] = frozenset()) -> list[Action]:
    """Actions from ``old`` to ``new``; hosts in ``fresh`` (just (re)created) start with nothing."""
    # (only a delay asks the kernel: that reads /proc/config.gz and looks for iptables, on every up)
    delays = any(_delays(e[d]) for record in (old, new) for _, _, e in record.entries() for d in ("in", "out"))
    netem = delays and drivers.shaper.has(NETEM)
    actions: list[Action] = []
    for name in sorted(set(old.hosts) | set(new.hosts)):
        host = lab.hosts.get(name)
        if host is not None:  # (else gone with its namespace)
            before = {} if name in fresh else old.hosts.get(name, {})
            actions += _host_change(lab, host, before, new.hosts.get(name, {}), netem)
    delayer = _delayer_change(lab, old, new, netem, drivers, fresh)
    if delayer is not None:
        actions = [delayer, *actions] if delayer.queues or delayer.expire else [*actions, delayer]
    return actions


def _delayer_change(lab: Lab, old: ImpairRecord, new: ImpairRecord, netem: bool, drivers: Drivers,
                    fresh: frozenset[str] = frozenset()) -> SetDelayer | None:
    """The delayer (re)started with what ``new`` holds back and times, or stopped; None: it stays as it is.
    A host in ``fresh`` has a new namespace: the queues the delayer holds there are gone, so it restarts."""
    queues, old_queues = delayer_queues(lab, new, netem), delayer_queues(lab, old, netem)
    expire, old_expire = new.expiry(), old.expiry()
    running = (old_queues or old_expire) and drivers.shaper.delayer_running(lab.name)
    remade = {netns_path(lab.hosts[h].namespace) for h in fresh if h in lab.hosts}
    if (queues, expire) == (old_queues, old_expire) and (running or not (queues or expire)) \
            and not remade & {q[0] for q in queues}:
        return None
    return SetDelayer(lab.name, queues, old_queues if running else (), expire, old_expire if running else 0.0)


def _host_change(lab: Lab, host: Host, before: dict[str, Entry], after: dict[str, Entry],
                 netem: bool) -> list[Action]:
    """The actions that take one host's impairments from ``before`` to ``after`` (by interface): its nft
    table, its NFQUEUE rules (for the delayer), its receive timestamps and the qdiscs on its veth ends."""
    if before == after:
        return []
    actions: list[Action] = []
    table, old_table = render_table(lab.name, host, after), render_table(lab.name, host, before)
    if table != old_table:
        actions.append(HostTable(host.namespace, TABLE, table, old_table, f"impairments of {host.name}"))
    queued, old_queued = render_queues(lab.name, host, after, netem), render_queues(lab.name, host, before, netem)
    if queued != old_queued:
        dual = any(i.address6 for i in host.interfaces)
        actions.append(SetQueues(host.namespace, queued, old_queued, dual))
    stamps, old_stamps = render_stamps(after, netem), render_stamps(before, netem)
    actions += [StampOnDelivery(host.namespace, tuple(sorted(devices)), on)
                for devices, on in ((stamps - old_stamps, True), (old_stamps - stamps, False)) if devices]
    q_new, q_old = render_qdiscs(lab, host, after, netem), render_qdiscs(lab, host, before, netem)
    ends = sorted(set(q_new) | set(q_old), key=str)
    if any(q_new.get(k, "") != q_old.get(k, "") for k in ends):
        actions.append(SetQdiscs(tuple((ns, dev, q_new.get((ns, dev), "")) for ns, dev in ends),
                                 tuple((ns, dev, q_old.get((ns, dev), "")) for ns, dev in ends)))
    return actions


def plan_up(ctx: UpContext) -> FeaturePlan:
    old = ImpairRecord.from_json(ctx.record)
    new = desired(ctx.lab, old)
    return FeaturePlan(after=plan_change(ctx.lab, old, new, ctx.drivers, ctx.recreated), record=new)


def plan_down(ctx: DownContext) -> FeaturePlan:
    # Tables and qdiscs go with the namespaces and veths; the delayer is a process of its own.
    if ctx.drivers.shaper.delayer_running(ctx.name):
        return FeaturePlan(before=[SetDelayer(ctx.name, (), ())])  # its teardown stops it
    return FeaturePlan()


def rows(record: ImpairRecord) -> list[dict[str, Any]]:
    """What ``status`` lists: one row per interface and direction ("both" when both suffer the same)."""
    out = []
    for h, i, e in record.entries():
        sides = [("both", e["in"])] if e["in"] == e["out"] else [(d, e[d]) for d in ("in", "out") if e[d]]
        for direction, kinds in sides:
            row = {"host": h, "interface": i, "direction": direction, "source": e.get("source", "file"),
                   **{k: kinds.get(k, 0) for k in KINDS}}
            until = [t for key, t in e.get("until", {}).items() if direction in ("both", key.partition(":")[0])]
            if until:
                row["until"] = min(until)
            out.append(row)
    return out


def status(lab: Lab, record: Any, drivers: Drivers) -> dict[str, Any]:
    parsed = ImpairRecord.from_json(record)
    doc: dict[str, Any] = {"impairments": rows(parsed)}
    if any(_delays(e[d]) for _, _, e in parsed.entries() for d in ("in", "out")) and not drivers.shaper.has(NETEM):
        doc["delayer"] = {"running": drivers.shaper.delayer_running(lab.name)}
    return doc


def describe(row: dict[str, Any]) -> str:
    """``loss 30% rate 10mbit delay 50±5ms (both)`` (one row of :func:`rows`)."""
    parts = []
    if row.get("loss"):
        parts.append(f"loss {row['loss']:g}%")
    if row.get("rate"):
        parts.append(f"rate {row['rate'] / 1e6:g}mbit")
    if row.get("delay") or row.get("jitter"):
        parts.append(f"delay {row['delay']:g}ms" + (f"±{row['jitter']:g}ms" if row.get("jitter") else ""))
    parts += [f"{k} {row[k]:g}%" for k in ("reorder", "duplicate", "corrupt") if row.get(k)]
    left = f", {max(0, round(row['until'] - time.time()))}s left" if row.get("until") else ""
    return " ".join(parts) + f" ({row['direction']}{left})"
