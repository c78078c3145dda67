"""Labs across machines: one lab file, each machine building its own part, joined by kernel VXLAN.

Resolving (called by resolve.py, pure and the same on every machine: nothing here reads the machine):

- ``machines:`` as :class:`~nslab.model.Machine` values; each host's machine (``machine:``, else ``placement:
  spread``: a stable hash of the host's name over the machines in file order, else the only machine);
- each network's home (``home:``, else the first machine in file order with a member) and the machines that
  have a bridge of it (members or home); a VNI for every network spanning machines and every link between
  machines (:func:`vni`: a 24-bit hash of (lab, kind, name), the next hash on a clash, networks then links in
  file order);
- the overlay MTU: ``overlay.mtu``, or ``auto``: ``overlay.underlay_mtu`` (1500 unless written: every machine
  is assumed to have it, and ``up`` refuses a machine whose underlay interface has less) less the VXLAN
  overhead, 50 bytes over IPv4 and 70 over IPv6;
- the lab's automatic IPv6 /48 and where its automatic IPv4 subnets start, from its name alone.

Per machine: :func:`part` cuts the machine's part out of the whole lab (what its state records), and
:func:`local_machine` finds which machine this is (the one whose address is local).

Applying: :class:`AddOverlay` makes, per network spanning machines that has a bridge here, one VXLAN device in
the machine's namespace (local = this machine's address, the lab's UDP port, the network's VNI, learning off,
the overlay MTU) enslaved to the bridge, with its forwarding entries: an all-zero one per other machine of the
network (broadcast and unknown unicast go to each once; the bridge never floods a frame back out of the port it
came in by), one per remote host interface on the network (its derived MAC, to its machine) and, off the
network's home, one for the gateway's MAC (to the home).
:func:`drift` finds a device missing, down, off its bridge, or an entry lost.

Replaces: ``ip link add NAME type vxlan id VNI local ADDR dstport PORT nolearning``, ``ip link set NAME master
BRIDGE up``, ``bridge fdb append 00:00:00:00:00:00 dev NAME dst M self permanent``, ``bridge fdb replace MAC dev
NAME dst M self permanent``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import MachineError
from ..model import Host, IPv4Addr, IPv6Addr, IPv6Net, Lab, Link, Machine, Network
from ..naming import LINK_GROUP, blake2s, mac_address, owner_alias, short_hash
from ..values import replace
from .difference import Difference
from .plan import Action, Steps, raise_on

if TYPE_CHECKING:
    from ..drivers import Drivers
    from ..drivers.rtnl import NewLink
    from .spec import LabSpec

Report = Callable[[tuple[Any, ...], str], None]

#: VXLAN's overhead over an IPv4 underlay (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14), and IPv6's.
OVERHEAD4, OVERHEAD6 = 50, 70
ZERO_MAC = "00:00:00:00:00:00"
#: The kind of a link between hosts on two machines (core/kinds/vxlan.py): chosen by resolve, never written.
LINK_KIND = "vxlan"
#: VXLAN attributes (linux/if_link.h): IFLA_VXLAN_*
VXLAN_ID, VXLAN_LOCAL, VXLAN_LEARNING, VXLAN_PORT, VXLAN_LOCAL6, VXLAN_GROUP, VXLAN_GROUP6 = 1, 4, 7, 15, 17, 2, 16


# --- resolve ---------------------------------------------------------------------------------------------------
def machines(spec: LabSpec, report: Report) -> dict[str, Machine]:
    """``machines:`` in file order; names as objects' names, each address once, one address family."""
    from .spec import OBJECT_NAME, name_rule

    out: dict[str, Machine] = {}
    seen: dict[IPv4Addr | IPv6Addr, str] = {}
    for name, m in spec.machines.items():
        if not OBJECT_NAME.fullmatch(name):
            report(("machines", name), f"machine name '{name}': {name_rule(31)}")
        if m.address in seen:
            report(("machines", name, "address"), f"address {m.address} is also machine '{seen[m.address]}''s")
        seen[m.address] = name
        out[name] = Machine(name, m.address, m.node, tuple(sorted(m.labels.items())))
    if len({m.address.version for m in out.values()}) > 1:
        report(("machines",), "every machine's address must be of one family (all IPv4 or all IPv6)")
    return out


