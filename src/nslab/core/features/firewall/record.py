"""What a lab asks of the firewall, as the typed record kept in its state (and rendered by render.py)."""

from __future__ import annotations

from typing import Any

from ....errors import PublishSyntaxError
from ....model import Host, Lab
from ....values import Value, field
from ... import publish


class FwNetwork(Value):
    name: str
    bridge: str
    subnet: str
    internal: bool
    subnet6: str = ""  # a dual-stack network's IPv6 subnet
    nat6: bool = True  # its IPv6 egress masqueraded (else routed)


class PublishedPort(Value):
    host: str
    field: str  # the lab file's field path, e.g. hosts.web1.publish[0] (named in the rule's comment)
    spec: str  # as written
    proto: str
    host_ip: str
    host_port: int  # picked: 0 until features/firewall/pick.py chooses it
    network: str
    address: str
    port: int
    picked: bool = False  # no host port written: nslab picked it (kept while the lab is up)
    address6: str = ""  # the host's IPv6 address when the port is published on IPv6 too (or only)


class FirewallRecord(Value):
    networks: list[FwNetwork] = field(default_factory=list)
    ports: list[PublishedPort] = field(default_factory=list)
    hairpin: list[str] = field(default_factory=list)  # bridge ports in hairpin mode
    route_localnet: dict[str, str] = field(default_factory=dict)  # bridge -> value before nslab set it
    docker_user: bool = False  # rules in Docker's DOCKER-USER chain
    warnings: list[str] = field(default_factory=list)
    overlay_port: int = 0  # a lab across machines: its VXLAN UDP port, accepted only from ``overlay_peers``
    overlay_peers: list[str] = field(default_factory=list)  # the other machines' addresses
    overlay_vnis: list[int] = field(default_factory=list)  # the VNIs of its devices here, taken only from its peers

    @property
    def loaded(self) -> bool:
        """Whether the lab has anything in the table."""
        return bool(self.networks or self.ports or self.overlay_peers)

    def needs_forwarding(self) -> bool:
        return bool(self.ports) or any(not n.internal for n in self.networks)

    def needs_forwarding6(self) -> bool:
        return any(p.address6 for p in self.ports) or any(n.subnet6 and not n.internal for n in self.networks)

    def loopback_relays(self) -> list[dict[str, Any]]:
        """The ports that must answer on ``[::1]`` (plain, ``[::]`` and ``[::1]`` entries of hosts with IPv6):
        relayed by the lab's supervisor (loopproxy.py), the kernel cannot DNAT them."""
        return [
            {"listen": "::1", "port": p.host_port, "proto": p.proto, "to": p.address6, "to_port": p.port}
            for p in self.ports
            if p.address6 and (":" not in p.host_ip or p.host_ip in ("::", "::1"))
        ]

    def published_bridges(self) -> list[str]:
        by_name = {n.name: n.bridge for n in self.networks}
        out: list[str] = []
        for p in self.ports:
            bridge = by_name.get(p.network)
            if bridge and bridge not in out:
                out.append(bridge)
        return out

    def same_rules(self, other: FirewallRecord) -> bool:
        return (self.networks == other.networks and self.ports == other.ports
                and (self.overlay_port, self.overlay_peers, self.overlay_vnis)
                == (other.overlay_port, other.overlay_peers, other.overlay_vnis))

    def to_json(self) -> dict[str, Any]:
        return {
            "networks": [vars(n) for n in self.networks],
            "ports": [vars(p) for p in self.ports],
            "hairpin": self.hairpin,
            "route_localnet": self.route_localnet,
            "docker_user": self.docker_user,
            "warnings": self.warnings,
            **({"overlay_port": self.overlay_port, "overlay_peers": self.overlay_peers,
                "overlay_vnis": self.overlay_vnis} if self.overlay_peers else {}),
        }

    @classmethod
    def from_json(cls, data: Any) -> FirewallRecord:
        if not isinstance(data, dict):
            return cls()
        return cls(
            networks=[FwNetwork(**n) for n in data.get("networks") or []],
            ports=[PublishedPort(**p) for p in data.get("ports") or []],
            hairpin=list(data.get("hairpin") or []),
            route_localnet=dict(data.get("route_localnet") or {}),
            docker_user=bool(data.get("docker_user")),
            warnings=list(data.get("warnings") or []),
            overlay_port=int(data.get("overlay_port") or 0),
            overlay_peers=list(data.get("overlay_peers") or []),
            overlay_vnis=[int(v) for v in data.get("overlay_vnis") or []],
        )


