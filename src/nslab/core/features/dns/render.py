"""Name resolution inside hosts: the files under ``/etc/netns/<namespace>/`` and where upstream DNS is.

``ip netns exec`` and ``nslab exec`` bind every file of ``/etc/netns/<namespace>/`` over its ``/etc`` twin,
so each host gets its own ``hosts`` (every other host of the lab by ``name`` and ``name.<lab>``) and
``resolv.conf``. Everything here is pure (unit-tested): features/dns/__init__.py plans the writes, the files
driver does them.

Upstream discovery (:func:`discover_upstream`) solves the classic pitfall: the machine's ``/etc/resolv.conf``
names a loopback stub (systemd-resolved's 127.0.0.53, a dnsmasq on 127.0.0.1, ``::1``) that does not exist
inside a namespace. In order:

1. non-loopback IPv4 servers of ``/etc/resolv.conf`` are used as they are;
2. otherwise systemd-resolved's own upstream list ``/run/systemd/resolve/resolv.conf``;
3. otherwise the loopback servers become *stubs*: hosts use their gateway (the bridge address on the
   machine) as nameserver, and a small forwarder in the lab's supervisor relays to the stub.

A loopback address is never written into a host. A host with no NAT network (only internal networks or
links) gets no nameserver at all: lab names still resolve from ``hosts``, and nothing leaves the lab.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import Any

from ....drivers.files import read_text
from ....model import Host, Lab
from ....values import Value

RESOLV_CONF = "/etc/resolv.conf"
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"

#: A domain in ``dns_search``: dot-separated labels of letters, digits, '-' and '_'.
SEARCH_DOMAIN = re.compile(r"^(?=.{1,253}\.?$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                           r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$")


class ResolvConf(Value):
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


def parse_resolv_conf(text: str) -> ResolvConf:
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        word, *rest = line.split()
        if word == "nameserver" and rest:
            address = rest[0].split("%", 1)[0]  # fe80::1%eth0
            try:
                servers.append(str(ipaddress.ip_address(address)))
            except ValueError:
                continue
        elif word in ("search", "domain"):
            search = list(rest)  # the last search/domain line wins (resolv.conf(5))
        elif word == "options":
            options += rest
    return ResolvConf(tuple(servers), tuple(search), tuple(options))


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def _read(path: str, read: Callable[[str], str | None]) -> ResolvConf | None:
    text = read(path)
    return None if text is None else parse_resolv_conf(text)


class Upstream(Value):
    """Where a NAT host's queries go when the lab file does not say."""

    servers: tuple[str, ...] = ()  # reachable from a host through the machine (IPv4, not loopback)
    stubs: tuple[str, ...] = ()  # loopback resolvers on the machine: reached through the lab's forwarder
    search: tuple[str, ...] = ()
    source: str = ""  # the file the servers came from
    servers6: tuple[str, ...] = ()  # the machine's global IPv6 servers: for hosts with an IPv6 way out

    def to_json(self) -> dict[str, Any]:
        return {"servers": list(self.servers), "stubs": list(self.stubs), "search": list(self.search),
                "source": self.source, **({"servers6": list(self.servers6)} if self.servers6 else {})}


def _usable(servers: Sequence[str]) -> tuple[str, ...]:
    """Servers a lab host can reach through NAT: IPv4 (hosts have IPv4 only), not loopback."""
    return tuple(s for s in servers if ipaddress.ip_address(s).version == 4 and not is_loopback(s))


def discover_upstream(
    resolv_conf: str = RESOLV_CONF,
    resolved_upstream: str = RESOLVED_UPSTREAM,
    read: Callable[[str], str | None] = read_text,
) -> Upstream:
    machine = _read(resolv_conf, read) or ResolvConf()
    direct = _usable(machine.nameservers)
    direct6 = tuple(s for s in machine.nameservers if ipaddress.ip_address(s).version == 6
                    and not ipaddress.ip_address(s).is_loopback and not ipaddress.ip_address(s).is_link_local)
    if direct:
        return Upstream(servers=direct, search=machine.search, source=resolv_conf, servers6=direct6)
    stubs = tuple(s for s in machine.nameservers if is_loopback(s))
    resolved = _read(resolved_upstream, read)
    if resolved is not None and _usable(resolved.nameservers):
        return Upstream(servers=_usable(resolved.nameservers), search=machine.search or resolved.search,
                        source=resolved_upstream, servers6=direct6)
    if not machine.nameservers and resolved is None:
        stubs = ("127.0.0.1",)  # glibc's default when resolv.conf names no server
    return Upstream(stubs=stubs, search=machine.search, source=resolv_conf, servers6=direct6)