def _unknown(kind: str, name: str, known: Mapping[str, Any]) -> str:
    return f"unknown machine '{name}' (machines: {', '.join(known) or 'none defined'})" if known else (
        f"{kind} needs machines: at the top of the file (a lab across machines)")


def placement(spec: LabSpec, known: Mapping[str, Machine], report: Report) -> dict[str, str]:
    """host -> its machine (hosts of a lab without machines: none)."""
    names = list(known)
    placed: dict[str, str] = {}
    for host_name, host in spec.hosts.items():
        if host.machine is not None:
            if host.machine in known:
                placed[host_name] = host.machine
            else:
                report(("hosts", host_name, "machine"), _unknown("machine:", host.machine, known))
        elif not names:
            continue
        elif spec.placement == "spread":
            placed[host_name] = names[int.from_bytes(blake2s(host_name.encode(), digest_size=4).digest(), "big")
                                      % len(names)]
        elif len(names) == 1:
            placed[host_name] = names[0]
        else:
            report(("hosts", host_name), f"host '{host_name}' has no machine: give it machine: or write "
                                         "placement: spread at the top of the file")
    return placed


def network_machines(spec: LabSpec, known: Mapping[str, Machine], placed: Mapping[str, str], report: Report
                     ) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """network -> (its home, the machines with a bridge of it, in ``machines:`` order)."""
    out: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    for net_name, net in spec.networks.items():
        members = {placed[h] for h, host in spec.hosts.items() if net_name in host.networks and h in placed}
        home = net.home
        if home is not None and home not in known:
            report(("networks", net_name, "home"), _unknown("home:", home, known))
            home = None
        if not known:
            continue
        if home is None:
            home = next((m for m in known if m in members), next(iter(known)))
        out[net_name] = (home, tuple(m for m in known if m in members or m == home))
    return out


def vni(lab: str, kind: str, name: str, used: set[int]) -> int:
    """A stable 24-bit VXLAN network identifier for (lab, kind, name), not one of ``used`` (the lab's own, in
    their fixed order: networks then links in file order); 0 and 1 are left out (some gear reserves them)."""
    for attempt in range(1 << 16):
        found = int.from_bytes(blake2s(f"{lab}/{kind}/{name}/{attempt}".encode(), digest_size=3).digest(), "big")
        if found > 1 and found not in used:
            used.add(found)
            return found
    raise AssertionError("no VNI left")  # (the lab has fewer than 2**16 networks and links)


def overlay_mtu(spec: LabSpec, known: Mapping[str, Machine], report: Report) -> int | None:
    """The MTU of every interface of a spanning network or link (None: not a lab across machines); a written
    ``overlay.mtu`` whose VXLAN packets would not fit the underlay MTU is a problem."""
    if not known:
        return None
    six = any(m.address.version == 6 for m in known.values())
    overhead = OVERHEAD6 if six else OVERHEAD4
    if spec.overlay.mtu == "auto":
        return spec.overlay.underlay_mtu - overhead
    if spec.overlay.mtu + overhead > spec.overlay.underlay_mtu:
        report(("overlay", "mtu"), f"mtu {spec.overlay.mtu} plus VXLAN's {overhead} bytes exceeds the underlay MTU "
                                   f"{spec.overlay.underlay_mtu}: at most {spec.overlay.underlay_mtu - overhead}")
    return spec.overlay.mtu


def lab_ula(lab: str) -> IPv6Net:
    """The lab's own ULA /48 (fd00::/8 and 40 bits of its name's hash): the same on every machine."""
    digest = blake2s(f"ula/{lab}".encode(), digest_size=5).digest()
    return IPv6Net((0xFD << 120 | int.from_bytes(digest, "big") << 80, 48))


def pool_offset(lab: str, count: int) -> int:
    """Where a lab across machines starts looking for automatic subnets in a pool of ``count`` (its name's hash:
    two such labs rarely pick the same; the machine's routes are not consulted, they differ from machine to
    machine)."""
    return int.from_bytes(blake2s(f"pool/{lab}".encode(), digest_size=4).digest(), "big") % count


