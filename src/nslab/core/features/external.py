"""Feature 'external' (see features/__init__.py): a machine's interface on a lab network's bridge.

``networks: {lan: {external: eth1, subnet: 192.0.2.0/24}}``: while the lab is up, the machine's ``eth1`` is a port
of the network's bridge, so the lab's hosts on ``lan`` are on eth1's LAN at layer 2. What eth1 had moves to the
bridge, as ``ip`` users do by hand when they bridge an interface: its addresses (IPv4 and IPv6, not the link-local
one, with their flags and what is left of finite lifetimes) and its routes (IPv4 and IPv6, the default route too,
with onlink, pref, metrics and expiry; not those the kernel keeps for an address); the bridge takes eth1's MAC,
so the machine keeps its identity on the LAN. ``down`` gives all of it back to eth1 (lifetimes counted down), with
its MTU and its up/down state, and the bridge its own MAC.

Crash safety: before the first change, what eth1 had is written to the lab's directory
(``/run/nslab/LAB/external.json``, one entry per borrowed interface, with the bridge it went to): an ``up`` killed
midway, then ``down`` (or the next ``up``, which gives back first what an interrupted ``up`` borrowed, then
borrows again), restores it from there, even when the lab's state was never saved. An entry stays until its
interface is given back (a give-back that ``ip`` reports failed in part keeps it: the next ``down`` or ``gc``
tries again), so an interface borrowed twice keeps what it had before the first time. A borrow that fails is
given back at once; when that fails too, both are said, the first failure first.

Validation (before any change, exit 2, file:line): the interface exists on the machine, is not a loopback, not a
bridge, not one of nslab's (its alias or link group), not a port of another bridge, not borrowed by another lab
or by two networks of this one; has nothing that cannot be carried (multipath or nexthop-object routes through
it, its routes in another table than main, policy rules naming it, time metrics: one line naming them); a VLAN
sub-interface is refused when the kernel has no 802.1q (asked of the kernel, not assumed); an address of it in
the network's subnet must be of that subnet (``192.0.2.10/24`` for ``192.0.2.0/24``); no host of the lab may
take one of its addresses.

The network is never NAT'd (the LAN is its way out): resolve makes it ``internal``, so its hosts get no default
route from it (``default: 192.0.2.1`` on a host for the LAN's router). The bridge holds eth1's addresses, not a
gateway of its own; the subnet's first address stays out of the hosts' IPAM (often the LAN's router).

Drift: the interface not a port of its bridge (or gone) shows in ``status``; ``up`` makes it a port again.

Record: ``{"networks": {network: interface}}``. Replaces: ``ip addr del A dev eth1; ip link set eth1 master BR;
ip link set BR address MAC; ip addr add A dev BR; ip route replace R dev BR`` and back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from ... import paths
from ...drivers.nic import Nic, aged
from ...errors import Problem, field_path
from ...values import Value, field
from ..difference import Difference
from ..plan import Action
from . import DownContext, FeaturePlan, UpContext, ValidateContext

if TYPE_CHECKING:
    from ...drivers import Drivers
    from ...model import Lab

KEY = "external"
STATUS_KEY = "external"


class ExternalRecord(Value):
    networks: dict[str, str] = field(default_factory=dict)  # network -> the machine's interface it borrows

    def to_json(self) -> dict[str, Any]:
        return {"networks": dict(self.networks)}


# --- what an interface had, kept before the first change -------------------------------------------------------
def _saved_path(lab: str) -> str:
    import os

    return os.path.join(paths.lab_dir(lab), "external.json")


class Entry(NamedTuple):
    """A borrowed interface: the bridge it went to, what it had, the bridge's own MAC before it took eth1's."""

    bridge: str
    had: Nic
    bridge_mac: str = ""


def saved(lab: str, drivers: Drivers) -> dict[str, Entry]:
    """The interfaces lab ``lab`` borrowed and not given back yet: interface -> :class:`Entry`."""
    data = drivers.files.read_json(_saved_path(lab))
    if not isinstance(data, dict):
        return {}
    return {name: Entry(str(entry["bridge"]), Nic.from_json(entry["had"]), str(entry.get("bridge_mac", "")))
            for name, entry in data.items()}


def _write(lab: str, entries: dict[str, Entry], drivers: Drivers) -> None:
    if entries:
        drivers.files.write_json(_saved_path(lab), {n: {"bridge": e.bridge, "had": e.had.to_json(),
                                                        "bridge_mac": e.bridge_mac} for n, e in entries.items()})
    else:
        drivers.files.remove(_saved_path(lab))


# --- the ip lines --------------------------------------------------------------------------------------------
def _since(nic: Nic, clock: float) -> float:
    """Seconds from when ``nic`` was read to ``clock`` (:func:`time.monotonic`; 0: as read, for ``--dry-run``)."""
    return max(clock - nic.read_at, 0.0) if clock and nic.read_at else 0.0


def _adds(had: Nic, dev: str, source: Nic | None, skip: tuple[str, ...], clock: float) -> list[str]:
    """``ip addr add`` of ``had``'s addresses not in ``skip`` on ``dev``, with what is left of their lifetimes
    (counted on ``source`` when it holds the address, else on ``had``; one expired meanwhile: left out)."""
    lines = []
    for a in had.addresses:
        holder = source if source is not None and a in source.addresses else had
        words = aged(f"{a}{' nodad' if ':' in a else ' brd +'} {holder.words(a)}".strip(), _since(holder, clock))
        if a not in skip and words is not None:
            lines.append(f"ip addr add {words} dev {dev}")
    return lines


def _routes(had: Nic, dev: str, clock: float) -> list[str]:
    aged_routes = (aged(r, _since(had, clock)) for r in had.routes)
    return [f"ip route replace {r} dev {dev}" for r in aged_routes if r is not None]


def attach_lines(had: Nic, bridge: str, now: Nic | None = None, on_bridge: Nic | None = None,
                 clock: float = 0.0) -> list[str]:
    """Make ``had.name`` a port of ``bridge``, the bridge with its MAC, its addresses and routes on the bridge;
    ``now``/``on_bridge``: the interface and the bridge as they are (what is already done is left out), None: as
    in ``had``/empty; ``clock``: :func:`time.monotonic` now, to count lifetimes down (0: as read)."""
    name, left = had.name, (now or had).addresses
    there = on_bridge.addresses if on_bridge else ()
    mac = had.mac and (on_bridge is None or on_bridge.mac != had.mac)
    return ([f"ip addr del {a} dev {name}" for a in had.addresses if a in left]
            + [f"ip link set {name} master {bridge}", f"ip link set {name} up"]
            + ([f"ip link set {bridge} address {had.mac}"] if mac else [])
            + _adds(had, bridge, now, there, clock) + _routes(had, bridge, clock))


def restore_lines(had: Nic, bridge: str, now: Nic | None = None, on_bridge: Nic | None = None,
                  bridge_mac: str = "", clock: float = 0.0) -> list[str]:
    """Give ``had.name`` back what it had: off the bridge (its addresses leave the bridge, which gets its own MAC
    ``bridge_mac`` back), MTU, addresses (with what is left of their lifetimes), state, routes; ``now``,
    ``on_bridge``, ``clock`` as in :func:`attach_lines`."""
    name, there = had.name, (on_bridge.addresses if on_bridge else had.addresses)
    left = now.addresses if now else ()
    mac = bridge_mac and bridge_mac != had.mac and (on_bridge is None or on_bridge.mac == had.mac)
    return ([f"ip link set {name} nomaster"]
            + [f"ip addr del {a} dev {bridge}" for a in had.addresses if a in there]
            + ([f"ip link set {bridge} address {bridge_mac}"] if mac else [])
            + ([f"ip link set {name} mtu {had.mtu}"] if had.mtu else [])
            + _adds(had, name, on_bridge, left, clock)
            + [f"ip link set {name} {'up' if had.up else 'down'}"]
            + _routes(had, name, clock))


# --- actions -------------------------------------------------------------------------------------------------
class Borrow(Action):
    """The machine's interface ``had.name`` made a port of ``bridge`` (lab ``lab``), what it had written first."""

    lab: str
    bridge: str
    had: Nic

    def commands(self) -> list[str]:
        return attach_lines(self.had, self.bridge)

    def summary(self) -> str:
        return f"put {self.had.name} on {self.bridge}"

    def apply(self, drivers: Drivers) -> Action | None:
        import time

        from ...errors import KernelError

        entries = saved(self.lab, drivers)
        now, on_bridge = drivers.nics.interface(self.had.name), drivers.nics.interface(self.bridge)
        mac = on_bridge.mac if on_bridge is not None else ""
        # (borrowed before: what it had then, and the bridge's MAC then)
        entry = entries.get(self.had.name, Entry(self.bridge, self.had, mac))
        entries[self.had.name] = entry = Entry(self.bridge, entry.had, entry.bridge_mac)
        _write(self.lab, entries, drivers)  # durable before the first change
        undo = GiveBack(self.lab, self.bridge, entry.had, entry.bridge_mac)
        try:
            drivers.nics.change(attach_lines(entry.had, self.bridge, now, on_bridge, time.monotonic()))
        except BaseException as error:
            try:
                undo.apply(drivers)
            except Exception as second:  # (both said, the first failure first)
                raise KernelError(f"putting {self.had.name} on {self.bridge}: {error}; then giving it back: "
                                  f"{second}") from error
            raise
        return undo


