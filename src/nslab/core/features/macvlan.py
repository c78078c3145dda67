"""Feature 'macvlan' (see features/__init__.py): a host's macvlan interfaces on the machine's interfaces.

``hosts: {pc: {macvlan: [{parent: eth1, mode: bridge, address: 192.0.2.60/24}]}}`` (one entry may be written
without the list): inside the host, ``mv0``, ``mv1``, ... in file order, each a macvlan of the machine's ``parent``
with its own MAC (derived from the lab, host and name, as every interface nslab makes), its address if one is
given, up. Made with the netlink driver's one link primitive (``Kernel.add_links``, a ``NewLink`` of kind
``macvlan`` made beside its parent on the machine, ``lower`` = the parent, IFLA_MACVLAN_MODE as its data) and moved
into the host's namespace by the same request. Modes: ``bridge`` (the default: the macvlans of one parent reach
each other inside the machine), ``private``, ``vepa`` (through the switch port's hairpin), ``passthru`` (one per
parent, which it takes over). As in the kernel, a macvlan never reaches its parent itself (nor the machine's
address on it) in any mode: the machine sees the host only through another macvlan or a switch.

They go with the host's namespace; a host made again gets them again; an entry changed is made again; a
macvlan missing inside its host is drift that ``up`` repairs. Validation (exit 2): the parent exists on the
machine, is not a loopback nor a port of a bridge (an ``external:`` interface of this lab is one while it is up),
at most one ``passthru`` per parent, a VLAN parent refused when the kernel has no 802.1q.
Routes through a macvlan's address (``routes:``, ``default:``) are not accepted yet (resolve checks gateways
against the hosts' networks and links).

Record: ``{"hosts": {host: [mv0, ...]}}``. Replaces: ``ip link add mv0 link eth1 type macvlan mode bridge netns
NS``, ``ip -n NS addr add``, ``ip -n NS link set mv0 up``.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from ...errors import Problem, field_path
from ...model import Macvlan
from ...naming import LINK_GROUP, mac_address
from ...values import Value, field
from ..difference import Difference
from ..plan import Action, raise_on
from . import DownContext, FeaturePlan, UpContext, ValidateContext

if TYPE_CHECKING:
    from ...drivers import Drivers
    from ...drivers.rtnl import NewLink
    from ...model import Host, Lab
    from ..spec import HostSpec

KEY = "macvlan"
STATUS_KEY = "macvlan"
KIND = "macvlan"
#: IFLA_MACVLAN_MODE and the kernel's mode numbers (linux/if_link.h)
IFLA_MACVLAN_MODE = 1
MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}


def resolve(lab: str, host_name: str, host: HostSpec) -> tuple[Macvlan, ...]:
    """The host's ``macvlan:`` entries: ``mvN`` in file order, each with its derived MAC."""
    return tuple(Macvlan(name=f"mv{n}", parent=m.parent, mode=m.mode, address=m.address,
                         mac=mac_address(lab, "host", host_name, f"mv{n}")) for n, m in enumerate(host.macvlan))


class MacvlanRecord(Value):
    hosts: dict[str, list[str]] = field(default_factory=dict)  # host -> its macvlans' names

    def to_json(self) -> dict[str, Any]:
        return {"hosts": {h: list(names) for h, names in self.hosts.items()}}


# --- actions -------------------------------------------------------------------------------------------------
Entry = tuple[str, Macvlan]  # (the host's namespace, its macvlan)


def new_link(namespace: str, m: Macvlan) -> NewLink:
    """What the netlink driver makes: the macvlan beside its parent on the machine, moved into ``namespace``."""
    from ...drivers.rtnl import LinkEnd, NewLink, attr_u32

    end = LinkEnd(namespace, m.name, (m.address,) if m.address else (), mac=m.mac, group=LINK_GROUP)
    return NewLink(KIND, end, attr_u32(IFLA_MACVLAN_MODE, MODES[m.mode]), made_in="", lower=m.parent)


class AddMacvlans(Action):
    entries: tuple[Entry, ...]

    def commands(self) -> list[str]:
        out = []
        for ns, m in self.entries:
            out.append(f"ip link add {m.name} link {m.parent} address {m.mac} group {LINK_GROUP} type macvlan "
                       f"mode {m.mode} netns {ns}")
            out += [f"ip -n {ns} addr add {m.address} brd + dev {m.name}"] if m.address else []
            out.append(f"ip -n {ns} link set {m.name} up")
        return out

    def summary(self) -> str:
        return f"add {len(self.entries)} macvlan(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        undo = RemoveMacvlans(self.entries)
        try:
            drivers.kernel.add_links([new_link(ns, m) for ns, m in self.entries])
        except BaseException:
            drivers.kernel.remove_link_ends(undo.ends())
            raise
        return undo