def digest(lab: Lab) -> str:
    """sha256 of the whole lab's record (its file's path left out, and ``env_file`` paths under the file's folder
    taken relative to it: that folder may differ between machines)."""
    import hashlib
    import json

    from ..records import encode

    base = os.path.dirname(os.path.abspath(lab.source)) if lab.source and not lab.source.startswith("<") else ""
    hosts = {name: replace(h, services=tuple(replace(s, env_files=tuple(_relative(f, base) for f in s.env_files))
                                             for s in h.services))
             for name, h in lab.hosts.items()}
    data = encode(replace(lab, source="", digest="", hosts=hosts))
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _relative(path: str, base: str) -> str:
    """``path`` relative to ``base`` when under it (as the lab file wrote it), else as it is."""
    return os.path.relpath(path, base) if base and path.startswith(base + os.sep) else path


# --- the part of one machine -----------------------------------------------------------------------------------
def part(lab: Lab, machine: str) -> Lab:
    """What ``machine`` builds of the whole ``lab``: its hosts, the networks it has a bridge of, the links with an
    end here (indexes renumbered); the other hosts and networks as ``remote`` and ``remote_networks``."""
    kept = [i for i, lk in enumerate(lab.links) if machine in _link_machines(lab, lk)]
    index = {old: new for new, old in enumerate(kept)}
    hosts: dict[str, Host] = {}
    remote: dict[str, Host] = {}
    for name, h in lab.hosts.items():
        interfaces = tuple(replace(i, link=index[i.link]) if i.link is not None else i
                           for i in h.interfaces if i.link is None or i.link in index)
        (hosts if h.machine == machine else remote)[name] = replace(h, interfaces=interfaces)
    networks = {n: net for n, net in lab.networks.items() if machine in net.machines}
    away = {n: net for n, net in lab.networks.items() if machine not in net.machines}
    return replace(lab, hosts=hosts, networks=networks, links=tuple(lab.links[i] for i in kept), machine=machine,
                   remote=remote, remote_networks=away, order=(tuple(lab.hosts), tuple(lab.networks)))


def _link_machines(lab: Lab, lk: Link) -> set[str | None]:
    return {lab.hosts[lk.a].machine, lab.hosts[lk.b].machine}


def local_machine(lab: Lab, wanted: str | None, local: frozenset[IPv4Addr | IPv6Addr] | None) -> str:
    """The machine of ``lab`` this one is: ``wanted`` (``--machine``), else the one whose address is local."""
    if wanted is not None:
        if wanted not in lab.machines:
            raise MachineError(f"lab {lab.name} has no machine '{wanted}' (machines: {', '.join(lab.machines)})")
        return wanted
    mine = [m.name for m in lab.machines.values() if local is not None and m.address in local]
    if len(mine) == 1:
        return mine[0]
    listed = ", ".join(f"{m.name} {m.address}" for m in lab.machines.values())
    if not mine:
        raise MachineError(f"no machine of lab {lab.name} has an address of this machine ({listed}): "
                           "say which with --machine NAME")
    raise MachineError(f"several machines of lab {lab.name} have addresses of this machine ({', '.join(mine)}): "
                       "say which with --machine NAME")


# --- the VXLAN of each spanning network --------------------------------------------------------------------------
def vxlan_name(lab: str, network: str) -> str:
    return "nsx" + short_hash(lab, network)


def spanning(lab: Lab) -> tuple[Network, ...]:
    """The networks of this part that span machines (each gets a VXLAN device here)."""
    if lab.machine is None:
        return ()
    return tuple(n for n in lab.networks.values() if n.spans())