class GiveBack(Action):
    """The machine's interface ``had.name`` given back what it had (as written by :class:`Borrow`)."""

    lab: str
    bridge: str
    had: Nic
    bridge_mac: str = ""

    def commands(self) -> list[str]:
        return restore_lines(self.had, self.bridge, bridge_mac=self.bridge_mac)

    def summary(self) -> str:
        return f"give {self.had.name} back"

    def apply(self, drivers: Drivers) -> Action | None:
        import time

        from ...errors import KernelError

        now = drivers.nics.interface(self.had.name)
        if now is None:  # (nothing can be given back: the entry goes, what is lost is said)
            self._forget(drivers)
            raise KernelError(f"{self.had.name} is gone from the machine: what it had ({', '.join(self.had.addresses)}"
                              f"{'; routes ' + ', '.join(self.had.routes) if self.had.routes else ''}) was not given "
                              "back")
        on_bridge = drivers.nics.interface(self.bridge) or Nic(self.bridge)  # (a bridge gone holds nothing)
        try:
            drivers.nics.change(restore_lines(self.had, self.bridge, now, on_bridge, self.bridge_mac,
                                              time.monotonic()), force=True)
        except KernelError as error:  # (given back as far as it went; the entry stays for the next down or gc)
            raise KernelError(f"giving {self.had.name} back: {error} (what it had is kept in "
                              f"{_saved_path(self.lab)}: nslab down {self.lab} tries again)") from error
        self._forget(drivers)
        return Borrow(self.lab, self.bridge, self.had)

    def _forget(self, drivers: Drivers) -> None:
        entries = saved(self.lab, drivers)
        entries.pop(self.had.name, None)
        _write(self.lab, entries, drivers)


