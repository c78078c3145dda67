"""What ``nslab doctor`` looks at: one :class:`NsView` per namespace, one :class:`MachineView`.

The views are plain values the checks (:mod:`nslab.tools.doctor.checks`) read; :func:`observe_namespace` and
:func:`observe_machine` fill them from the live machine, read-only: namespaces are opened without creating
anything (``Target.open``), links and routes come from the netlink codec (drivers/rtnl.py), sysctls and
sockets from /proc (drivers/sysctl.py, drivers/procfs.py), the ruleset from drivers/nftables.py, and the
only packets sent are one ARP request per gateway and one DNS query per nameserver the namespace's own
resolv.conf names (drivers/probes.py).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...drivers.rtnl import LinkInfo, RouteInfo
from ...paths import etc_netns_dir
from .. import is_address

if TYPE_CHECKING:
    from ...core.state import LabState
    from ...drivers import Drivers
    from ...model import Host, Interface
    from ...ns.targets import Target


#: An interface's MTU when the lab file sets none (the kernel's for a veth).
DEFAULT_MTU = 1500


@dataclass
class NsView:
    label: str  # "demo/web1", "netns blue", "pid 42"
    text: str  # the target as typed (for `nslab exec TEXT -- ...` fixes)
    netns: str | None = None  # an `ip netns` name, for `ip -n NAME ...` fixes
    lab: str | None = None
    links: list[LinkInfo] = field(default_factory=list)
    routes: list[RouteInfo] = field(default_factory=list)
    ip_forward: str = "0"
    rp_filter: dict[str, int] = field(default_factory=dict)  # "all", "default" and interface names
    resolv_path: str = "/etc/resolv.conf"
    nameservers: list[str] = field(default_factory=list)
    udp53: set[str] = field(default_factory=set)  # local addresses with a UDP socket on port 53
    dns_answers: dict[str, str] = field(default_factory=dict)  # nameserver -> "ok" or why not
    gateway_arp: dict[str, tuple[str, bool]] = field(default_factory=dict)  # gateway -> (device, answered)
    to: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    routes6: list[RouteInfo] = field(default_factory=list)  # read when ``to`` is an IPv6 address
    forwards: bool = False  # another namespace routes through this one (or, for a lab host, its sysctls say so)
    #: a lab host: what the reachability model expects of it (tools/reach.py), instead of guesses
    planned: bool = False
    default_via: tuple[str, str] | None = None  # (gateway, device) of the IPv4 default route the model uses

    def ip(self, args: str) -> str:
        return f"ip -n {self.netns} {args}" if self.netns else f"nslab exec {self.text} -- ip {args}"

    def exec_prefix(self) -> str:
        return f"ip netns exec {self.netns} " if self.netns else f"nslab exec {self.text} -- "

    def sysctl(self, assignment: str) -> str:
        return f"{self.exec_prefix()}sysctl -w {assignment}"

    def etc_resolv_hint(self) -> str:
        return os.path.join(etc_netns_dir(self.netns), "resolv.conf") if self.netns else \
            "the namespace's /etc/resolv.conf"

    def peer_fix(self, link: LinkInfo) -> tuple[str, ...]:
        if link.kind == "veth":
            return (self.ip(f"link show {link.name}  # its peer is index {link.peer}: ip link set PEER up"),)
        return (self.ip(f"link show {link.name}"),)


@dataclass
class LabView:
    name: str
    source: str = ""
    nat_networks: list[tuple[str, ipaddress.IPv4Network, str]] = field(default_factory=list)  # name, subnet, br
    all_networks: list[tuple[str, ipaddress.IPv4Network, str]] = field(default_factory=list)
    published: bool = False
    mtus: dict[str, dict[str, int]] = field(default_factory=dict)  # network -> {"where": mtu}
    mtu_commands: dict[str, str] = field(default_factory=dict)  # "where" -> command with {mtu}
    mtu_planned: dict[str, int] = field(default_factory=dict)  # "where" -> the MTU the lab file asks for

    def mtu_fix(self, where: str, mtu: int) -> str:
        return self.mtu_commands.get(where, "# set the MTU of {where} to {mtu}").format(mtu=mtu, where=where)


@dataclass
class MachineView:
    ip_forward: str = "1"
    labs: list[LabView] = field(default_factory=list)
    foreign_drops: list[tuple[str, str, str]] = field(default_factory=list)  # (family, table, chain)
    docker_user: bool = False
    ruleset_lines: list[str] = field(default_factory=list)
    foreign_networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    def lab_bridges(self) -> list[str]:
        return sorted({br for lab in self.labs for _name, _subnet, br in lab.nat_networks})


# ------------------------------------------------------------------------------------------------
# Live observation
# ------------------------------------------------------------------------------------------------


def _resolv_path(target: Target) -> str:
    if target.netns_name:
        etc = os.path.join(etc_netns_dir(target.netns_name), "resolv.conf")
        if os.path.exists(etc):
            return etc
    if target.pid is not None:
        return f"/proc/{target.pid}/root/etc/resolv.conf"
    return "/etc/resolv.conf"


def nameservers(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            out.append(fields[1].split("%")[0])
    return out


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _sysctl_int(key: str) -> int:
    from ...drivers import sysctl
    from ...errors import KernelError

    try:
        return int(sysctl.read(key))
    except (ValueError, KernelError):  # a key this kernel lacks reads as 0
        return 0


def _inside(view: NsView) -> None:
    """Run in a thread that entered the namespace: links, routes, sysctls, sockets, probes."""
    from ...drivers import probes, procfs, rtnl, sysctl

    with rtnl.open_socket() as sock:
        view.links = rtnl.links(sock)
        view.routes = rtnl.routes(sock)
        if view.to is not None and view.to.version == 6:
            view.routes6 = rtnl.routes(sock, view.links, socket.AF_INET6)
    view.ip_forward = sysctl.read("net.ipv4.ip_forward")
    view.rp_filter = {name: _sysctl_int(f"net.ipv4.conf.{name}.rp_filter")
                      for name in ["all", "default", *(lk.name for lk in view.links)]}
    view.udp53 = procfs.udp_local_addresses(53)
    _ask_gateways(view)
    for server in view.nameservers:
        address = ipaddress.ip_address(server) if is_address(server) else None
        if address is None or (address.is_loopback and not view.udp53 & {server, "0.0.0.0"}):
            continue
        view.dns_answers[server] = probes.dns(server)


def _ask_gateways(view: NsView) -> None:
    """One ARP request to each gateway of the namespace's routes (over an interface that is up, from its
    IPv4 address): whether the next hop answers."""
    from ...drivers import probes

    by_name = {lk.name: lk for lk in view.links}
    for route in view.routes:
        link = by_name.get(route.device)
        if not route.gateway or link is None or not link.up or route.gateway in view.gateway_arp:
            continue
        source = next((str(a.ip) for a in link.addresses if a.version == 4), None)
        if source is not None:
            view.gateway_arp[route.gateway] = (route.device, probes.arp(route.device, source, route.gateway))



def observe_namespace(target: Target, to: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None) -> NsView:
    from ... import linux

    view = NsView(label=target.label, text=target.text, netns=target.netns_name, lab=target.lab, to=to)
    view.resolv_path = _resolv_path(target)
    view.nameservers = nameservers(_read(view.resolv_path))
    fd = target.open("net")
    try:
        linux.in_namespace(fd, lambda: _inside(view), name=f"nslab-doctor {target.text}")
    finally:
        os.close(fd)
    return view


def lab_view(st: LabState, machine_links: list[LinkInfo], hosts: dict[str, NsView]) -> LabView:
    lab = st.lab
    view = LabView(name=lab.name, source=lab.source)
    for n in lab.networks.values():
        entry = (n.name, ipaddress.IPv4Network(n.subnet), n.bridge)
        view.all_networks.append(entry)
        if not n.internal:
            view.nat_networks.append(entry)
    fw = st.extra.get("firewall") or {}
    view.published = bool(isinstance(fw, dict) and fw.get("ports"))
    _lab_mtus(st, machine_links, hosts, view)
    return view


def _lab_mtus(st: LabState, machine_links: list[LinkInfo], hosts: dict[str, NsView], view: LabView) -> None:
    """The MTU of each network's bridge, its ports on the machine and the host ends inside."""
    by_name = {lk.name: lk for lk in machine_links}
    for n in st.lab.networks.values():
        sizes: dict[str, int] = {}
        bridge = by_name.get(n.bridge)
        ports = []
        for h in st.lab.hosts.values():
            inside = {lk.name: lk for lk in hosts[h.name].links} if h.name in hosts else {}
            for iface in h.interfaces:
                if iface.network == n.name:
                    _veth_mtus(h, iface, by_name, inside, sizes, view)
                    ports.append(iface.mtu or DEFAULT_MTU)
        if bridge is not None and bridge.mtu:
            sizes[f"bridge {n.bridge}"] = bridge.mtu
            view.mtu_commands[f"bridge {n.bridge}"] = f"ip link set {n.bridge} mtu {{mtu}}"
            view.mtu_planned[f"bridge {n.bridge}"] = min(ports, default=bridge.mtu)  # a bridge takes its ports' least
        if sizes:
            view.mtus[n.name] = sizes