def fdb_entries(lab: Lab, network: Network) -> list[tuple[str, str, str]]:
    """(device, MAC, destination) of one spanning network: all-zero to each other machine of it, the gateway's
    MAC to the home (off the home: what hosts send out goes there only), then the MAC of every remote host
    interface on it to its machine."""
    device = vxlan_name(lab.name, network.name)
    out = [(device, ZERO_MAC, str(lab.machines[m].address)) for m in network.machines if m != lab.machine]
    if network.home is not None and network.home != lab.machine:
        out.append((device, mac_address(lab.name, "net", network.name), str(lab.machines[network.home].address)))
    for h in lab.remote.values():
        for i in h.interfaces:
            if i.network == network.name and h.machine is not None:
                mac = i.mac or mac_address(lab.name, "host", h.name, i.name)
                out.append((device, mac, str(lab.machines[h.machine].address)))
    return out


def vxlan_data(vni_: int, local: IPv4Addr | IPv6Addr, port: int, remote: IPv4Addr | IPv6Addr | None = None
               ) -> bytes:
    """The IFLA_INFO_DATA of a VXLAN device: its VNI, local address, UDP port, learning off; with ``remote``,
    a point-to-point one (its only destination)."""
    import struct

    from ..drivers.rtnl import attr, attr_u32

    data = attr_u32(VXLAN_ID, vni_) + attr(VXLAN_PORT, struct.pack(">H", port)) + attr(VXLAN_LEARNING, b"\0")
    data += attr(VXLAN_LOCAL if local.version == 4 else VXLAN_LOCAL6, local.packed)
    if remote is not None:
        data += attr(VXLAN_GROUP if remote.version == 4 else VXLAN_GROUP6, remote.packed)
    return data


def _new_device(lab: Lab, network: Network) -> NewLink:
    from ..drivers.rtnl import LinkEnd, NewLink

    assert lab.machine is not None and network.vni is not None
    name = vxlan_name(lab.name, network.name)
    end = LinkEnd("", name, mtu=lab.overlay_mtu, group=LINK_GROUP, alias=owner_alias(lab.name, "net", network.name,
                                                                                       "vxlan"),
                  mac=mac_address(lab.name, "vxlan", lab.machine, network.name))
    return NewLink("vxlan", end, vxlan_data(network.vni, lab.machines[lab.machine].address, lab.overlay_port))


def device_commands(lab: Lab, network: Network) -> list[str]:
    assert lab.machine is not None
    name = vxlan_name(lab.name, network.name)
    local = lab.machines[lab.machine].address
    mtu = f" mtu {lab.overlay_mtu}" if lab.overlay_mtu else ""
    out = [f"ip link add {name} address {mac_address(lab.name, 'vxlan', lab.machine, network.name)}{mtu} group "
           f"{LINK_GROUP} type vxlan id {network.vni} local {local} dstport {lab.overlay_port} nolearning",
           f"ip link set {name} alias {owner_alias(lab.name, 'net', network.name, 'vxlan')}",
           f"ip link set {name} master {network.bridge} up"]
    for device, mac, dst in fdb_entries(lab, network):
        out.append(f"bridge fdb {'append' if mac == ZERO_MAC else 'replace'} {mac} dev {device} dst {dst} self "
                   "permanent")
    return out


class AddOverlay(Action):
    """The VXLAN device of each spanning network here, on its bridge, with its forwarding entries (the bridge
    exists: AddBridges came first); a device already there (a converge: other remote hosts) is made again. The
    inverse deletes the devices (their entries go with them) and makes those of ``former`` (the lab as it was up)
    again as they were."""

    lab: Lab
    networks: tuple[Network, ...]
    former: Lab | None = None

    def commands(self) -> list[str]:
        return [line for n in self.networks for line in device_commands(self.lab, n)]

    def summary(self) -> str:
        return f"join {len(self.networks)} network(s) across machines (VXLAN)"

    def apply(self, drivers: Drivers) -> Action | None:
        names = [vxlan_name(self.lab.name, n.name) for n in self.networks]
        undo: Action = RemoveOverlay(self.lab, self.networks)
        was = tuple(n for n in spanning(self.former) if n.name in {m.name for m in self.networks}) \
            if self.former is not None else ()
        if was:
            assert self.former is not None
            undo = Steps((undo, AddOverlay(self.former, was)))
        try:
            drivers.kernel.remove_links(names)  # (one left by a run killed before it recorded it)
            drivers.kernel.add_links([_new_device(self.lab, n) for n in self.networks])
            for n in self.networks:
                name = vxlan_name(self.lab.name, n.name)
                drivers.kernel.attach_to_bridge(name, n.bridge, owner_alias(self.lab.name, "net", n.name, "vxlan"))
            drivers.kernel.add_fdb([e for n in self.networks for e in fdb_entries(self.lab, n)])
        except BaseException:
            drivers.kernel.remove_links(names)
            raise
        return undo


