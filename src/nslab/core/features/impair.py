"""Feature 'impair': loss, rate, delay and jitter on a host's interface, per direction, without netem.

``hosts.NAME.impair: {eth0: {loss: 5%, rate: 10mbit, delay: 20ms, jitter: 5ms, direction: both}}`` in the lab
file, or ``nslab impair LAB/HOST[:IF] ...`` / ``lab.impair(...)`` at run time (recorded with ``source: cli`` in
the lab's state; a converge keeps them). "out" is what the host sends through the interface, "in" what it
receives; ``both`` impairs each direction by the same amount (a round trip meets the delay twice).

How, with what this kernel has (no netem, matchall, gact or police):

==========  ========================================================================================
loss        nft in the host's namespace, ``table inet nslab-impair``: ``numgen random mod 1000 < N drop``
            (prerouting: in, postrouting: out)
rate        a root ``tbf`` qdisc on the egress of each end: the host's interface (out) and its peer — the
            machine-side veth of a network, the other host's end of a link (in)
delay       netem where the kernel has it (root ``netem delay D J [rate R]`` instead of tbf); otherwise
jitter      ``queue num N`` in the same nft chains and nslab's delayer (nslab/delayer.py, one process per lab)
            holds each packet for delay ± jitter before it goes on
==========  ========================================================================================

Every rule carries the comment ``nslab:<lab>:impair:<host>:<if>``. Everything lives in the host's namespace
or on the veth pair, so ``down`` (which deletes them) leaves nothing; it stops the delayer first. Nothing
touches the machine's own interfaces.

Replaces: ``ip netns exec NS nft -f -``, ``tc qdisc replace dev IF root tbf rate R burst B latency L``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...drivers.tc import NETEM, NFQUEUE
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
FIELDS = ("loss", "rate", "delay", "jitter")
Entry = dict[str, Any]  # {loss, rate, delay, jitter, direction, source}: what one interface suffers
Qdiscs = dict[tuple[str | None, str], str]  # (namespace or None for the machine, device) -> qdisc arguments


class ImpairRecord(Value):
    hosts: dict[str, dict[str, Entry]] = field(default_factory=dict)  # host -> interface -> entry

    def to_json(self) -> dict[str, Any]:
        return {"hosts": self.hosts}

    @classmethod
    def from_json(cls, data: Any) -> ImpairRecord:
        hosts = data.get("hosts") if isinstance(data, dict) else None
        return cls({h: dict(ifs) for h, ifs in (hosts or {}).items() if ifs})

    def entries(self) -> list[tuple[str, str, Entry]]:
        return [(h, i, e) for h, ifs in sorted(self.hosts.items()) for i, e in sorted(ifs.items())]


def entry(impairment: Impairment, source: str) -> Entry:
    """An impairment as recorded (``source``: "file" or "cli")."""
    return {**{f: getattr(impairment, f) for f in FIELDS}, "direction": impairment.direction, "source": source}


# --- resolve and validation ----------------------------------------------------------------------------
def impairment(interface: str, settings: ImpairSpec) -> Impairment:
    """One ``impair:`` entry (or ``nslab impair``'s settings, checked by the same schema) as the model holds it."""
    return Impairment(interface, settings.loss, settings.rate, settings.delay, settings.jitter, settings.direction)


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
            elif (written.delay or written.jitter) and ctx.drivers is not None:
                problems += [Problem(p, field_path(path), ctx.file, ctx.source.line(path))
                             for p in delay_support(ctx.drivers)]
    return problems


def delay_support(drivers: Drivers) -> list[str]:
    if drivers.shaper.has(NETEM) or drivers.shaper.has(NFQUEUE):
        return []
    return ["delay and jitter need netem (kernel: CONFIG_NET_SCH_NETEM) or NFQUEUE (kernel: "
            "CONFIG_NETFILTER_XT_TARGET_NFQUEUE, and iptables-nft-restore: apt-get install iptables); "
            "this machine has neither"]


# --- rendering -----------------------------------------------------------------------------------------
def _directions(e: Entry) -> tuple[str, ...]:
    return {"both": ("in", "out"), "in": ("in",), "out": ("out",)}[e["direction"]]


def queue_number(host: Host, ifname: str, direction: str) -> int:
    index = next(n for n, i in enumerate(host.interfaces) if i.name == ifname)
    return 2 * index + (1 if direction == "in" else 0)


def render_queues(lab: str, host: Host, ifs: dict[str, Entry], netem: bool) -> tuple[tuple[str, str, int, str], ...]:
    """The host's NFQUEUE rules for the delayer: (direction, interface, queue, comment)."""
    if netem:
        return ()
    return tuple((d, ifname, queue_number(host, ifname, d), f"nslab:{lab}:impair:{host.name}:{ifname}")
                 for ifname, e in sorted(ifs.items()) if e["delay"] or e["jitter"] for d in _directions(e))


def render_table(lab: str, host: Host, ifs: dict[str, Entry]) -> str:
    """The host's whole ``inet nslab-impair`` table ("" when nothing is impaired in nft)."""
    rules: dict[str, list[str]] = {"in": [], "out": []}
    for ifname, e in sorted(ifs.items()):
        comment = f'comment "nslab:{lab}:impair:{host.name}:{ifname}"'
        for direction in _directions(e):
            match = f'{"iifname" if direction == "in" else "oifname"} "{ifname}"'
            if e["loss"]:
                chance = "" if e["loss"] >= 100 else f"numgen random mod 1000 < {round(e['loss'] * 10)} "
                rules[direction].append(f"{match} {chance}drop {comment}")
    if not rules["in"] and not rules["out"]:
        return ""
    hooks = {"in": "prerouting priority -350", "out": "postrouting priority 350"}
    chains = [f"  chain {d} {{\n    type filter hook {hooks[d]}; policy accept;\n"
              + "".join(f"    {r}\n" for r in rules[d]) + "  }\n" for d in ("in", "out") if rules[d]]
    return f"table {TABLE} {{\n" + "".join(chains) + "}\n"


def _qdisc(e: Entry, netem: bool) -> str:
    rate = e["rate"]
    if netem and (e["delay"] or e["jitter"]):
        args = f"netem delay {e['delay']:g}ms {e['jitter']:g}ms" if e["jitter"] else f"netem delay {e['delay']:g}ms"
        return args + (f" rate {rate}bit" if rate else "")
    if rate:
        burst = max(rate // 800, 3200)  # 10 ms of traffic, at least two full frames
        return f"tbf rate {rate}bit burst {burst} latency 100ms"
    return ""


def render_qdiscs(lab: Lab, host: Host, ifs: dict[str, Entry], netem: bool) -> Qdiscs:
    """The root qdisc of each end the host's impairments shape ("" for none)."""
    out: Qdiscs = {}
    for ifname, e in ifs.items():
        qdisc = _qdisc(e, netem)
        if "out" in _directions(e):
            out[(host.namespace, ifname)] = qdisc
        if "in" in _directions(e):
            out[peer(lab, host, ifname)] = qdisc
    return out


def peer(lab: Lab, host: Host, ifname: str) -> tuple[str | None, str]:
    """The other end of the host's interface: (namespace or None for the machine, device)."""
    iface = next(i for i in host.interfaces if i.name == ifname)
    if iface.link is None:
        assert iface.host_veth is not None
        return None, iface.host_veth
    link = lab.links[iface.link]
    other = link.b if link.a == host.name else link.a
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


class SetDelayer(Action):
    """The lab's delayer holds ``queues`` (restarted when they change; stopped when there are none)."""

    lab: str
    queues: tuple[tuple[str, int, float, float], ...]  # (netns path, queue, delay ms, jitter ms)
    old: tuple[tuple[str, int, float, float], ...]

    def commands(self) -> list[str]:
        if not self.queues:
            return [f"# stop nslab's packet delayer of lab {self.lab}"]
        held = ", ".join(f"{ns}#{q}: {d:g}±{j:g} ms" for ns, q, d, j in self.queues)
        return [f"# nslab's packet delayer (python -m nslab.daemons.delayer {self.lab}) holds NFQUEUE {held}"]

    def summary(self) -> str:
        return "restart the packet delayer" if self.queues else "stop the packet delayer"

    def apply(self, drivers: Drivers) -> Action | None:
        from ...errors import KernelError

        failures = drivers.shaper.stop_delayer(self.lab) if self.old else []
        if failures:
            raise KernelError("; ".join(failures))
        if self.queues:
            drivers.shaper.start_delayer(self.lab, {"queues": [
                {"netns": ns, "queue": q, "delay": d, "jitter": j} for ns, q, d, j in self.queues]})
        return SetDelayer(self.lab, self.old, self.queues)

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


def delayer_queues(lab: Lab, record: ImpairRecord, netem: bool) -> tuple[tuple[str, int, float, float], ...]:
    if netem:
        return ()
    return tuple(
        (netns_path(lab.hosts[h].namespace), queue_number(lab.hosts[h], i, d), float(e["delay"]), float(e["jitter"]))
        for h, i, e in record.entries() if e["delay"] or e["jitter"] for d in _directions(e)
    )


def plan_change(lab: Lab, old: ImpairRecord, new: ImpairRecord, drivers: Drivers,
                fresh: frozenset[str] = frozenset()) -> list[Action]:
    """Actions from ``old`` to ``new``; hosts in ``fresh`` (just (re)created) start with nothing."""
    # (only a delay asks the kernel: that reads /proc/config.gz and looks for iptables, on every up)
    delays = any(e["delay"] or e["jitter"] for record in (old, new) for _, _, e in record.entries())
    netem = delays and drivers.shaper.has(NETEM)
    queues, old_queues = delayer_queues(lab, new, netem), delayer_queues(lab, old, netem)
    running = old_queues and drivers.shaper.delayer_running(lab.name)
    actions: list[Action] = []
    for name in sorted(set(old.hosts) | set(new.hosts)):
        host = lab.hosts.get(name)
        if host is not None:  # (else gone with its namespace)
            before = {} if name in fresh else old.hosts.get(name, {})
            actions += _host_change(lab, host, before, new.hosts.get(name, {}), netem)
    if queues != old_queues or (queues and not running) or _moved(lab, queues, fresh):
        delayer = SetDelayer(lab.name, queues, old_queues if running else ())
        actions = [delayer, *actions] if queues else [*actions, delayer]
    return actions


def _moved(lab: Lab, queues: tuple[tuple[str, int, float, float], ...], fresh: frozenset[str]) -> bool:
    """Whether a host the delayer holds queues in is made again (a new network namespace: its queues are
    bound anew, the delayer restarts)."""
    moved = {netns_path(lab.hosts[h].namespace) for h in fresh if h in lab.hosts}
    return any(q[0] in moved for q in queues)


def _host_change(lab: Lab, host: Host, before: dict[str, Entry], after: dict[str, Entry],
                 netem: bool) -> list[Action]:
    """The actions that take one host's impairments from ``before`` to ``after`` (by interface): its nft
    table, its NFQUEUE rules (for the delayer) and the qdiscs on its veth ends."""
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


def status(lab: Lab, record: Any, drivers: Drivers) -> dict[str, Any]:
    entries = ImpairRecord.from_json(record).entries()
    doc: dict[str, Any] = {"impairments": [{"host": h, "interface": i, **e} for h, i, e in entries]}
    if any(e["delay"] or e["jitter"] for _, _, e in entries) and not drivers.shaper.has(NETEM):
        doc["delayer"] = {"running": drivers.shaper.delayer_running(lab.name)}
    return doc


def describe(e: Entry) -> str:
    """``loss 30% rate 10mbit delay 50±5ms (both)``."""
    parts = []
    if e["loss"]:
        parts.append(f"loss {e['loss']:g}%")
    if e["rate"]:
        parts.append(f"rate {e['rate'] / 1e6:g}mbit")
    if e["delay"] or e["jitter"]:
        parts.append(f"delay {e['delay']:g}ms" + (f"±{e['jitter']:g}ms" if e["jitter"] else ""))
    return " ".join(parts) + f" ({e['direction']})"