class HostDns(Value):
    """What one host's resolv.conf says, and why (shown by ``status``)."""

    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    via: str = ""  # "lab file", "machine (<file>)", "forwarder to <stub>", "none: ..."
    forward: bool = False  # the nameserver is the gateway; the lab's forwarder relays to the stubs
    aaaa: bool = False  # the host has IPv6 (a dual-stack network): AAAA queries are worth asking

    def to_json(self) -> dict[str, Any]:
        return {"nameservers": list(self.nameservers), "search": list(self.search), "via": self.via}


def host_dns(host: Host, upstream: Upstream) -> HostDns:
    found = _host_dns(host, upstream)
    if any(i.address6 for i in host.interfaces):
        found = HostDns(found.nameservers, found.search, found.via, found.forward, aaaa=True)
    return found


def _host_dns(host: Host, upstream: Upstream) -> HostDns:
    explicit, search_override = host.dns.nameservers, host.dns.search
    if explicit is not None:
        return HostDns(explicit, search_override or (), via="lab file")
    return _machine_dns(host, upstream, search_override)


def _machine_dns(host: Host, upstream: Upstream, search_override: tuple[str, ...] | None) -> HostDns:
    """A host's resolvers when the lab file names none: the machine's (through a forwarder when they are
    stubs on the machine's loopback), none without a NAT network."""
    if host.gateway is None:
        return HostDns((), search_override or (), via="none: no NAT network (lab names only)")
    search = search_override if search_override is not None else upstream.search
    servers = upstream.servers + (upstream.servers6 if host.gateway6 is not None else ())
    if upstream.servers or (servers and not upstream.stubs):
        return HostDns(servers[:3], search, via=f"machine ({upstream.source})")  # glibc reads three
    if upstream.stubs:
        return HostDns((str(host.gateway),), search, via=f"forwarder to {', '.join(upstream.stubs)}", forward=True)
    return HostDns((), search, via="none: the machine has no resolver")


def render_resolv_conf(lab_name: str, dns: HostDns) -> str:
    from ....naming import is_run_lab

    gone = "removed when the run ends" if is_run_lab(lab_name) else "removed by nslab down"
    who = "nslab run" if is_run_lab(lab_name) else f"lab {lab_name}"
    via = "--dns" if is_run_lab(lab_name) and dns.via == "lab file" else dns.via
    lines = [f"# written by nslab for {who}; {gone}", f"# nameservers: {via}"]
    lines += [f"nameserver {s}" for s in dns.nameservers]
    if dns.search:
        lines.append("search " + " ".join(dns.search))
    # IPv4-only hosts: no AAAA queries (glibc >= 2.36), so `getent hosts web2` answers from the hosts file at
    # once instead of asking upstream for an IPv6 address first (the hosts file's IPv6 lines still count).
    options = [] if dns.aaaa else ["no-aaaa"]
    if not dns.nameservers:
        # glibc then tries 127.0.0.1 inside the namespace, where nothing listens: fail fast.
        options += ["timeout:1", "attempts:1"]
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