class UpdateForwarding(Action):
    """Only the forwarding entries of spanning networks whose device stays (remote hosts added, gone or moved):
    those ``former`` had and ``lab`` has not removed, the new ones added; the device, its traffic and what it
    learned are left alone. The inverse puts the former entries back the same way."""

    lab: Lab
    former: Lab
    networks: tuple[Network, ...]

    def _change(self) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
        gone, new = [], []
        for n in self.networks:
            old, now = fdb_entries(self.former, n), fdb_entries(self.lab, n)
            gone += [e for e in old if e not in now]
            new += [e for e in now if e not in old]
        return gone, new

    def commands(self) -> list[str]:
        gone, new = self._change()
        return ([f"bridge fdb del {mac} dev {device} dst {dst} self" for device, mac, dst in gone]
                + [f"bridge fdb {'append' if mac == ZERO_MAC else 'replace'} {mac} dev {device} dst {dst} self "
                   "permanent" for device, mac, dst in new])

    def summary(self) -> str:
        return f"update the forwarding entries of {len(self.networks)} network(s) across machines"

    def apply(self, drivers: Drivers) -> Action | None:
        gone, new = self._change()
        if gone:
            drivers.kernel.del_fdb(gone)
        try:
            if new:
                drivers.kernel.add_fdb(new)
        except BaseException:
            if gone:
                drivers.kernel.add_fdb(gone)
            raise
        return UpdateForwarding(self.former, self.lab, self.networks)


class RemoveOverlay(Action):
    lab: Lab
    networks: tuple[Network, ...]

    def commands(self) -> list[str]:
        return [f"ip link del {vxlan_name(self.lab.name, n.name)}" for n in self.networks]

    def summary(self) -> str:
        return f"remove the VXLAN of {len(self.networks)} network(s)"

    def apply(self, drivers: Drivers) -> Action | None:
        raise_on(drivers.kernel.remove_links([vxlan_name(self.lab.name, n.name) for n in self.networks]))
        return AddOverlay(self.lab, self.networks)

    def teardown(self, drivers: Drivers) -> list[str]:
        return drivers.kernel.remove_links([vxlan_name(self.lab.name, n.name) for n in self.networks])


def _fdb_view(lab: Lab, network: Network) -> tuple[str, list[tuple[str, str, str]]]:
    return vxlan_name(lab.name, network.name), fdb_entries(lab, network)


def drift(lab: Lab, drivers: Drivers) -> list[Difference]:
    """Each spanning network's VXLAN device here: missing, down, off its bridge, a forwarding entry lost. Any of
    them: the device is made again (``overlay`` repair: ``up`` remakes it with its entries)."""
    found: list[Difference] = []
    networks = spanning(lab)
    if not networks:
        return found
    machine = {lk.name: lk for lk in drivers.kernel.machine_links()}
    present = set(drivers.kernel.fdb_entries([vxlan_name(lab.name, n.name) for n in networks]))
    for n in networks:
        name, entries = _fdb_view(lab, n)
        device, bridge = machine.get(name), machine.get(n.bridge)
        where = f"network {n.name}: VXLAN device {name}"
        if device is None:
            text = f"{where} is missing"
        elif not device.up:
            text = f"{where} is down"
        elif bridge is not None and device.master != bridge.index:
            text = f"{where} is not on bridge {n.bridge}"
        else:
            lost = [e for e in entries if e not in present]
            text = f"{where} lost its forwarding entry {lost[0][1]} dst {lost[0][2]}" if lost else ""
        if text:
            found.append(Difference(text, "overlay", end=("", n.name)))
    return found