def published_ports(lab: str, host: str) -> list[PublishedPort]:
    """The ports of ``host`` of lab ``lab`` (up) as recorded, host ports picked at ``up`` included, by port."""
    from ...state import LabState

    recorded = LabState.load(lab)
    record = FirewallRecord.from_json(recorded.extra.get("firewall") if recorded else None)
    return sorted((p for p in record.ports if p.host == host), key=lambda p: (p.port, p.proto, p.host_port))


def docker_port_lines(p: PublishedPort, with_port: bool = True) -> list[str]:
    """As ``docker port`` prints it, a line per family the port is published on: ``80/tcp -> 0.0.0.0:32768``
    and ``80/tcp -> [::]:32768`` (``with_port=False``: ``0.0.0.0:32768``, ``[::]:32768``)."""
    if ":" in p.host_ip:  # published on IPv6 only ("[::]:6000:80", "[::1]:6000:80")
        wheres = [f"[{p.host_ip}]:{p.host_port}"]
    else:
        wheres = [f"{p.host_ip}:{p.host_port}"] + ([f"[::]:{p.host_port}"] if p.address6 else [])
    return [f"{p.port}/{p.proto} -> {where}" if with_port else where for where in wheres]


def _host_ports(lab: Lab, host: Host) -> list[PublishedPort]:
    """The ports ``host`` publishes, on its first network (across machines: when that network's home is here,
    whatever machine the host lives on)."""
    from ....errors import field_path

    iface = next((i for i in host.interfaces if i.network), None)
    network = lab.networks.get(iface.network) if iface is not None and iface.network else None
    if iface is None or network is None or not lab.builds_gateway(network):
        return []
    on = network.name
    ports: list[PublishedPort] = []
    for written in host.publish:
        try:
            mappings = publish.parse(written.text)
        except PublishSyntaxError:
            continue
        where = field_path(written.path)
        v6 = str(iface.address6.ip) if iface.address6 else ""
        ports += [
            PublishedPort(host.name, where, written.text, m.proto, str(m.host_ip), m.host_port, on,
                          str(iface.address.ip), m.port, m.picked, v6 if 6 in m.families() else "")
            for m in mappings
        ]
    return ports


def desired(lab: Lab) -> FirewallRecord:
    """The networks and published ports of ``lab`` (entries that do not parse are validate's business)."""
    # (across machines: only the networks whose home is here; on the others the bridge is pure L2)
    networks = [FwNetwork(n.name, n.bridge, str(n.subnet), n.internal, str(n.subnet6) if n.subnet6 else "", n.nat6)
                for n in lab.networks.values() if lab.builds_gateway(n)]
    ports = [p for host in (*lab.hosts.values(), *lab.remote.values()) for p in _host_ports(lab, host)]
    peers = [str(m.address) for m in lab.machines.values() if m.name != lab.machine] if lab.machine else []
    return FirewallRecord(networks=networks, ports=ports, overlay_port=lab.overlay_port if peers else 0,
                          overlay_peers=peers, overlay_vnis=_vnis(lab) if peers else [])


def _vnis(lab: Lab) -> list[int]:
    """The VNIs of this machine's part: its spanning networks' and its links' to other machines."""
    vnis = [n.vni for n in lab.networks.values() if n.vni and n.spans()]
    return sorted(vnis + [int(dict(lk.options)["vni"]) for lk in lab.links if lk.kind == "vxlan"])