class HostsFiles:
    """Every host's ``hosts`` file of one lab, rendered with shared work.

    Which address of another host a host writes down depends only on the networks and links it is on
    (:func:`_reachable_address`), so hosts that share those (all hosts of a one-bridge lab) share one list of
    lines: a lab of N such hosts costs O(N) lines to decide instead of O(N^2). The bytes written stay N lines
    per host.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.head = [
            f"# written by nslab for lab {lab.name}: every host as NAME and NAME.{lab.name}",
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
        ]
        self.names = {h.name: " ".join(_names(lab, h)) for h in lab.hosts.values()}
        # Per host: its (network, address) and (link, address) pairs, its address seen from elsewhere.
        self.on_networks: dict[str, list[tuple[str, str]]] = {}
        self.on_links: dict[str, list[tuple[int, str]]] = {}
        self.fallback: dict[str, str | None] = {}
        #: an IPv4 address -> the IPv6 address of the same interface (dual-stack networks): named alike
        self.v6 = {str(i.address.ip): str(i.address6.ip) for h in lab.hosts.values() for i in h.interfaces
                   if i.address6}
        for h in lab.hosts.values():
            self._place(h)
        self._views: dict[tuple[frozenset[str], frozenset[int]], tuple[list[str], dict[str, int]]] = {}

    def _place(self, h: Host) -> None:
        """Note where ``h`` can be reached: on each network, on each link, and from elsewhere (NAT first)."""
        addresses = [(i, str(i.address.ip)) for i in h.interfaces]
        self.on_networks[h.name] = [(i.network, a) for i, a in addresses if i.network]
        self.on_links[h.name] = [(i.link, a) for i, a in addresses if i.link is not None]
        nat = next((a for i, a in addresses if i.network and not self.lab.networks[i.network].internal), None)
        self.fallback[h.name] = nat or (addresses[0][1] if addresses else None)

    def _view(self, me: Host) -> tuple[list[str], dict[str, int]]:
        """The lines naming every host as ``me`` reaches it (``me`` included), and each host's position."""
        key = (
            frozenset(i.network for i in me.interfaces if i.network),
            frozenset(i.link for i in me.interfaces if i.link is not None),
        )
        view = self._views.get(key)
        if view is None:
            mine, my_links = key
            lines: list[str] = []
            where: dict[str, int] = {}
            for name in self.lab.hosts:
                address = next((a for n, a in self.on_networks[name] if n in mine), None)
                if address is None:
                    address = next((a for k, a in self.on_links[name] if k in my_links), None)
                if address is None:
                    address = self.fallback[name]
                if address is not None:
                    where[name] = len(lines)
                    lines.append(self._entry(address, name))
            view = self._views[key] = (lines, where)
        return view

    def _entry(self, address: str, name: str) -> str:
        """``ADDRESS\tNAMES``, and ``ADDRESS6\tNAMES`` below it when that interface has IPv6 too."""
        v6 = self.v6.get(address)
        entry = f"{address}\t{self.names[name]}"
        return entry if v6 is None else f"{entry}\n{v6}\t{self.names[name]}"

    def render(self, me: Host) -> str:
        lines, where = self._view(me)
        own = str(me.interfaces[0].address.ip) if me.interfaces else "127.0.1.1"
        k = where.get(me.name)
        others = lines if k is None else lines[:k] + lines[k + 1 :]
        return "\n".join([*self.head, self._entry(own, me.name), *others]) + "\n"


def _reachable_address(lab: Lab, me: Host, other: Host) -> str | None:
    """The address of ``other`` that ``me`` reaches: a shared network, a shared link, else a NAT address."""
    mine = {i.network for i in me.interfaces if i.network}
    for iface in other.interfaces:
        if iface.network and iface.network in mine:
            return str(iface.address.ip)
    my_links = {i.link for i in me.interfaces if i.link is not None}
    for iface in other.interfaces:
        if iface.link is not None and iface.link in my_links:
            return str(iface.address.ip)
    for iface in other.interfaces:
        if iface.network and not lab.networks[iface.network].internal:
            return str(iface.address.ip)
    return str(other.interfaces[0].address.ip) if other.interfaces else None


def render_hosts(lab: Lab, me: Host) -> str:
    """One host's ``hosts`` file (for all hosts of a lab, use one :class:`HostsFiles`)."""
    return HostsFiles(lab).render(me)


def _names(lab: Lab, host: Host) -> list[str]:
    names = [host.name, f"{host.name}.{lab.name}"]
    if host.hostname not in names:
        names.append(host.hostname)
    return names
