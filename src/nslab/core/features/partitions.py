"""Feature 'partitions': two hosts or networks of a lab cut from each other, both ways, until healed.

``partitions: [[web1, db], [front, back]]`` in the lab file, or ``nslab partition LAB/A B`` / ``lab.partition(a,
b)`` at run time (recorded with ``source: cli``; ``nslab heal`` / ``lab.heal()`` removes them). A side is a host
(its addresses) or a network (its subnet, so the hosts on it and its gateway).

Each host of either side gets, in its own namespace, ``table inet nslab-partition``: packets from the other
side are dropped at prerouting, packets to it at postrouting, whatever their conntrack state (so established
connections stop too, and no NAT mapping on the machine can carry them). Rules carry the comment
``nslab:<lab>:partition:<a>:<b>``. Traffic between two hosts of one network is bridged on the machine, where
``inet`` tables do not see it: that is why the drops sit in the hosts. The tables go with the namespaces on
``down``; nothing touches the machine.

Replaces: ``ip netns exec NS nft -f -`` with ``ip saddr/daddr ... drop`` rules (``ip6 saddr/daddr`` for the
IPv6 addresses of dual-stack sides).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import Problem
from ...values import Value, field
from ..plan import Action
from . import DownContext, FeaturePlan, UpContext, ValidateContext

if TYPE_CHECKING:
    from ...drivers import Drivers
    from ...model import Lab
    from ..spec import LabSpec

KEY = "partitions"
STATUS_KEY = "faults"
TABLE = "inet nslab-partition"


class PartitionsRecord(Value):
    cuts: list[list[str]] = field(default_factory=list)  # [a, b, source ("file" or "cli")(, "oneway")]

    def to_json(self) -> dict[str, Any]:
        return {"partitions": self.cuts}

    @classmethod
    def from_json(cls, data: Any) -> PartitionsRecord:
        cuts = data.get("partitions") if isinstance(data, dict) else None
        return cls([list(c) for c in cuts or []])

    def pairs(self) -> set[frozenset[str]]:
        return {frozenset(c[:2]) for c in self.cuts}


class HostTable(Action):
    """One nft table inside a host's namespace: ``text`` replaces ``old`` (``""``: no table)."""

    namespace: str
    table: str  # "inet nslab-partition"
    text: str
    old: str
    what: str

    def _buffer(self) -> str:
        return f"add table {self.table}\ndelete table {self.table}\n{self.text}"

    def commands(self) -> list[str]:
        return [f"ip netns exec {self.namespace} nft -f - <<'EOF'\n{self._buffer()}EOF"]

    def summary(self) -> str:
        return f"set the {self.what}"

    def apply(self, drivers: Drivers) -> Action | None:
        drivers.shaper.nft(self.namespace, self._buffer())
        return HostTable(self.namespace, self.table, self.old, self.text, self.what)


def side(lab: Lab, name: str) -> tuple[list[str], list[str]]:
    """The hosts of one side and the addresses (or subnet) that stand for it (across machines: this machine's
    hosts of it; a host or network elsewhere still stands for its addresses)."""
    whole = lab.whole()
    if name in whole.hosts:
        return [name] if name in lab.hosts else [], [str(i.address.ip) for i in whole.hosts[name].interfaces]
    network = whole.networks[name]
    hosts = [h.name for h in lab.hosts.values() if h.interface_on(name) is not None]
    return hosts, [str(network.subnet)]


def side6(lab: Lab, name: str) -> list[str]:
    """The IPv6 addresses (or subnet6) that stand for one side: none where it has no IPv6."""
    whole = lab.whole()
    if name in whole.hosts:
        return [str(i.address6.ip) for i in whole.hosts[name].interfaces if i.address6]
    subnet6 = whole.networks[name].subnet6
    return [str(subnet6)] if subnet6 else []


def oneway(cut: list[str]) -> bool:
    """Whether a cut drops only what its first side sends to its second."""
    return cut[3:4] == ["oneway"]


def covers(cut: list[str], a: str, b: str, one: bool) -> bool:
    """Whether ``cut`` already drops what ``a`` sends to ``b`` (and, unless ``one``, what ``b`` sends to ``a``)."""
    if not oneway(cut):
        return frozenset(cut[:2]) == {a, b}
    return one and cut[:2] == [a, b]


def _chain(hook: str, rules: list[str]) -> str:
    where = "prerouting priority -350" if hook == "in" else "postrouting priority 350"
    return (f"  chain {hook} {{\n    type filter hook {where}; policy accept;\n"
            + "".join(f"    {r}\n" for r in rules) + "  }\n")


