"""The fake twins of every driver, for unit tests of the lab core, the plans and the features without root.

Each keeps what it was asked to make in plain sets and dicts, and can be told to fail a named operation
(``fail_on``), so rollback and "down goes on past errors" are tested for every feature.
:func:`fake_drivers` bundles one of each.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import FirewallError, KernelError
from ..model import Host, Lab, Network, Route
from ..naming import owner_alias
from ..paths import etc_netns_dir
from . import Drivers
from .nftables import FakeNft
from .nic import Nic
from .rtnl import LinkInfo, NewLink, RouteInfo

__all__ = ["FakeNft", "FakeKernel", "FakeSysctls", "FakeFiles", "FakeHostnamePins", "FakeProcesses",
           "FakeMachine", "FakeProber", "FakeDocker", "FakeNics", "fake_drivers"]


class _Failing:
    """``fail_on``: names of operations that raise, once each (a set, or one name): a fault that the rollback
    after it does not meet again."""

    error: type[Exception] = KernelError

    def __init__(self, fail_on: str | Iterable[str] | None = None) -> None:
        self.fail_on = {fail_on} if isinstance(fail_on, str) else set(fail_on or ())
        self.calls: list[str] = []

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if what in self.fail_on:
            self.fail_on.discard(what)
            raise self.error(f"{what}: injected failure")


#: What host_view shows as the address of an interface given none (the fake keeps one per interface).
_NO_IPV4 = ipaddress.IPv4Interface("0.0.0.0/32")


class FakeKernel(_Failing):
    def __init__(self, fail_on: str | Iterable[str] | None = None) -> None:
        super().__init__(fail_on)
        self.namespaces: set[str] = set()
        self.bridges: dict[str, str] = {}  # name -> alias
        self.veths: dict[str, str] = {}  # machine-side host veth -> alias
        self.link_ends: set[tuple[str, str]] = set()
        self.hairpin: set[str] = set()
        self.routes: dict[str, set[Route]] = {}  # namespace -> routes added by configure_host
        self.host_sysctls: dict[str, dict[str, str]] = {}  # namespace -> sysctls written inside it
        # What host_view and machine_links show: interfaces inside namespaces (namespace -> name -> address),
        # default routes (defaults: namespace -> gateway), bridge ports (veth -> bridge), and what is down
        # ((namespace or '' for the machine, name)).
        self.ifaces: dict[str, dict[str, ipaddress.IPv4Interface]] = {}
        self.defaults: dict[str, ipaddress.IPv4Address] = {}
        self.ports: dict[str, str] = {}
        self.peers: dict[tuple[str, str], tuple[str, str]] = {}  # a link's first end -> its other end
        self.kinds: dict[tuple[str, str], str] = {}  # (namespace, name) -> kind, of the links add_links made
        self.made: list[NewLink] = []  # what add_links was asked to make
        self.fdb: set[tuple[str, str, str]] = set()  # VXLAN forwarding entries (device, MAC, destination)
        self.underlay_mtu: int | None = None  # the MTU of the interface holding any address (None: no such one)
        self.down: set[tuple[str, str]] = set()
        self.gateway: ipaddress.IPv4Address | None = ipaddress.IPv4Address("198.51.100.1")
        self.sysctls: FakeSysctls | None = None  # an interface's conf keys come and go with it (fake_drivers)

    def _made(self, name: str) -> None:
        if self.sysctls is not None:
            default = self.sysctls.values.get("net.ipv4.conf.default.route_localnet", "0")
            self.sysctls.values[f"net.ipv4.conf.{name}.route_localnet"] = default

    def _gone(self, name: str) -> None:
        self.hairpin.discard(name)
        if self.sysctls is not None:
            self.sysctls.values.pop(f"net.ipv4.conf.{name}.route_localnet", None)

    def close(self) -> None:
        pass

    def named_namespaces(self) -> frozenset[str]:
        return frozenset(self.namespaces)

    def owned_links(self) -> list[LinkInfo]:
        index = {name: 100 + n for n, name in enumerate(self.bridges)}
        return [
            LinkInfo(index[name], name, "bridge", alias, 0, ("", name) not in self.down)
            for name, alias in self.bridges.items()
        ] + [
            LinkInfo(0, name, "veth", alias, index.get(self.ports.get(name, ""), 0), ("", name) not in self.down)
            for name, alias in self.veths.items()
        ]

    def machine_links(self) -> list[LinkInfo]:
        return self.owned_links()

    def observing(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def machine_networks(self) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
        return []

    def machine_addresses(self) -> frozenset[ipaddress.IPv4Address] | None:
        return frozenset({ipaddress.IPv4Address("198.51.100.2")})

    def host_view(self, namespace: str) -> tuple[list[LinkInfo], list[RouteInfo]] | None:
        if namespace not in self.namespaces:
            return None
        links = [LinkInfo(1, "lo", "", "", 0, (namespace, "lo") not in self.down,
                          (ipaddress.IPv4Interface("127.0.0.1/8"),))]
        for n, (name, address) in enumerate(self.ifaces.get(namespace, {}).items()):
            kind = self.kinds.get((namespace, name), "veth")
            links.append(LinkInfo(10 + n, name, kind, "", 0, (namespace, name) not in self.down, (address,)))
        gateway = self.defaults.get(namespace)
        routes = [RouteInfo(ipaddress.IPv4Network("0.0.0.0/0"), str(gateway), "")] if gateway else []
        routes += [RouteInfo(r.to, str(r.via), "") for r in sorted(self.routes.get(namespace, ()), key=str)]
        return links, routes

    def host_views(self, namespaces: list[str]) -> dict[str, tuple[list[LinkInfo], list[RouteInfo]] | None]:
        return {name: self.host_view(name) for name in namespaces}

    def read_host_sysctls(self, wanted: Mapping[str, list[str]]) -> dict[str, dict[str, str | None]]:
        """What ``configure_host`` wrote (a key never written reads as None)."""
        return {ns: {k: self.host_sysctls.get(ns, {}).get(k) for k in keys} for ns, keys in wanted.items()
                if ns in self.namespaces}

    def default_gateway(self) -> ipaddress.IPv4Address | None:
        return self.gateway

    def default_gateway6(self) -> ipaddress.IPv6Address | None:
        return None

    def set_link_state(self, ends: list[tuple[str, str]], up: bool) -> list[str]:
        self._call("set_link_state")
        for end in ends:
            namespace, name = end
            if (namespace and name != "lo" and name not in self.ifaces.get(namespace, {})) or (
                not namespace and name not in self.veths and name not in self.bridges
            ):
                return [f"set {name} in {namespace or 'the machine'}: No such device"]
            if up:
                self.down.discard(end)
            else:
                self.down.add(end)
                gateway = self.defaults.get(namespace) if namespace else None
                # IPv4 drops the routes through an interface that goes down
                if gateway is not None and name != "lo" and gateway in self.ifaces[namespace][name].network:
                    del self.defaults[namespace]
        return []

    def set_default_routes(self, routes: list[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]]) -> list[str]:
        self._call("set_default_routes")
        self.defaults.update({ns: gw for ns, gw in routes if isinstance(gw, ipaddress.IPv4Address)})
        return []

    def add_bridges(self, lab: Lab, networks: list[Network]) -> None:
        self._call("add_bridges")
        for n in networks:
            self.bridges[n.bridge] = owner_alias(lab.name, "net", n.name)
            self._made(n.bridge)

    def remove_links(self, names: list[str]) -> list[str]:
        self._call("remove_links")
        for name in names:
            self.bridges.pop(name, None)
            self.veths.pop(name, None)
            self.ports.pop(name, None)
            if self.ifaces.get("", {}).pop(name, None) is not None:  # a link add_links made on the machine
                self.fdb = {e for e in self.fdb if e[0] != name}
            namespace, peer = self.peers.pop(("", name), ("", ""))  # a veth's other end goes with it
            self.ifaces.get(namespace, {}).pop(peer, None)
            self._gone(name)
        return []

    def remove_links_later(self, names: list[str]) -> Callable[[], list[str]]:
        failures = self.remove_links(names)
        return lambda: failures

    def clear_stale_links(self, names: list[str]) -> list[str]:
        self._call("clear_stale_links")
        for name in names:
            self.veths.pop(name, None)
            self._gone(name)
        return []

    def add_hosts(self, lab: Lab, hosts: list[Host]) -> None:
        self._call("add_hosts")
        clash = {h.namespace for h in hosts if h.container is None} & self.namespaces
        missing = {h.namespace for h in hosts if h.container is not None} - self.namespaces
        if missing:  # a container host's namespace is named by the container's start (FakeDocker)
            raise KernelError(f"cannot open namespace {sorted(missing)[0]}")
        if clash:
            raise KernelError(f"namespace {sorted(clash)[0]} already exists")
        for h in hosts:
            self.namespaces.add(h.namespace)
            self.down = {d for d in self.down if d[0] != h.namespace}
            for i in h.interfaces:
                if i.host_veth and i.network:
                    self.veths[i.host_veth] = owner_alias(lab.name, "host", h.name, i.name)
                    self.ports[i.host_veth] = lab.networks[i.network].bridge
                    self.ifaces.setdefault(h.namespace, {})[i.name] = i.address
                    self.down.discard(("", i.host_veth))
                    self._made(i.host_veth)
            if h.gateway:
                self.defaults[h.namespace] = h.gateway

    def configure_host(self, namespace: str, routes: list[Route], sysctls: list[tuple[str, str]]) -> list[str]:
        self._call("configure_host")
        values = self.host_sysctls.setdefault(namespace, {})
        former = [values.get(key, "0") for key, _ in sysctls]
        values.update(sysctls)
        self.routes.setdefault(namespace, set()).update(routes)
        return former

    def unconfigure_host(self, namespace: str, routes: list[Route], sysctls: list[tuple[str, str]]) -> list[str]:
        self._call("unconfigure_host")
        self.routes.get(namespace, set()).difference_update(routes)
        self.host_sysctls.setdefault(namespace, {}).update(reversed(sysctls))
        return []

    def remove_namespaces(self, names: list[str]) -> list[str]:
        self._call("remove_namespaces")
        for name in names:
            self.namespaces.discard(name)
            self.ifaces.pop(name, None)
            self.defaults.pop(name, None)
            lab, _, host = name.partition("-")
            for veth, alias in list(self.veths.items()):  # they go with the namespace
                if alias.startswith(f"nslab:{lab}:host:{host}:"):
                    del self.veths[veth]
                    self._gone(veth)
        self.link_ends = {e for e in self.link_ends if e[0] not in names}
        self.kinds = {e: kind for e, kind in self.kinds.items() if e[0] not in names}
        for name in names:
            self.routes.pop(name, None)
            self.host_sysctls.pop(name, None)
        return []

    def add_links(self, links: list[NewLink]) -> None:
        """Each link's ends inside their namespaces (``ifaces``, with their first IPv4 address, as host_view
        shows them, of their kind), the first end in ``link_ends``, the pair in ``peers``; ``made``: the
        descriptions, in order."""
        self._call("add_links")
        for link in links:
            self.made.append(link)
            self.link_ends.add((link.end.namespace, link.end.name))
            if link.peer is not None:
                self.peers[(link.end.namespace, link.end.name)] = (link.peer.namespace, link.peer.name)
            for end in (link.end, link.peer):
                if end is not None:
                    address = next((a for a in end.addresses if isinstance(a, ipaddress.IPv4Interface)), _NO_IPV4)
                    self.ifaces.setdefault(end.namespace, {})[end.name] = address
                    self.kinds[(end.namespace, end.name)] = link.kind
                    self.down.discard((end.namespace, end.name))

    def remove_link_ends(self, ends: list[tuple[str, str]]) -> list[str]:
        self._call("remove_link_ends")
        self.link_ends -= set(ends)
        for end in ends:
            for namespace, ifname in (end, self.peers.pop(end, end)):
                self.ifaces.get(namespace, {}).pop(ifname, None)
                self.kinds.pop((namespace, ifname), None)
        return []

    def set_hairpin(self, on: list[str], off: list[str]) -> list[str]:
        self._call("set_hairpin")
        self.hairpin = (self.hairpin | set(on)) - set(off)
        return []

    def links_at(self, net_path: str) -> list[LinkInfo]:
        """``ifaces`` keyed by the path (a test puts a container's interfaces there), after ``lo``."""
        return [LinkInfo(1, "lo", "", "", 0, True)] + [
            LinkInfo(10 + n, name, "veth", "", 0, True) for n, name in enumerate(self.ifaces.get(net_path, {}))]

    def add_veth_at(self, net_path: str, ifname: str, index: int, mac: str, address: ipaddress.IPv4Interface,
                    veth: str) -> None:
        self._call("add_veth_at")
        self.ifaces.setdefault(net_path, {})[ifname] = address
        self.veths[veth] = ""
        self.peers[("", veth)] = (net_path, ifname)
        self._made(veth)

    def attach_to_bridge(self, name: str, bridge: str, alias: str) -> None:
        self._call("attach_to_bridge")
        if (name not in self.veths and name not in self.ifaces.get("", {})) or bridge not in self.bridges:
            raise KernelError(f"attach {name} to {bridge}: No such device")
        self.ports[name] = bridge
        self.veths[name] = alias

    def add_fdb(self, entries: list[tuple[str, str, str]]) -> None:
        self._call("add_fdb")
        missing = [d for d, _, _ in entries if d not in self.ifaces.get("", {})]
        if missing:
            raise KernelError(f"add forwarding entry on {missing[0]}: No such device")
        self.fdb.update(entries)

    def del_fdb(self, entries: list[tuple[str, str, str]]) -> None:
        self._call("del_fdb")
        self.fdb.difference_update(entries)

    def mtu_of_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int | None:
        return self.underlay_mtu

    def fdb_entries(self, devices: list[str]) -> list[tuple[str, str, str]]:
        return sorted(e for e in self.fdb if e[0] in devices and e[0] in self.ifaces.get("", {}))


class FakeNftables(FakeNft):
    """FakeNft that also keeps whether nslab's table is loaded (so the ruleset it lists follows the changes)."""

    def __init__(self, objects: list[dict[str, Any]] | None = None, fail_on: str | None = None) -> None:
        super().__init__(objects)
        self.fail_on = fail_on
        self.table: str | None = None  # the last table text loaded

    def run(self, text: str, json_output: bool = False) -> str:
        if text.strip() == "list ruleset" and json_output:
            table = [{"table": {"family": "inet", "name": "nslab", "handle": 1}}] if self.table else []
            chain = ""
            for line in (self.table or "").splitlines():
                if line.startswith("\tchain "):
                    chain = line.split()[1]
                    table.append({"chain": {"family": "inet", "table": "nslab", "name": chain}})
                elif 'comment "' in line:  # a rule, as nft lists it: its chain and comment
                    comment = line.rsplit('comment "', 1)[1].rstrip('"')
                    table.append({"rule": {"family": "inet", "table": "nslab", "chain": chain, "comment": comment}})
            return json.dumps({"nftables": self.objects + table})
        if self.fail_on == "run":
            raise FirewallError("nftables refused the change: injected failure")
        self.transactions.append(text)
        if "table inet nslab {" in text:
            self.table = text[text.index("table inet nslab {"):]
        elif "delete table inet nslab" in text:
            self.table = None
        return ""


class FakeSysctls(_Failing):
    def __init__(self, values: Mapping[str, str] | None = None, fail_on: str | Iterable[str] | None = None) -> None:
        super().__init__(fail_on)
        self.values = {"net.ipv4.ip_forward": "0", "net.ipv4.conf.default.route_localnet": "0", **(values or {})}

    def read(self, key: str) -> str:
        if key not in self.values:
            raise KernelError(f"cannot read sysctl {key}: No such file or directory")
        return self.values[key]

    def write(self, key: str, value: str) -> None:
        self._call(f"write {key}")
        self.values[key] = value

    def exists(self, key: str) -> bool:
        return key in self.values

    #: what a new namespace lacks or cannot write, as far as the fake knows (every other key is taken)
    UNUSABLE = {"net.ipv4.no_such_key": "unknown", "net.core.rmem_max": "unknown",
                "net.ipv4.conf.default.no_such_key": "unknown",
                "net.ipv4.tcp_available_congestion_control": "read-only"}

    def unusable_in_new_namespace(self, keys: list[str]) -> dict[str, str]:
        return {k: self.UNUSABLE[k] for k in keys if k in self.UNUSABLE}


class FakeFiles(_Failing):
    def __init__(self, files: Mapping[str, str] | None = None, fail_on: str | Iterable[str] | None = None) -> None:
        super().__init__(fail_on)
        self.files: dict[str, str] = dict(files or {})

    def read_text(self, path: str) -> str | None:
        return self.files.get(path)

    def read_json(self, path: str) -> Any:
        text = self.files.get(path)
        return None if text is None else json.loads(text)

    def write_json(self, path: str, data: Any) -> None:
        self._call("write_json")
        self.files[path] = json.dumps(data)

    def remove(self, path: str) -> None:
        self.files.pop(path, None)

    def write_netns_files(self, namespace: str, files: Mapping[str, str]) -> None:
        self._call("write_netns_files")
        for name, text in files.items():
            self.files[f"{etc_netns_dir(namespace)}/{name}"] = text

    def remove_netns_files(self, namespace: str) -> None:
        self._call("remove_netns_files")
        for path in [p for p in self.files if p.startswith(f"{etc_netns_dir(namespace)}/")]:
            del self.files[path]

    def prune_etc_netns(self) -> None:
        pass


class FakeHostnamePins(_Failing):
    def __init__(self, fail_on: str | Iterable[str] | None = None) -> None:
        super().__init__(fail_on)
        self.pins: dict[str, str] = {}  # path -> hostname
        self.dirs: set[str] = set()

    def is_kept(self, path: str) -> bool:
        return path in self.pins or path in self.dirs

    def hostnames(self, paths: list[str]) -> dict[str, str]:
        return {path: self.pins[path] for path in paths if path in self.pins}

    def keep(self, pins: Iterable[tuple[str, str]]) -> None:
        self._call("keep")
        for path, hostname in pins:
            self.dirs.add(path.rpartition("/")[0])
            self.pins[path] = hostname

    def drop(self, path: str) -> list[str]:
        self.pins.pop(path, None)
        return []

    def drop_dir(self, directory: str) -> list[str]:
        for path in [p for p in self.pins if p.startswith(directory + "/")]:
            del self.pins[path]
        self.dirs.discard(directory)
        return []


class FakeProcesses(_Failing):
    def __init__(self, fail_on: str | Iterable[str] | None = None) -> None:
        super().__init__(fail_on)
        self.running: dict[str, dict[str, Any]] = {}  # lab -> supervisor record
        self.next_pid = 1000
        self.inside: set[str] = set()  # namespaces with stray processes
        self.restarted: list[str] = []  # service ids (re)started by reloads
        self.misplaced: dict[int, list[str]] = {}  # pid -> what of its place a service's process is outside of

    def start_supervisor(self, lab: str, config: dict[str, Any]) -> dict[str, Any]:
        self._call("start_supervisor")
        self.next_pid += 1
        record = {"pid": self.next_pid, "start": 1, **config}
        self.running[lab] = record
        return record

    def stop_supervisor(self, lab: str, record: dict[str, Any] | None) -> list[str]:
        self._call("stop_supervisor")
        self.running.pop(lab, None)
        return []

    def reload_supervisor(self, lab: str, record: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        self._call("reload_supervisor")
        old = {s["id"]: s for s in self.running[lab].get("services", [])}
        self.restarted += [s["id"] for s in config.get("services", []) if old.get(s["id"]) != s]
        self.running[lab] = {"pid": record["pid"], "start": record["start"], **config}
        return self.running[lab]

    def is_alive(self, pid: int | None, started: int | None) -> bool:
        return any(r["pid"] == pid for r in self.running.values())

    def cgroup_root(self, lab: str) -> str | None:
        return f"/sys/fs/cgroup/nslab/{lab}-0000"

    def stop_inside(self, namespaces: list[str]) -> list[str]:
        self._call("stop_inside")
        self.inside -= set(namespaces)
        return []

    def outside(self, pid: int, net: str, uts: str | None, cgroup: str | None) -> list[str]:
        return self.misplaced.get(pid, [])


class FakeMachine:
    def __init__(self, listeners: list[tuple[str, ipaddress.IPv4Address | None, int, int]] | None = None,
                 bound: dict[str, set[int]] | None = None,
                 ephemeral: tuple[int, int, frozenset[int]] = (32768, 60999, frozenset())) -> None:
        self._listeners = list(listeners or [])
        self.bound = bound if bound is not None else {}  # proto -> ports held by sockets (besides listeners)
        self.ephemeral = ephemeral

    def bound_ports(self, proto: str) -> set[int]:
        return set(self.bound.get(proto, ())) | {port for p, _, port, _ in self._listeners if p == proto}

    def ephemeral_ports(self) -> tuple[int, int, frozenset[int]]:
        return self.ephemeral

    def listeners(self) -> list[tuple[str, ipaddress.IPv4Address | None, int, int]]:
        return list(self._listeners)

    def socket_owner(self, inode: int) -> str:
        return f"process 'fake' (inode {inode})"


class FakeShaper(_Failing):
    """Keeps what it was asked: tc lines and nft tables per namespace (None: the machine), the delayer."""

    def __init__(self, fail_on: str | Iterable[str] | None = None, modules: Iterable[str] = ("xt_NFQUEUE",)):
        super().__init__(fail_on)
        self.modules = set(modules)
        self.tc_lines: list[tuple[str | None, str]] = []
        self.tables: dict[str, list[str]] = {}  # namespace -> nft buffers run there
        self.delayer: dict[str, dict[str, Any]] = {}  # lab -> config
        self.queue_rules: dict[str, list[tuple[str, str, int, str]]] = {}  # namespace -> NFQUEUE rules
        self.stamps: dict[str, set[str]] = {}  # namespace -> interfaces whose receive timestamps are cleared

    def queues(self, namespace: str, rules: list[tuple[str, str, int, str]], ipv6: bool = False) -> None:
        self._call("queues")
        self.queue_rules[namespace] = list(rules)

    def has(self, module: str) -> bool:
        return module in self.modules

    def tc(self, namespace: str | None, lines: list[str]) -> None:
        self._call("tc")
        self.tc_lines += [(namespace, line) for line in lines]

    def nft(self, namespace: str, text: str) -> str:
        self._call("nft")
        self.tables.setdefault(namespace, []).append(text)
        return ""

    def stamp_on_delivery(self, namespace: str, devices: list[str], on: bool) -> None:
        self._call("stamp_on_delivery")
        found = self.stamps.setdefault(namespace, set())
        found.update(devices) if on else found.difference_update(devices)

    def start_delayer(self, lab: str, config: dict[str, Any]) -> None:
        self._call("start_delayer")
        self.delayer[lab] = config

    def delayer_running(self, lab: str) -> bool:
        return lab in self.delayer

    def stop_delayer(self, lab: str) -> list[str]:
        self._call("stop_delayer")
        self.delayer.pop(lab, None)
        return []


class FakeProber:
    """drivers/probe.py's twin: answers from ``answer(namespace, address) -> (reachable, result)``; keeps what
    it was asked."""

    def __init__(self, answer: Callable[[str, str], tuple[bool, str]]) -> None:
        self.answer = answer
        self.asked: list[tuple[tuple[str, str], str, int | None]] = []

    def probe(self, probes: Sequence[tuple[str, str]], proto: str, port: int | None,
              timeout: float) -> list[tuple[bool, str]]:
        self.asked += [(p, proto, port) for p in probes]
        return [self.answer(ns, address) for ns, address in probes]


class FakeNics(_Failing):
    """The machine's interfaces by name (:class:`~nslab.drivers.nic.Nic`), changed by the ``ip`` lines it is given:
    ``link set IF master BR|nomaster|up|down|mtu N|address MAC``, ``addr add|del A dev IF``, ``route replace ... dev
    IF`` (a route is kept on the interface named last); every line kept in ``lines``. ``vlan``: whether 802.1q is
    there."""

    def __init__(self, nics: Iterable[Nic] = (), vlan: bool = False, fail_on: str | Iterable[str] | None = None):
        super().__init__(fail_on)
        self.nics = {n.name: n for n in nics}
        self.vlan = vlan
        self.lines: list[str] = []

    def interface(self, name: str) -> Nic | None:
        return self.nics.get(name)

    def has_vlan(self) -> bool:
        return self.vlan

    def change(self, lines: list[str], force: bool = False) -> None:
        self._call("change")
        for line in lines:
            self.lines.append(line)
            self._line(line.split())

    def _line(self, words: list[str]) -> None:
        from ..values import replace

        dev = words[3] if words[1:3] == ["link", "set"] else words[words.index("dev") + 1]
        nic = self.nics.setdefault(dev, Nic(dev, kind="bridge", up=True))
        if words[1:3] == ["link", "set"]:
            nic = self._set(nic, words[4:])
        elif words[1] == "addr":
            address = words[3]
            kept = tuple(a for a in nic.addresses if a != address)
            nic = replace(nic, addresses=kept + ((address,) if words[2] == "add" else ()))
        elif words[1:3] == ["route", "replace"]:
            route = " ".join(words[3:words.index("dev")])
            for name, other in self.nics.items():
                self.nics[name] = replace(other, routes=tuple(r for r in other.routes if r != route))
            nic = replace(self.nics[dev], routes=(*self.nics[dev].routes, route))
        self.nics[dev] = nic


    @staticmethod
    def _set(nic: Nic, setting: list[str]) -> Nic:
        """``nic`` after ``ip link set IF SETTING``."""
        from ..values import replace

        if setting[:1] == ["master"]:
            return replace(nic, master=setting[1])
        if setting[:1] == ["nomaster"]:
            return replace(nic, master="")
        if setting[:1] in (["up"], ["down"]):
            return replace(nic, up=setting[0] == "up")
        if setting[:1] == ["mtu"]:
            return replace(nic, mtu=int(setting[1]))
        if setting[:1] == ["address"]:
            return replace(nic, mac=setting[1])
        return nic


class FakeDocker(_Failing):
    """Docker with ``images``; containers kept as name -> {"Id", "Config", "Labels", "Pid", "Running"}. Its
    ``kernel`` (set by :func:`fake_drivers`) gets the namespaces named after containers."""

    error = KernelError

    def __init__(self, images: Iterable[str] = (), running: bool = True,
                 fail_on: str | Iterable[str] | None = None, bare: Iterable[str] = ()) -> None:
        super().__init__(fail_on)
        self.socket = "/var/run/docker.sock"
        self.images = set(images) | set(bare)
        self.bare = set(bare)  # images without a command (docker import)
        self.running = running
        self.containers: dict[str, dict[str, Any]] = {}
        self.kernel: FakeKernel | None = None
        self.pulled: list[str] = []
        self._next = 100

    def ping(self) -> None:
        from ..errors import EnvironmentProblem

        self._call("ping")
        if not self.running:
            raise EnvironmentProblem(f"Docker is not running (nothing answers on {self.socket})")

    def image_exists(self, image: str) -> bool:
        self.ping()
        return image in self.images

    def image_command(self, image: str) -> list[str]:
        return ["sh"] if image in self.images and image not in self.bare else []

    def pull(self, image: str) -> None:
        self._call("pull")
        self.pulled.append(image)
        self.images.add(image)

    def create(self, name: str, config: dict[str, Any]) -> str:
        self._call("create")
        if name in self.containers:
            raise KernelError(f"docker: cannot create container {name}: the name is in use")
        if config.get("Image") not in self.images:
            raise KernelError(f"docker: no such image {config.get('Image')}")
        self._next += 1
        self.containers[name] = {"Id": f"id{self._next}", "Name": name, "Config": config,
                                 "Labels": dict(config.get("Labels") or {}), "Pid": 0, "Running": False}
        return f"id{self._next}"

    def _find(self, ident: str) -> str | None:
        return next((n for n, c in self.containers.items() if ident in (n, c["Id"])), None)

    def start(self, ident: str) -> int:
        self._call("start")
        name = self._find(ident)
        if name is None:
            raise KernelError(f"docker: no container {ident}")
        self._next += 1
        self.containers[name].update(Pid=self._next, Running=True, Status="running")
        return self._next

    def stop(self, ident: str, timeout: int = 10) -> None:
        self._call("stop")
        name = self._find(ident)
        if name is None:
            raise KernelError(f"docker: no container {ident}")
        self.containers[name].update(Pid=0, Running=False, Status="exited")

    def inspect(self, ident: str) -> dict[str, Any] | None:
        name = self._find(ident)
        if name is None:
            return None
        c = self.containers[name]
        return {"Id": c["Id"], "Name": "/" + name, "Config": {**c["Config"], "Labels": c["Labels"]},
                "State": {"Running": c["Running"], "Pid": c["Pid"], "Status": c.get("Status", "created")}}

    def remove(self, ident: str) -> list[str]:
        self._call("remove")
        name = self._find(ident)
        if name is not None:
            del self.containers[name]
        return []

    def labelled(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [{"Id": c["Id"], "Names": ["/" + n], "Labels": c["Labels"], "State": "running" if c["Running"]
                 else "created", "Status": ""} for n, c in self.containers.items()
                if all(c["Labels"].get(k) == v for k, v in labels.items())]

    def logs(self, ident: str, follow: bool = False, tail: int | None = None, timestamps: bool = False,
             since: float | None = None) -> Iterator[tuple[int, bytes]]:
        yield 1, f"logs of {ident}\n".encode()

    def read_file(self, ident: str, path: str) -> str | None:
        name = self._find(ident)
        return self.containers[name].get("files", {}).get(path) if name else None

    def write_file(self, ident: str, path: str, text: str) -> None:
        self._call("write_file")
        name = self._find(ident)
        if name is None or not self.containers[name]["Running"]:
            raise KernelError(f"docker: container {ident} is not running")
        self.containers[name].setdefault("files", {})[path] = text

    def name_netns(self, name: str, pid: int) -> None:
        self._call("name_netns")
        if self.kernel is not None:
            if name in self.kernel.namespaces:
                raise KernelError(f"namespace {name} already exists (not made by this lab)")
            self.kernel.namespaces.add(name)


def fake_drivers(**replace: Any) -> Drivers:
    """One fake of each driver; keywords replace one (``fake_drivers(sysctl=FakeSysctls(fail_on=...))``)."""
    parts: dict[str, Any] = {
        "kernel": FakeKernel(), "nft": FakeNftables(), "sysctl": FakeSysctls(), "files": FakeFiles(),
        "uts": FakeHostnamePins(), "processes": FakeProcesses(), "machine": FakeMachine(),
        "shaper": FakeShaper(), "docker": FakeDocker(), "nics": FakeNics(),
    }
    parts.update(replace)
    if isinstance(parts["kernel"], FakeKernel) and isinstance(parts["sysctl"], FakeSysctls):
        parts["kernel"].sysctls = parts["sysctl"]
    if isinstance(parts["kernel"], FakeKernel) and isinstance(parts["docker"], FakeDocker):
        parts["docker"].kernel = parts["kernel"]
    return Drivers(**parts)
