"""The wiring of a lab: named namespaces (hosts), bridges (networks), veths and point-to-point links, with
their addresses and default routes — planned as actions (see plan.py) and applied through the netlink driver.

This module owns convergence of the wiring: which hosts, networks and links must go, which must be made, and in
which order. Objects are compared as frozen resolved values, so an object whose resolved form did not change is
not touched by a converging ``up``. A host that changed is recreated whole (its namespace, veths and
addresses); a network whose subnet changed takes its hosts with it. Every action's inverse recreates or removes
exactly what it touched, so a failed converge is rolled back to the lab that was up.

Interfaces are their kind's (core/kinds/, veth today): a link's kind plans its making and removal (grouped by
kind, in the registry's order) and a host's ports on networks are rendered by the port kind, while the netlink
driver makes them in each host's one batch (:class:`AddHosts`). :func:`drift` finds bridges and namespaces
missing, bridges down and default routes lost, and asks each interface's kind for the rest.

A lab across machines is planned as its part (core/overlay.py): the same steps, plus each spanning network's
VXLAN device (overlay.AddOverlay, after the bridges; made again when new, broken, or its forwarding entries
change) and, off a network's home, a bridge without the gateway's address (and with a MAC of its own).

Replaces: ``ip netns add/del``, ``ip link add type bridge``, ``ip link set BRIDGE alias/up``, ``ip route add
default via ... proto static`` (``-6`` too), ``sysctl -w net.ipv6.conf.BRIDGE.accept_ra=0`` on every bridge, and
through the kinds ``ip link add ... type veth peer ... netns``, ``ip addr add``, ``ip link set ... master``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ..errors import Problem
from ..model import Host, Lab, Link, Network
from ..naming import LINK_GROUP, owner_alias
from ..values import Value, field, replace
from . import overlay
from .difference import Difference
from .kinds import by_kind, kind, of_interface, port_kind
from .plan import Action, Plan, Steps, broadcast_plus, raise_on

if TYPE_CHECKING:
    import ipaddress

    from ..drivers import Drivers
    from ..drivers.rtnl import LinkInfo, RouteInfo
    from ..errors import SourceLines
    from .difference import Views

#: Set in each new namespace before its interfaces exist: they get no automatic IPv6 link-local address.
NO_IPV6_AUTOCONF = "net.ipv6.conf.default.addr_gen_mode=1"
#: Set in a dual-stack host's namespace before its interfaces exist: IPv6 addresses stay on an interface put down;
#: no duplicate address detection (IPAM made the addresses unique; the link-local one is usable at once and one
#: flooded neighbour solicitation per host less).
KEEP_IPV6_ADDRESSES = "net.ipv6.conf.default.keep_addr_on_down=1 net.ipv6.conf.default.accept_dad=0"


class Observed(Value):
    """What exists in the kernel right now (from the netlink driver, or a fake in unit tests)."""

    namespaces: frozenset[str] = frozenset()
    bridges: frozenset[str] = frozenset()
    host_veths: frozenset[str] = frozenset()  # machine-side veths marked as this lab's hosts'
    # Drift found against the recorded lab (drift.py fills these in; ``up`` repairs them):
    broken_hosts: frozenset[str] = frozenset()  # hosts to recreate (an interface, address or port lost)
    resumed: frozenset[str] = frozenset()  # of those, container hosts whose stopped container is started again
    broken_links: frozenset[tuple[str, str, str, str]] = frozenset()  # point-to-point links to recreate
    ends_down: tuple[tuple[str, str], ...] = ()  # (namespace or '' for the machine, link) down, meant up
    ends_up: tuple[tuple[str, str], ...] = ()  # up, but put down with `nslab link`
    routes_missing: tuple[tuple[str, str], ...] = ()  # (namespace, gateway) default routes to restore
    reconfigure: tuple[tuple[str, str], ...] = ()  # (namespace, "route TO via VIA" | "sysctl KEY") to set again
    broken_overlay: frozenset[str] = frozenset()  # networks whose VXLAN device (or an entry of it) to make again


class SetLinkState(Action):
    """``ip [-n NS] link set IF up|down`` for each end (namespace '' = the machine); then the default routes
    to restore (IPv4 drops a host's routes through an interface put down, and ``up`` does not bring them back).
    The inverse sets the other state."""

    ends: tuple[tuple[str, str], ...]
    up: bool
    routes: tuple[tuple[str, str], ...] = ()

    def commands(self) -> list[str]:
        state = "up" if self.up else "down"
        out = [f"ip {f'-n {ns} ' if ns else ''}link set {name} {state}" for ns, name in self.ends]
        return out + [f"ip -n {ns}{' -6' if ':' in gw else ''} route replace default via {gw} proto static"
                      for ns, gw in self.routes]

    def summary(self) -> str:
        return f"set {len(self.ends)} interface(s) {'up' if self.up else 'down'}"

    def apply(self, drivers: Drivers) -> Action | None:
        import ipaddress

        if self.ends:
            raise_on(drivers.kernel.set_link_state(list(self.ends), self.up))
        if self.routes:
            raise_on(drivers.kernel.set_default_routes(
                [(ns, ipaddress.ip_address(gw)) for ns, gw in self.routes]))
        return SetLinkState(self.ends, not self.up) if self.ends else None


class RemoveHosts(Action):
    """``ip netns del`` (the kernel dismantles each namespace and its veths once unused)."""

    lab: Lab
    namespaces: tuple[str, ...]

    def commands(self) -> list[str]:
        return [f"ip netns del {ns}" for ns in self.namespaces]

    def summary(self) -> str:
        return f"remove {len(self.namespaces)} host(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        raise_on(drivers.kernel.remove_namespaces(list(self.namespaces)))
        hosts = tuple(h for h in self.lab.hosts.values() if h.namespace in self.namespaces)
        if not hosts:
            return None
        # Undone by making them again, with their point-to-point links (they went with the namespaces).
        names = {h.name for h in hosts}
        links = tuple(lk for lk in self.lab.links if lk.a in names or lk.b in names)
        again: list[Action] = [AddHosts(self.lab, hosts, stale=_host_veths(hosts))]
        again += _links_added(self.lab, links)
        return Steps(tuple(again))

    def teardown(self, drivers: Drivers) -> list[str]:
        return drivers.kernel.remove_namespaces(list(self.namespaces))


class RemoveBridges(Action):
    lab: Lab
    networks: tuple[Network, ...]

    def bridges(self) -> list[str]:
        return [n.bridge for n in self.networks]

    def commands(self) -> list[str]:
        return [f"ip link del {b}" for b in self.bridges()]

    def summary(self) -> str:
        return f"remove {len(self.networks)} network(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        raise_on(drivers.kernel.remove_links(self.bridges()))
        return AddBridges(self.lab, self.networks)


class AddBridges(Action):
    lab: Lab
    networks: tuple[Network, ...]

    def commands(self) -> list[str]:
        return [line for n in self.networks for line in _bridge_commands(self.lab, n)]

    def summary(self) -> str:
        return f"add {len(self.networks)} network(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        try:
            drivers.kernel.add_bridges(self.lab, list(self.networks))
        except BaseException:  # made but not finished (alias, address): they go, this step left nothing
            drivers.kernel.remove_links([n.bridge for n in self.networks])
            raise
        return RemoveBridges(self.lab, self.networks)


class AddHosts(Action):
    """Each host's namespace, its veths to the bridges (the host side made inside, so the peer lands on the
    machine), addresses and default route. ``stale``: machine-side veths of these hosts that still exist (their
    namespace was just unpinned and the kernel is still dismantling it): waited for, then deleted."""

    lab: Lab
    hosts: tuple[Host, ...]
    stale: tuple[str, ...] = field(default=())

    def commands(self) -> list[str]:
        out = [f"ip link del {name}" for name in self.stale]
        for h in self.hosts:
            out += _host_commands(self.lab, h)
        return out

    def summary(self) -> str:
        return f"add {len(self.hosts)} host(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        if self.stale:
            raise_on(drivers.kernel.clear_stale_links(list(self.stale)))
        drivers.kernel.add_hosts(self.lab, list(self.hosts))
        return RemoveHosts(self.lab, tuple(h.namespace for h in self.hosts))


def _bridge_commands(lab: Lab, n: Network) -> list[str]:
    gateway = lab.builds_gateway(n)  # (across machines: on its home only; elsewhere the bridge is pure L2)
    return [
        f"ip link add {n.bridge} address {lab.bridge_mac(n)} group {LINK_GROUP} type bridge",
        f"ip link set {n.bridge} alias {owner_alias(lab.name, 'net', n.name)}",
        f"sysctl -qew net.ipv6.conf.{n.bridge}.accept_ra=0",  # -e: a kernel without IPv6 has no such key
        *([f"ip addr add {n.gateway}{broadcast_plus(n.gateway)} dev {n.bridge}"] if gateway and n.external is None
          else []),
        *([f"ip addr add {n.gateway6} dev {n.bridge} nodad"] if n.gateway6 and gateway else []),
        f"ip link set {n.bridge} up",
    ]


def _host_commands(lab: Lab, h: Host) -> list[str]:
    ns = h.namespace
    out = [] if h.container else [f"ip netns add {ns}"]  # a container's is named by its start (containers.py)
    out += [
        f"ip -n {ns} link set lo up",
        f"ip netns exec {ns} sysctl -qw {NO_IPV6_AUTOCONF}",
    ]
    if any(i.address6 for i in h.interfaces):  # IPv6 addresses outlive `nslab link ... down`
        out.append(f"ip netns exec {ns} sysctl -qw {KEEP_IPV6_ADDRESSES}")
    ports = port_kind()
    for position, i in enumerate(i for i in h.interfaces if i.network):
        out += ports.port_commands(lab, h, position, i)
    if h.gateway:
        out.append(f"ip -n {ns} route add default via {h.gateway} proto static")
    if h.gateway6:
        out.append(f"ip -n {ns} -6 route add default via {h.gateway6} proto static")
    return out


class ConfigureHosts(Action):
    """What a host holds beyond its interfaces, once its links exist (a route may go through one): its
    ``sysctls:`` written inside its namespace, then its static ``routes:``. The inverse deletes the routes and
    writes the former sysctl values back."""

    hosts: tuple[Host, ...]
    former: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())  # namespace -> former values (inverse)

    def commands(self) -> list[str]:
        out: list[str] = []
        for h in self.hosts:
            out += [f"ip netns exec {h.namespace} sysctl -qw {key}={value}" for key, value in h.sysctls]
            out += [f"ip -n {h.namespace} route add {r.to} via {r.via} proto static" for r in h.routes]
        return out

    def summary(self) -> str:
        return f"configure {len(self.hosts)} host(s) (sysctls, routes)"

    def apply(self, drivers: Drivers) -> Action | None:
        done: list[tuple[str, tuple[str, ...]]] = []
        try:
            for h in self.hosts:
                former = drivers.kernel.configure_host(h.namespace, list(h.routes), list(h.sysctls))
                done.append((h.namespace, tuple(former)))
        except BaseException:
            UnconfigureHosts(self.hosts[: len(done)], tuple(done)).apply(drivers)
            raise
        return UnconfigureHosts(self.hosts, tuple(done))


class UnconfigureHosts(Action):
    """The inverse of :class:`ConfigureHosts`: its routes deleted, the sysctls it wrote set back."""

    hosts: tuple[Host, ...]
    former: tuple[tuple[str, tuple[str, ...]], ...]

    def commands(self) -> list[str]:
        out: list[str] = []
        values = dict(self.former)
        for h in self.hosts:
            out += [f"ip -n {h.namespace} route del {r.to} via {r.via}" for r in h.routes]
            out += [f"ip netns exec {h.namespace} sysctl -qw {k}={v}" for k, v in _restore(h, values)]
        return out

    def apply(self, drivers: Drivers) -> Action | None:
        values = dict(self.former)
        failures: list[str] = []
        for h in self.hosts:
            failures += drivers.kernel.unconfigure_host(h.namespace, list(h.routes), _restore(h, values))
        raise_on(failures)
        return None


#: A per-interface key: ``net.ipv4.conf.IF.KEY`` (the groups: the family's part, the interface, the key).
PER_INTERFACE_SYSCTL = r"^(net\.[a-z0-9]+\.(?:conf|neigh))\.([^.]+)\.(.+)$"


def sysctl_problems(lab: Lab, drivers: Drivers, source: SourceLines, file: str) -> list[Problem]:
    """Every host's ``sysctls:`` key that a network namespace lacks or cannot write, found before any change
    (a new namespace has no eth0 yet: a host's own interfaces are looked up as ``default``; a key naming an
    interface the host does not have is resolve's problem)."""
    import re

    from ..errors import field_path

    asked: list[tuple[tuple[str, ...], str, str]] = []  # (field, key as written, key to look up)
    problems: list[Problem] = []
    for h in lab.hosts.values():
        interfaces = [i.name for i in h.interfaces]
        for key, _ in h.sysctls:
            loc = ("hosts", h.name, "sysctls", key)
            match = re.match(PER_INTERFACE_SYSCTL, key)
            lookup = key
            if match and match.group(2) not in ("all", "default", "lo"):
                if match.group(2) not in interfaces:
                    continue
                lookup = f"{match.group(1)}.default.{match.group(3)}"
            asked.append((loc, key, lookup))
    unusable = drivers.sysctl.unusable_in_new_namespace(sorted({lookup for _, _, lookup in asked})) if asked else {}
    for where, key, lookup in asked:
        why = unusable.get(lookup)
        if why == "unknown":
            text = f"unknown sysctl {key}: a network namespace has no /proc/sys/{lookup.replace('.', '/')}"
        elif why is not None:
            text = f"sysctl {key} is {why}"
        else:
            continue
        problems.append(Problem(text, field_path(where), file, source.line(where)))
    return problems


def _restore(host: Host, former: dict[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    """The host's sysctls with the values they had before :class:`ConfigureHosts` (those it got to write)."""
    before = former.get(host.namespace, ())
    return [(key, before[i]) for i, (key, _) in enumerate(host.sysctls) if i < len(before)]


class RemoveBridgesLater(Action):
    """``down``: bridges are deleted in a worker thread while namespaces are unpinned (the kernel detaches
    a bridge's ports one by one, ~0.25 ms each); :class:`AwaitBridges` collects the outcome."""

    bridges: tuple[str, ...]
    pending: list[Callable[[], list[str]]] = field(default_factory=list, compare=False)  # (nor in hash)

    def commands(self) -> list[str]:
        return [f"ip link del {b}" for b in self.bridges]

    def summary(self) -> str:
        return f"remove {len(self.bridges)} network(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        self.pending.append(drivers.kernel.remove_links_later(list(self.bridges)))
        return None


class AwaitBridges(Action):
    started: RemoveBridgesLater

    def commands(self) -> list[str]:
        return []

    def teardown(self, drivers: Drivers) -> list[str]:
        failures: list[str] = []
        for wait in self.started.pending:
            failures += wait()
        return failures

    def apply(self, drivers: Drivers) -> Action | None:
        raise_on(self.teardown(drivers))
        return None


class AwaitLinks(Action):
    """``down``: the lab's links still on the machine (host veths whose namespace the kernel is dismantling
    asynchronously after its name went) are waited for, and deleted should one stay, so that ``down`` returns
    when what the lab made is gone. Found by their ownership mark (naming.py)."""

    lab: str

    def commands(self) -> list[str]:
        return [f"# wait until no link marked as lab {self.lab}'s is left on the machine"]

    def summary(self) -> str:
        return "wait for the lab's links to go"

    def teardown(self, drivers: Drivers) -> list[str]:
        from ..naming import parse_owner

        left = [lk.name for lk in drivers.kernel.owned_links()
                if (owner := parse_owner(lk.alias)) is not None and owner.lab == self.lab]
        return drivers.kernel.clear_stale_links(left) if left else []

    def apply(self, drivers: Drivers) -> Action | None:
        raise_on(self.teardown(drivers))
        return None


def _host_veths(hosts: Iterable[Host]) -> tuple[str, ...]:
    return tuple(i.host_veth for h in hosts for i in h.interfaces if i.host_veth)


def _host_identity(host: Host | None) -> object:
    """What makes a host's namespace need rebuilding: everything but its point-to-point links,
    which are replaced on their own."""
    if host is None:
        return None
    return (host.namespace, host.hostname, host.gateway, tuple(i for i in host.interfaces if i.network),
            host.routes, host.sysctls, host.container, host.gateway6)


def _link_key(link: Link) -> tuple[str, str, str, str]:
    return (link.a, link.b, link.a_ifname, link.b_ifname)


class _Changes(Value):
    """What a converge touches, by name (the steps of :func:`plan_up` fill it in)."""

    nets_to_remove: list[Network] = field(default_factory=list)
    nets_to_add: list[Network] = field(default_factory=list)
    hosts_to_remove: dict[str, Host] = field(default_factory=dict)  # namespace -> host as recorded
    hosts_to_add: dict[str, Host] = field(default_factory=dict)  # name -> host as desired
    links_to_remove: list[Link] = field(default_factory=list)
    links_to_add: list[Link] = field(default_factory=list)


def plan_up(desired: Lab, recorded: Lab | None, observed: Observed) -> Plan:
    """Actions that take the kernel from ``recorded``/``observed`` to ``desired``."""
    before = recorded or Lab(name=desired.name, source=desired.source, networks={}, hosts={})
    changes = _Changes()
    _networks(desired, before, observed, changes)
    _hosts(desired, before, observed, changes)
    _links(desired, before, observed, changes)
    return _actions(desired, before, observed, changes) + _state_repairs(desired, observed, changes)


def _networks(desired: Lab, before: Lab, observed: Observed, changes: _Changes) -> None:
    for name, n in before.networks.items():
        if desired.networks.get(name) != n and n.bridge in observed.bridges:
            changes.nets_to_remove.append(n)
    for name, n in desired.networks.items():
        if before.networks.get(name) != n or n.bridge not in observed.bridges:
            changes.nets_to_add.append(n)


def _hosts(desired: Lab, before: Lab, observed: Observed, changes: _Changes) -> None:
    def remove(host: Host) -> None:
        recorded = before.hosts.get(host.name)
        if recorded is not None and recorded.namespace in observed.namespaces:
            changes.hosts_to_remove.setdefault(recorded.namespace, recorded)

    for name, h in before.hosts.items():
        if _host_identity(desired.hosts.get(name)) != _host_identity(h):
            remove(h)
    for name, h in desired.hosts.items():
        if (_host_identity(before.hosts.get(name)) != _host_identity(h) or h.namespace not in observed.namespaces
                or name in observed.broken_hosts):
            changes.hosts_to_add[name] = h
            # A namespace that exists but is not recorded as this exact host is in the way: recreate it only if
            # it was ours (recorded); a foreign one makes apply fail cleanly (EEXIST) before anything changed.
            remove(h)
    # Hosts attached to a recreated bridge must be re-wired too: their veths die with the bridge.
    rebuilt = {n.name for n in changes.nets_to_add}
    for name, h in desired.hosts.items():
        if name not in changes.hosts_to_add and any(i.network in rebuilt for i in h.interfaces):
            changes.hosts_to_add[name] = h
            remove(h)


def _links(desired: Lab, before: Lab, observed: Observed, changes: _Changes) -> None:
    added = changes.hosts_to_add
    broken = observed.broken_links
    before_links = {_link_key(lk): lk for lk in before.links}
    desired_links = {_link_key(lk): lk for lk in desired.links}
    for lk in desired.links:
        if before_links.get(_link_key(lk)) != lk or lk.a in added or lk.b in added or _link_key(lk) in broken:
            changes.links_to_add.append(lk)
    for key, lk in before_links.items():
        if (desired_links.get(key) == lk and key not in broken) or lk.a in added or lk.b in added:
            continue  # unchanged, or it goes with its recreated host
        if _still_here(lk, desired):
            changes.links_to_remove.append(lk)


def _still_here(lk: Link, desired: Lab) -> bool:
    """Whether a link that changed or went has an end to remove here (a host that goes takes its ends along):
    both ends' hosts stay, or across machines the one end here stays."""
    if lk.kind == "vxlan":
        return lk.a in desired.hosts or lk.b in desired.hosts
    return lk.a in desired.hosts and lk.b in desired.hosts


def _actions(desired: Lab, before: Lab, observed: Observed, changes: _Changes) -> Plan:
    actions: list[Action] = []
    hosts = tuple(h for name, h in desired.hosts.items() if name in changes.hosts_to_add)  # file order
    # Container hosts (features/containers.py): a container goes after its namespace's name, and is made
    # (and its namespace named) before the wiring reaches into it.
    gone_containers, new_containers = _container_steps(desired, before, changes, hosts, observed.resumed)
    if changes.hosts_to_remove:
        actions.append(RemoveHosts(before, tuple(sorted(changes.hosts_to_remove))))
    actions += gone_containers
    actions += _links_removed(before, changes.links_to_remove)
    gone = tuple(n for n in overlay.spanning(before) if n in changes.nets_to_remove)
    if gone:
        actions.append(overlay.RemoveOverlay(before, gone))
    if changes.nets_to_remove:
        actions.append(RemoveBridges(before, tuple(changes.nets_to_remove)))
    if changes.nets_to_add:
        actions.append(AddBridges(desired, tuple(changes.nets_to_add)))
    actions += _overlay(desired, before, observed, changes)
    actions += new_containers
    if changes.hosts_to_add:
        stale = tuple(v for v in _host_veths(hosts) if v in observed.host_veths)
        actions.append(AddHosts(desired, hosts, stale))
    actions += _links_added(desired, changes.links_to_add)
    configured = _configured(desired, changes)
    if configured:
        actions.append(ConfigureHosts(configured))
    return Plan(actions)


def _overlay(desired: Lab, before: Lab, observed: Observed, changes: _Changes) -> list[Action]:
    """The VXLAN device of each spanning network here that is new, remade with its bridge, broken, or changed
    (its VNI or machines; the lab's machines, port or MTU): made again; of the others, those whose forwarding
    entries alone changed (a remote host added, gone or moved) get only the difference."""
    made = {n.name for n in changes.nets_to_add}
    was = {n.name: n for n in overlay.spanning(before)}
    same_overlay = (desired.machines, desired.overlay_port, desired.overlay_mtu) == (
        before.machines, before.overlay_port, before.overlay_mtu)
    again = tuple(n for n in overlay.spanning(desired)
                  if n.name in made or n.name in observed.broken_overlay or was.get(n.name) != n
                  or not same_overlay)
    entries = tuple(n for n in overlay.spanning(desired) if n not in again
                    and overlay.fdb_entries(desired, n) != overlay.fdb_entries(before, n))
    out: list[Action] = [overlay.AddOverlay(desired, again, before if was else None)] if again else []
    return out + ([overlay.UpdateForwarding(desired, before, entries)] if entries else [])


def _links_added(lab: Lab, links: Iterable[Link]) -> list[Action]:
    """Each kind's action making its links of ``links`` (grouped by kind, in the registry's order)."""
    return [kind(name).add(lab, group) for name, group in by_kind(tuple(links)).items()]


def _links_removed(lab: Lab, links: Iterable[Link]) -> list[Action]:
    return [kind(name).remove(lab, group) for name, group in by_kind(tuple(links)).items()]


def _configured(desired: Lab, changes: _Changes) -> tuple[Host, ...]:
    """Hosts (re)made by this plan that have sysctls or static routes, in file order."""
    return tuple(h for name, h in desired.hosts.items() if name in changes.hosts_to_add and (h.routes or h.sysctls))


def _container_steps(desired: Lab, before: Lab, changes: _Changes, added: tuple[Host, ...],
                     stopped: frozenset[str]) -> tuple[list[Action], list[Action]]:
    """The containers of container hosts removed (or changed) and added (or recreated) by this plan; those of
    ``stopped`` that did not change are started again instead (their filesystem kept)."""
    if not any(h.container for h in (*before.hosts.values(), *desired.hosts.values())):
        return [], []
    from .features.containers import wiring_steps

    removed = [h for name, h in before.hosts.items() if h.container is not None and (
        _host_identity(desired.hosts.get(name)) != _host_identity(h) or name in changes.hosts_to_add)]
    resumed = frozenset(name for name in stopped if name in changes.hosts_to_add
                        and _host_identity(desired.hosts.get(name)) == _host_identity(before.hosts.get(name)))
    return wiring_steps(before, desired, removed, list(added), resumed)


def _state_repairs(desired: Lab, observed: Observed, changes: _Changes) -> Plan:
    """Interfaces and routes that drifted on objects this run does not remake: set back as planned."""
    remade: set[str] = {n.bridge for n in changes.nets_to_add}
    for h in changes.hosts_to_add.values():
        remade |= {h.namespace, *_host_veths([h])}
    for lk in changes.links_to_add:
        remade |= {f"{ns}/{ifname}" for ns, ifname in kind(lk.kind).ends(desired, lk)}

    def kept(ends: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        return tuple(e for e in ends if not ({e[0] or e[1], f"{e[0]}/{e[1]}"} & remade))

    actions: list[Action] = []
    up, down, routes = kept(observed.ends_down), kept(observed.ends_up), kept(observed.routes_missing)
    if up or routes:
        actions.append(SetLinkState(up, True, routes))
    if down:
        actions.append(SetLinkState(down, False))
    reconfigured = _reconfigured(desired, tuple(r for r in observed.reconfigure if r[0] not in remade))
    if reconfigured:  # after the interfaces are up again: a route goes through one
        actions.append(ConfigureHosts(reconfigured))
    return Plan(actions)


def _reconfigured(desired: Lab, lost: tuple[tuple[str, str], ...]) -> tuple[Host, ...]:
    """Each host with a static route lost or a sysctl changed, holding only those (for :class:`ConfigureHosts`,
    which writes sysctls and replaces routes)."""
    out = []
    for h in desired.hosts.values():
        mine = {what for ns, what in lost if ns == h.namespace}
        routes = tuple(r for r in h.routes if f"route {r.to} via {r.via}" in mine)
        sysctls = tuple((k, v) for k, v in h.sysctls if f"sysctl {k}" in mine)
        if routes or sysctls:
            out.append(replace(h, routes=routes, sysctls=sysctls))
    return tuple(out)


def plan_down(recorded: Lab, marked_namespaces: Iterable[str] = (), marked_bridges: Iterable[str] = ()) -> Plan:
    """Everything the lab owns: recorded objects plus any found by their ownership marks. Bridges go in a
    worker thread meanwhile (:class:`RemoveBridgesLater`), namespaces are unpinned as by ``ip netns del``."""
    namespaces = sorted({h.namespace for h in recorded.hosts.values()} | set(marked_namespaces))
    bridges = sorted({n.bridge for n in recorded.networks.values()} | set(marked_bridges)
                     | {overlay.vxlan_name(recorded.name, n.name) for n in overlay.spanning(recorded)})
    actions: list[Action] = []
    later = RemoveBridgesLater(tuple(bridges))
    if bridges:
        actions.append(later)
    if namespaces:
        actions.append(RemoveHosts(recorded, tuple(namespaces)))
    if bridges:
        actions.append(AwaitBridges(later))
    return Plan(actions)


# --- drift -------------------------------------------------------------------------------------------------

def drift(lab: Lab, meant_down: set[tuple[str, str]], drivers: Drivers,
          views: Views | None = None) -> list[Difference]:
    """The wiring's drift (drift.py collects it): bridges and namespaces missing, bridges down, default routes
    missing; each interface of each host is checked by its kind (kinds/). ``meant_down``: (host, interface)
    put down with ``nslab link``."""
    from .difference import host_views

    machine = {lk.name: lk for lk in drivers.kernel.machine_links()}
    found: list[Difference] = []
    for n in lab.networks.values():
        bridge = machine.get(n.bridge)
        if bridge is None:
            found.append(Difference(f"network {n.name}: bridge {n.bridge} is missing", "bridge"))
        elif not bridge.up:
            found.append(Difference(f"network {n.name}: bridge {n.bridge} is down", "up", end=("", n.bridge)))
    if views is None:
        views = host_views(lab, drivers)
    sysctls = drivers.kernel.read_host_sysctls({h.namespace: [k for k, _ in h.sysctls] for h in lab.hosts.values()
                                                if h.sysctls and views.get(h.namespace) is not None})
    for h in lab.hosts.values():
        view = views.get(h.namespace)
        if view is None:
            found.append(Difference(f"host {h.name}: namespace {h.namespace} is missing", "host", host=h.name))
            continue
        host_found = _host_drift(lab, h, view, machine, meant_down)
        if not any(d.repair == "host" for d in host_found):  # (a host made again gets all of them back)
            host_found += _configured_drift(h, view, sysctls.get(h.namespace, {}), _gone_with(h, meant_down))
        found += host_found
    return found


def _gone_with(h: Host, meant_down: set[tuple[str, str]]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The subnets of the host's interfaces put down with ``nslab link``: the kernel dropped the routes through
    them, on purpose."""
    return [a.network for i in h.interfaces if (h.name, i.name) in meant_down
            for a in (i.address, i.address6) if a is not None]


def _configured_drift(h: Host, view: tuple[list[LinkInfo], list[RouteInfo]], sysctls: Mapping[str, str | None],
                      down: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> list[Difference]:
    """The host's ``routes:`` missing from its main table (not through an interface put down on purpose) and
    its ``sysctls:`` that read back otherwise (values compared word by word: the kernel prints tabs)."""
    found = []
    seen = {(r.destination, r.gateway) for r in view[1]}
    for r in h.routes:
        if (r.to, str(r.via)) not in seen and not any(r.via in net for net in down):
            found.append(Difference(f"host {h.name}: route to {r.to} via {r.via} is missing", "reconfigure",
                                    host=h.name, end=(h.namespace, f"route {r.to} via {r.via}")))
    for key, value in h.sysctls:
        now = sysctls.get(key)
        if now is not None and now.split() != value.split():
            found.append(Difference(f"host {h.name}: sysctl {key} is {' '.join(now.split())}, not {value}",
                                    "reconfigure", host=h.name, end=(h.namespace, f"sysctl {key}")))
    return found


def _host_drift(lab: Lab, h: Host, view: tuple[list[LinkInfo], list[RouteInfo]], machine: Mapping[str, LinkInfo],
                meant_down: set[tuple[str, str]]) -> list[Difference]:
    inside = {lk.name: lk for lk in view[0]}
    found: list[Difference] = []
    lo = inside.get("lo")
    if lo is not None and not lo.up:  # every host has it up (wiring.AddHosts): 127.0.0.1 and ::1 need it
        found.append(Difference(f"host {h.name}: loopback lo is down", "up", host=h.name, end=(h.namespace, "lo")))
    for i in h.interfaces:
        found += of_interface(lab, i).drift(lab, h, i, inside.get(i.name), machine, (h.name, i.name) not in meant_down)
    gateway_down = any((h.name, i.name) in meant_down for i in h.interfaces
                       if i.network and lab.networks[i.network].gateway.ip == h.gateway)
    has_default = any(r.destination.prefixlen == 0 and r.gateway == str(h.gateway) for r in view[1])
    if h.gateway and not gateway_down and not has_default:
        lost = any(d.repair == "host" for d in found)  # remade with the host anyway
        found.append(Difference(f"host {h.name}: default route via {h.gateway} is missing",
                                "host" if lost else "route", host=h.name, end=(h.namespace, str(h.gateway))))
    found += _default6(lab, h, view, meant_down, found)
    return found


def _default6(lab: Lab, h: Host, view: tuple[list[LinkInfo], list[RouteInfo]], meant_down: set[tuple[str, str]],
              found: list[Difference]) -> list[Difference]:
    """The host's IPv6 default route, missing (not because its interface was put down on purpose)."""
    if h.gateway6 is None:
        return []
    gateways = {n.name: n.gateway6.ip for n in lab.networks.values() if n.gateway6 is not None}
    down = any((h.name, i.name) in meant_down for i in h.interfaces
               if i.network and gateways.get(i.network) == h.gateway6)
    if down or any(r.destination.prefixlen == 0 and r.gateway == str(h.gateway6) for r in view[1]):
        return []
    lost = any(d.repair == "host" for d in found)
    return [Difference(f"host {h.name}: IPv6 default route via {h.gateway6} is missing",
                       "host" if lost else "route", host=h.name, end=(h.namespace, str(h.gateway6)))]