def _drops(lab: Lab, here: str, there: str, comment: str) -> list[tuple[str, str, str]]:
    """(host, chain, rule): what the hosts of side ``here`` send to side ``there`` is dropped (in ``here``'s
    hosts, on the way out, and in ``there``'s hosts, on the way in)."""
    out = []
    for family, to, source in (("ip", side(lab, there)[1], side(lab, here)[1]),
                               ("ip6", side6(lab, there), side6(lab, here))):
        if to:
            out += [(h, "out", f"{family} daddr {{ {', '.join(to)} }} drop {comment}") for h in side(lab, here)[0]]
        if source:
            out += [(h, "in", f"{family} saddr {{ {', '.join(source)} }} drop {comment}") for h in side(lab, there)[0]]
    return out


def render(lab: Lab, cuts: list[list[str]]) -> dict[str, str]:
    """host -> its ``inet nslab-partition`` table, for every host on a side of a cut (IPv6 too where the
    sides have IPv6 addresses). A two-way cut drops, in each host of either side, what comes from the other
    side and what goes to it; a one-way cut A -> B only what A sends to B: in A's hosts on the way out, in B's
    on the way in (traffic between two hosts of one network is bridged: each end sees its own half)."""
    rules: dict[str, dict[str, list[str]]] = {}  # host -> chain ("in"/"out") -> rules
    for cut in cuts:
        a, b = cut[:2]
        comment = f'comment "nslab:{lab.name}:partition:{a}:{b}"'
        halves = [(a, b)] if oneway(cut) else [(a, b), (b, a)]
        for here, there in halves:
            for host, chain, rule in _drops(lab, here, there, comment):
                rules.setdefault(host, {}).setdefault(chain, []).append(rule)
    return {host: f"table {TABLE} {{\n" + "".join(_chain(h, chains[h]) for h in ("in", "out") if h in chains)
            + "}\n" for host, chains in rules.items()}


def cut(lab: Lab, record: Any, a: str, b: str) -> bool:
    """Whether hosts ``a`` and ``b`` are on opposite sides of a partition of ``record`` (what ``nslab check``
    expects to be blocked)."""
    for x, y, *_ in PartitionsRecord.from_json(record).cuts:
        if problems_of(lab, x, y):
            continue
        xs, ys = set(side(lab, x)[0]), set(side(lab, y)[0])
        if (a in xs and b in ys) or (a in ys and b in xs):
            return True
    return False


def problems_of(lab: Lab, a: str, b: str) -> list[str]:
    """What is wrong with cutting ``a`` from ``b`` (each a host or a network of ``lab``, on any machine)."""
    whole = lab.whole()
    out = [f"'{n}' is neither a host nor a network of lab '{lab.name}'" for n in (a, b)
           if n not in whole.hosts and n not in whole.networks]
    if a == b:
        out.append(f"a partition needs two different sides ('{a}' twice)")
    return out


def resolve(lab: LabSpec) -> tuple[tuple[str, str], ...]:
    """The lab file's ``partitions:`` (validate checks their sides)."""
    return tuple((a, b) for a, b in lab.partitions)


def validate(ctx: ValidateContext) -> list[Problem]:
    from ...errors import field_path

    problems = []
    for n, (a, b) in enumerate(ctx.lab.partitions):
        path = ("partitions", n)
        problems += [Problem(p, field_path(path), ctx.file, ctx.source.line(path))
                     for p in problems_of(ctx.lab, a, b)]
    return problems


def desired(lab: Lab, old: PartitionsRecord) -> PartitionsRecord:
    cuts = [[a, b, "file"] for a, b in lab.partitions]
    seen = {frozenset(c[:2]) for c in cuts}
    for a, b, *rest in old.cuts:
        if rest[:1] == ["cli"] and frozenset((a, b)) not in seen and not problems_of(lab, a, b):
            cuts.append([a, b, *rest])
    return PartitionsRecord(cuts)


def plan_change(lab: Lab, old: PartitionsRecord, new: PartitionsRecord,
                fresh: frozenset[str] = frozenset()) -> list[Action]:
    before, after = render(lab, old.cuts), render(lab, new.cuts)
    actions: list[Action] = []
    for host in sorted(set(before) | set(after)):
        was = "" if host in fresh else before.get(host, "")
        if host in lab.hosts and after.get(host, "") != was:
            actions.append(HostTable(lab.hosts[host].namespace, TABLE, after.get(host, ""), was,
                                     f"partitions of {host}"))
    return actions


def plan_up(ctx: UpContext) -> FeaturePlan:
    old = PartitionsRecord.from_json(ctx.record)
    new = desired(ctx.lab, old)
    return FeaturePlan(after=plan_change(ctx.lab, old, new, ctx.recreated), record=new)


def plan_down(ctx: DownContext) -> FeaturePlan:
    return FeaturePlan()  # the tables go with the hosts' namespaces


def status(lab: Lab, record: Any, drivers: Drivers) -> dict[str, Any]:
    return {"partitions": [{"a": c[0], "b": c[1], "source": c[2] if len(c) > 2 else "file", "oneway": oneway(c)}
                           for c in PartitionsRecord.from_json(record).cuts]}