# --- validate ------------------------------------------------------------------------------------------------
def validate(ctx: ValidateContext) -> list[Problem]:
    """The problems of each network's ``external:`` against the lab, the other labs and the machine."""
    problems: list[Problem] = []
    users: dict[str, str] = {}
    for other in ctx.others:
        for n in other.lab.networks.values():
            if n.external:
                users[n.external] = f"network '{n.name}' of lab '{other.lab.name}'"
    borrowed = saved(ctx.lab.name, ctx.drivers) if ctx.drivers is not None else {}
    for n in ctx.lab.networks.values():
        if n.external is None:
            continue
        path = ("networks", n.name, "external")

        def report(message: str, at: tuple[Any, ...] = path) -> None:
            problems.append(Problem(message, field_path(at), ctx.file, ctx.source.line(at)))

        if n.external in users:
            report(f"{n.external} is already on a lab bridge: {users[n.external]}")
        users[n.external] = f"network '{n.name}'"
        if ctx.drivers is not None:
            _check_machine(ctx, n.name, n.external, borrowed, report)
    return problems


def _check_machine(ctx: ValidateContext, network: str, name: str, borrowed: dict[str, Entry],
                   report: Any) -> None:
    assert ctx.drivers is not None
    now = ctx.drivers.nics.interface(name)
    if now is None:
        if "." in name and not ctx.drivers.nics.has_vlan():
            report(f"{name}: this kernel has no 802.1q (VLAN) support: VLAN sub-interfaces cannot be used")
        else:
            report(f"the machine has no interface {name}")
        return
    if now.kind == "vlan" and not ctx.drivers.nics.has_vlan():  # (cannot be, but a kernel may lose the module)
        report(f"{name}: this kernel has no 802.1q (VLAN) support: VLAN sub-interfaces cannot be used")
    mine = name in borrowed and now.master == borrowed[name][0]  # (on the bridge this lab put it on)
    had = borrowed[name][1] if name in borrowed else now
    kind = _kind_problem(now, mine)
    if kind:
        report(kind)
    if had.unsafe:
        report(f"{name} has what cannot move to a bridge as it is: {'; '.join(had.unsafe)}: remove it first, or "
               "give another interface")
    for address in had.addresses:
        _check_address(ctx, network, address, report)


