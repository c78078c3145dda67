"""Desired lab vs what is recorded and observed -> an ordered list of actions; dry-run rendering.

This module owns convergence: which hosts, networks and links must go, which must be made, and in which
order. Objects are compared as frozen resolved values, so an object whose resolved form did not change is
not touched by a converging ``up``. A host that changed is recreated whole (its namespace, veths and
addresses); a network whose subnet changed takes its hosts with it.

Each action renders itself as the ``ip`` commands a person would type (``nslab up --dry-run``); apply.py
executes the same actions through the drivers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .model import Host, Lab, Link, Network, owner_alias


@dataclass(frozen=True)
class Observed:
    """What exists in the kernel right now (from the netlink driver, or a fake in unit tests)."""

    namespaces: frozenset[str] = frozenset()
    bridges: frozenset[str] = frozenset()
    host_veths: frozenset[str] = frozenset()  # machine-side veths marked as this lab's hosts'


@dataclass(frozen=True)
class Action:
    """One step of a plan; ``commands`` is its rendering as ip/nft commands."""

    def commands(self) -> list[str]:  # pragma: no cover - every subclass renders itself
        raise NotImplementedError

    def summary(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class RemoveHosts(Action):
    namespaces: tuple[str, ...]

    def commands(self) -> list[str]:
        return [f"ip netns del {ns}" for ns in self.namespaces]

    def summary(self) -> str:
        return f"remove {len(self.namespaces)} host(s)"


@dataclass(frozen=True)
class RemoveLinks(Action):
    ends: tuple[tuple[str, str], ...]  # (namespace, ifname): deleting one end removes the pair

    def commands(self) -> list[str]:
        return [f"ip -n {ns} link del {ifname}" for ns, ifname in self.ends]

    def summary(self) -> str:
        return f"remove {len(self.ends)} link(s)"


@dataclass(frozen=True)
class RemoveBridges(Action):
    bridges: tuple[str, ...]

    def commands(self) -> list[str]:
        return [f"ip link del {b}" for b in self.bridges]

    def summary(self) -> str:
        return f"remove {len(self.bridges)} network(s)"


@dataclass(frozen=True)
class RemoveStaleLinks(Action):
    """Machine-side veths of hosts about to be made that still exist: their namespace was unpinned (a
    ``down`` or a recreated host) but the kernel has not dismantled it yet, or a process keeps it alive.
    Apply waits briefly for the kernel, then deletes what is left."""

    names: tuple[str, ...]

    def commands(self) -> list[str]:
        return [f"ip link del {name}" for name in self.names]

    def summary(self) -> str:
        return f"clear {len(self.names)} leftover link(s)"


@dataclass(frozen=True)
class AddBridges(Action):
    lab: str
    networks: tuple[Network, ...]

    def commands(self) -> list[str]:
        out = []
        for n in self.networks:
            out += [
                f"ip link add {n.bridge} type bridge",
                f"ip link set {n.bridge} alias {owner_alias(self.lab, 'net', n.name)}",
                f"ip addr add {n.gateway} dev {n.bridge}",
                f"ip link set {n.bridge} up",
            ]
        return out

    def summary(self) -> str:
        return f"add {len(self.networks)} network(s)"


@dataclass(frozen=True)
class AddHosts(Action):
    lab: str
    hosts: tuple[Host, ...]
    bridges: dict[str, str] = field(hash=False)  # network name -> bridge

    def commands(self) -> list[str]:
        out = []
        for h in self.hosts:
            ns = h.namespace
            out.append(f"ip netns add {ns}")
            out.append(f"ip -n {ns} link set lo up")
            for i in h.interfaces:
                if i.network is None:
                    continue
                out += [
                    f"ip link add {i.host_veth} type veth peer name {i.name} netns {ns}",
                    f"ip link set {i.host_veth} alias {owner_alias(self.lab, 'host', h.name, i.name)}",
                    f"ip link set {i.host_veth} master {self.bridges[i.network]} up",
                    f"ip -n {ns} addr add {i.address} dev {i.name}",
                    f"ip -n {ns} link set {i.name} up",
                ]
            if h.gateway:
                out.append(f"ip -n {ns} route add default via {h.gateway}")
        return out

    def summary(self) -> str:
        return f"add {len(self.hosts)} host(s)"


@dataclass(frozen=True)
class AddLinks(Action):
    links: tuple[Link, ...]
    namespaces: dict[str, str] = field(hash=False)  # host -> namespace

    def commands(self) -> list[str]:
        out = []
        for lk in self.links:
            a, b = self.namespaces[lk.a], self.namespaces[lk.b]
            out += [
                f"ip -n {a} link add {lk.a_ifname} type veth peer name {lk.b_ifname} netns {b}",
                f"ip -n {a} addr add {lk.a_address} dev {lk.a_ifname}",
                f"ip -n {b} addr add {lk.b_address} dev {lk.b_ifname}",
                f"ip -n {a} link set {lk.a_ifname} up",
                f"ip -n {b} link set {lk.b_ifname} up",
            ]
        return out

    def summary(self) -> str:
        return f"add {len(self.links)} link(s)"


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]

    def __bool__(self) -> bool:
        return bool(self.actions)

    def commands(self) -> list[str]:
        return [c for a in self.actions for c in a.commands()]


def _host_identity(host: Host | None) -> object:
    """What makes a host's namespace need rebuilding: everything but its point-to-point links,
    which are replaced on their own."""
    if host is None:
        return None
    return (host.namespace, host.hostname, host.gateway, tuple(i for i in host.interfaces if i.network))


def _link_key(link: Link) -> tuple[str, str, str, str]:
    return (link.a, link.b, link.a_ifname, link.b_ifname)


def plan_up(desired: Lab, recorded: Lab | None, observed: Observed) -> Plan:
    """Actions that take the kernel from ``recorded``/``observed`` to ``desired``."""
    before_hosts = dict(recorded.hosts) if recorded else {}
    before_nets = dict(recorded.networks) if recorded else {}
    before_links = {_link_key(lk): lk for lk in recorded.links} if recorded else {}

    nets_to_remove = [
        n for name, n in before_nets.items() if desired.networks.get(name) != n and n.bridge in observed.bridges
    ]
    nets_to_add = [
        n for name, n in desired.networks.items() if before_nets.get(name) != n or n.bridge not in observed.bridges
    ]
    hosts_to_remove = [
        h
        for name, h in before_hosts.items()
        if _host_identity(desired.hosts.get(name)) != _host_identity(h) and h.namespace in observed.namespaces
    ]
    hosts_to_add = [
        h
        for name, h in desired.hosts.items()
        if _host_identity(before_hosts.get(name)) != _host_identity(h) or h.namespace not in observed.namespaces
    ]
    # A namespace that exists but is not recorded as this exact host is in the way: recreate it only if
    # it was ours (recorded); a foreign one makes apply fail cleanly (EEXIST) before anything is half-done.
    remove_names = {h.namespace for h in hosts_to_remove}
    for h in hosts_to_add:
        if h.name in before_hosts and h.namespace in observed.namespaces and h.namespace not in remove_names:
            hosts_to_remove.append(h)
            remove_names.add(h.namespace)
    # Hosts attached to a recreated bridge must be re-wired too: their veths died with the bridge.
    rebuilt_bridges = {n.name for n in nets_to_add}
    add_names = {h.name for h in hosts_to_add}
    for name, h in desired.hosts.items():
        if name not in add_names and any(i.network in rebuilt_bridges for i in h.interfaces):
            hosts_to_add.append(h)
            add_names.add(name)
            if h.namespace in observed.namespaces and h.namespace not in remove_names:
                hosts_to_remove.append(h)
                remove_names.add(h.namespace)

    links_to_add = [
        lk
        for lk in desired.links
        if before_links.get(_link_key(lk)) != lk or lk.a in add_names or lk.b in add_names
    ]
    desired_keys = {_link_key(lk): lk for lk in desired.links}
    links_to_remove = [
        lk
        for key, lk in before_links.items()
        if desired_keys.get(key) != lk and lk.a not in add_names and lk.b not in add_names
        and lk.a in desired.hosts and lk.b in desired.hosts
    ]
    # An unchanged link whose interface name is reused by a changed link must go first.
    namespaces = {h.name: h.namespace for h in desired.hosts.values()}
    actions: list[Action] = []
    if hosts_to_remove:
        actions.append(RemoveHosts(tuple(sorted(remove_names))))
    if links_to_remove:
        actions.append(RemoveLinks(tuple((namespaces[lk.a], lk.a_ifname) for lk in links_to_remove)))
    if nets_to_remove:
        actions.append(RemoveBridges(tuple(n.bridge for n in nets_to_remove)))
    stale = [i.host_veth for h in hosts_to_add for i in h.interfaces if i.host_veth in observed.host_veths]
    if stale:
        actions.append(RemoveStaleLinks(tuple(n for n in stale if n)))
    if nets_to_add:
        actions.append(AddBridges(desired.name, tuple(nets_to_add)))
    if hosts_to_add:
        bridges = {n.name: n.bridge for n in desired.networks.values()}
        order = list(desired.hosts)
        hosts_to_add.sort(key=lambda h: order.index(h.name))
        actions.append(AddHosts(desired.name, tuple(hosts_to_add), bridges))
    if links_to_add:
        actions.append(AddLinks(tuple(links_to_add), namespaces))
    return Plan(tuple(actions))


def plan_down(recorded: Lab, extra_namespaces: Iterable[str] = (), extra_bridges: Iterable[str] = ()) -> Plan:
    """Everything the lab owns: recorded objects plus any found by their ownership marks."""
    namespaces = sorted({h.namespace for h in recorded.hosts.values()} | set(extra_namespaces))
    bridges = sorted({n.bridge for n in recorded.networks.values()} | set(extra_bridges))
    actions: list[Action] = []
    if namespaces:
        actions.append(RemoveHosts(tuple(namespaces)))
    if bridges:
        actions.append(RemoveBridges(tuple(bridges)))
    return Plan(tuple(actions))