class RemoveMacvlans(Action):
    entries: tuple[Entry, ...]

    def ends(self) -> list[tuple[str, str]]:
        return [(ns, m.name) for ns, m in self.entries]

    def commands(self) -> list[str]:
        return [f"ip -n {ns} link del {name}" for ns, name in self.ends()]

    def summary(self) -> str:
        return f"remove {len(self.entries)} macvlan(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        raise_on(drivers.kernel.remove_link_ends(self.ends()))
        return AddMacvlans(self.entries)


# --- validate ------------------------------------------------------------------------------------------------
def validate(ctx: ValidateContext) -> list[Problem]:
    problems: list[Problem] = []
    borrowed = {n.external for n in ctx.lab.networks.values() if n.external}
    passthru = Counter(m.parent for h in ctx.lab.hosts.values() for m in h.macvlans if m.mode == "passthru")
    for h in ctx.lab.hosts.values():
        for n, m in enumerate(h.macvlans):
            path = ("hosts", h.name, "macvlan", n)
            for text in _problems(ctx, m, borrowed, passthru[m.parent]):
                problems.append(Problem(text, field_path(path), ctx.file, ctx.source.line(path)))
    return problems


def _problems(ctx: ValidateContext, m: Macvlan, borrowed: set[str], passthru: int) -> list[str]:
    out = []
    if passthru > 1 and m.mode == "passthru":
        out.append(f"{m.parent} has {passthru} passthru macvlans: a passthru macvlan takes its parent alone")
    if m.parent in borrowed:
        out.append(f"{m.parent} is an external interface of this lab (a bridge port while it is up): put the host "
                   "on that network instead")
    if ctx.drivers is None:
        return out
    parent = ctx.drivers.nics.interface(m.parent)
    if parent is None:
        vlan = "." in m.parent and not ctx.drivers.nics.has_vlan()
        out.append(f"{m.parent}: this kernel has no 802.1q (VLAN) support: VLAN sub-interfaces cannot be used"
                   if vlan else f"the machine has no interface {m.parent}")
    elif parent.loopback:
        out.append(f"{m.parent} is the loopback interface")
    elif parent.master and m.parent not in borrowed:
        out.append(f"{m.parent} is a port of {parent.master}: a macvlan needs an interface of its own")
    return out


# --- up, down ------------------------------------------------------------------------------------------------
def plan_up(ctx: UpContext) -> FeaturePlan:
    """Each host's macvlans: all of them on a host made in this run, the new or changed ones (the old made again)
    and those missing inside their host otherwise."""
    removed: list[Entry] = []
    added: list[Entry] = []
    for h in ctx.lab.hosts.values():
        before = ctx.recorded.hosts.get(h.name) if ctx.recorded else None
        if h.name not in ctx.not_started and (h.macvlans or (before and before.macvlans)):
            gone, new = _host_changes(h, before, ctx)
            removed += gone
            added += new
    after: list[Action] = ([RemoveMacvlans(tuple(removed))] if removed else [])
    record = MacvlanRecord({h.name: [m.name for m in h.macvlans] for h in ctx.lab.hosts.values() if h.macvlans})
    return FeaturePlan(after=after + ([AddMacvlans(tuple(added))] if added else []), record=record)


def _host_changes(h: Host, before: Host | None, ctx: UpContext) -> tuple[list[Entry], list[Entry]]:
    """The host's macvlans to remove (changed, present) and to add (new, changed or missing)."""
    fresh = before is None or h.name in ctx.recreated or before.namespace != h.namespace
    old = {} if fresh or before is None else {m.name: m for m in before.macvlans}
    present = set() if fresh else _present(h, ctx.drivers)
    wanted = {m.name: m for m in h.macvlans}
    added = [(h.namespace, m) for m in h.macvlans if old.get(m.name) != m or m.name not in present]
    removed = [(h.namespace, m) for name, m in old.items() if name in present and wanted.get(name) != m]
    return removed, added


def _present(h: Host, drivers: Drivers) -> set[str]:
    view = drivers.kernel.host_view(h.namespace)
    return {lk.name for lk in view[0] if lk.kind == KIND} if view is not None else set()


def plan_down(ctx: DownContext) -> FeaturePlan:
    return FeaturePlan()  # they go with the hosts' namespaces


# --- drift, status -------------------------------------------------------------------------------------------
def drift(lab: Lab, record: Any, drivers: Drivers) -> list[Difference]:
    found = []
    for h in lab.hosts.values():
        if h.macvlans:
            present = _present(h, drivers)
            found += [Difference(f"host {h.name}: macvlan {m.name} on {m.parent} is missing", KEY, host=h.name)
                      for m in h.macvlans if m.name not in present]
    return found


def status(lab: Lab, record: Any, drivers: Drivers) -> dict[str, Any]:
    hosts = {h.name: [{"name": m.name, "parent": m.parent, "mode": m.mode,
                       "address": str(m.address) if m.address else None} for m in h.macvlans]
             for h in lab.hosts.values() if h.macvlans}
    return {"hosts": hosts} if hosts else {}