def _kind_problem(now: Nic, mine: bool) -> str | None:
    """Why interface ``now`` cannot be borrowed for what it is (``mine``: a port of this lab's bridge)."""
    name = now.name
    if now.loopback:
        return f"{name} is the loopback interface"
    if now.kind == "bridge":
        return f"{name} is a bridge: give one of its ports, or the interface it stands on"
    if now.nslab:
        return f"{name} is one of nslab's own links (a lab's bridge or host link)"
    if now.master and not mine:
        return f"{name} is a port of {now.master}: take it off first (ip link set {name} nomaster)"
    return None


def _check_address(ctx: ValidateContext, network: str, address: str, report: Any) -> None:
    import ipaddress

    n = ctx.lab.networks[network]
    ip = ipaddress.ip_interface(address)
    if ip.version != 4 or not ip.network.overlaps(n.subnet):
        return
    if ip.network != n.subnet:
        report(f"subnet {n.subnet} clashes with {n.external}'s address {address}: write subnet: {ip.network}",
               ("networks", network, "subnet"))
        return
    for h in ctx.lab.hosts.values():
        for i in h.interfaces:
            if i.network == network and i.address.ip == ip.ip:
                at = ("hosts", h.name, "networks", network)
                report(f"{ip.ip} is the machine's address on {n.external}: give host '{h.name}' another one "
                       f"(networks: {{{network}: ADDRESS}})", at)


# --- up, down ------------------------------------------------------------------------------------------------
def plan_up(ctx: UpContext) -> FeaturePlan:
    """Give back first what goes (a network gone, changed or whose bridge is made again; an entry an interrupted
    ``up`` left), then borrow every external interface that is not a port of its bridge."""
    entries = saved(ctx.lab.name, ctx.drivers)
    before = [GiveBack(ctx.lab.name, e.bridge, e.had, e.bridge_mac) for name, e in entries.items()
              if not _kept(ctx, name, e.bridge)]
    given_back = {a.had.name for a in before}
    after: list[Action] = []
    for n in ctx.lab.networks.values():
        now = ctx.drivers.nics.interface(n.external) if n.external is not None else None
        if n.external is None or now is None:
            continue  # (an interface missing: validate reported it)
        if n.external in given_back or now.master != n.bridge:
            had = entries[n.external][1] if n.external in entries else now
            after.append(Borrow(ctx.lab.name, n.bridge, had))
    record = ExternalRecord({n.name: n.external for n in ctx.lab.networks.values() if n.external})
    return FeaturePlan(before=list(before), after=after, record=record)


def _kept(ctx: UpContext, name: str, bridge: str) -> bool:
    """Interface ``name``, borrowed for ``bridge``, stays: its network is the same as recorded, its bridge stays."""
    network = next((n for n in ctx.lab.networks.values() if n.external == name and n.bridge == bridge), None)
    if network is None or ctx.recorded is None:
        return False
    return ctx.recorded.networks.get(network.name) == network and network.bridge not in ctx.new_bridges


def plan_down(ctx: DownContext) -> FeaturePlan:
    """Every borrowed interface given back, from what was written before it was borrowed (not from the record:
    an ``up`` killed midway saved none), before the bridges go."""
    entries = saved(ctx.name, ctx.drivers).values()
    return FeaturePlan(before=[GiveBack(ctx.name, e.bridge, e.had, e.bridge_mac) for e in entries])


def give_back_interrupted(name: str, drivers: Drivers) -> list[str]:
    """What an ``up`` that was killed borrowed, given back (the next ``up`` borrows again what it keeps)."""
    failures: list[str] = []
    for e in saved(name, drivers).values():
        failures += GiveBack(name, e.bridge, e.had, e.bridge_mac).teardown(drivers)
    return failures


# --- drift, status -------------------------------------------------------------------------------------------
def drift(lab: Lab, record: Any, drivers: Drivers) -> list[Difference]:
    found = []
    for n in lab.networks.values():
        if n.external is None:
            continue
        now = drivers.nics.interface(n.external)
        if now is None:
            found.append(Difference(f"network {n.name}: external interface {n.external} is gone", "external"))
        elif now.master != n.bridge:
            found.append(Difference(f"network {n.name}: {n.external} is not a port of {n.bridge}", "external"))
    return found


def status(lab: Lab, record: Any, drivers: Drivers) -> dict[str, Any]:
    out = {}
    for n in lab.networks.values():
        if n.external is not None:
            now = drivers.nics.interface(n.external)
            out[n.name] = {"interface": n.external, "bridge": n.bridge,
                           "attached": now is not None and now.master == n.bridge}
    return {"networks": out} if out else {}