def _veth_mtus(host: Host, iface: Interface, machine: dict[str, LinkInfo], inside: dict[str, LinkInfo],
               sizes: dict[str, int], view: LabView) -> None:
    """The MTU of both ends of one host's veth: the bridge port on the machine and the interface inside."""
    port = machine.get(iface.host_veth or "")
    if port is not None and port.mtu:
        sizes[f"port {port.name}"] = port.mtu
        view.mtu_commands[f"port {port.name}"] = f"ip link set {port.name} mtu {{mtu}}"
        view.mtu_planned[f"port {port.name}"] = iface.mtu or DEFAULT_MTU
    if iface.name in inside and inside[iface.name].mtu:
        where = f"{host.name}:{iface.name}"
        sizes[where] = inside[iface.name].mtu
        view.mtu_commands[where] = f"ip -n {host.namespace} link set {iface.name} mtu {{mtu}}"
        view.mtu_planned[where] = iface.mtu or DEFAULT_MTU


def observe_machine(drivers: Drivers, labs: list[LabState], hosts: dict[str, NsView]) -> MachineView:
    from ...core.features.firewall.render import Observed
    from ..throwaway import _find_leftovers

    view = MachineView(ip_forward=drivers.sysctl.read("net.ipv4.ip_forward"))
    objects: list[dict[str, Any]] = drivers.nft.ruleset()
    seen = Observed.from_ruleset(objects)
    view.docker_user = seen.docker_user
    for where in seen.foreign_drops:
        _t, family, table, _c, chain = where.split(" ", 4)  # "table ip filter chain FORWARD"
        view.foreign_drops.append((family, table, chain))
    view.ruleset_lines = drivers.nft.run("list ruleset").splitlines()
    view.foreign_networks = drivers.kernel.machine_networks()
    machine_links = drivers.kernel.machine_links()
    view.labs = [lab_view(st, machine_links, {k.split("/", 1)[1]: v for k, v in hosts.items()
                                              if k.startswith(st.lab.name + "/")}) for st in labs]
    reserved, victims = _find_leftovers()
    view.leftovers = [f"state of run {name}" for name in reserved if name not in victims]
    view.leftovers += [f"lab {name} ({why})" for name, why in sorted(victims.items())]
    return view
