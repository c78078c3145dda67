"""What a lab asks of the firewall, as the typed record kept in its state (and rendered by render.py)."""

from __future__ import annotations

from typing import Any

from ... import publish
from ...model import Lab
from ...values import Value, field


class FwNetwork(Value):
    name: str
    bridge: str
    subnet: str
    internal: bool


class PublishedPort(Value):
    host: str
    field: str  # the lab file's field path, e.g. hosts.web1.publish[0] (named in the rule's comment)
    spec: str  # as written
    proto: str
    host_ip: str
    host_port: int
    network: str
    address: str
    port: int


class FirewallRecord(Value):
    networks: list[FwNetwork] = field(default_factory=list)
    ports: list[PublishedPort] = field(default_factory=list)
    hairpin: list[str] = field(default_factory=list)  # bridge ports in hairpin mode
    route_localnet: dict[str, str] = field(default_factory=dict)  # bridge -> value before nslab set it
    docker_user: bool = False  # rules in Docker's DOCKER-USER chain
    warnings: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> bool:
        """Whether the lab has anything in the table."""
        return bool(self.networks or self.ports)

    def needs_forwarding(self) -> bool:
        return bool(self.ports) or any(not n.internal for n in self.networks)

    def published_bridges(self) -> list[str]:
        by_name = {n.name: n.bridge for n in self.networks}
        out: list[str] = []
        for p in self.ports:
            bridge = by_name.get(p.network)
            if bridge and bridge not in out:
                out.append(bridge)
        return out

    def same_rules(self, other: FirewallRecord) -> bool:
        return self.networks == other.networks and self.ports == other.ports

    def to_json(self) -> dict[str, Any]:
        return {
            "networks": [vars(n) for n in self.networks],
            "ports": [vars(p) for p in self.ports],
            "hairpin": self.hairpin,
            "route_localnet": self.route_localnet,
            "docker_user": self.docker_user,
            "warnings": self.warnings,
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
        )


def desired(lab: Lab) -> FirewallRecord:
    """The networks and published ports of ``lab`` (entries that do not parse are validate's business)."""
    from ...errors import field_path

    networks = [FwNetwork(n.name, n.bridge, str(n.subnet), n.internal) for n in lab.networks.values()]
    ports: list[PublishedPort] = []
    spec = lab.spec
    for host_name, host_spec in (spec.hosts.items() if spec is not None else ()):
        host = lab.hosts.get(host_name)
        iface = next((i for i in host.interfaces if i.network), None) if host else None
        if iface is None or iface.network is None:
            continue
        for index, text in enumerate(host_spec.publish):
            try:
                mappings = publish.parse(text)
            except publish.PublishSyntaxError:
                continue
            where = field_path(("hosts", host_name, "publish", index))
            ports += [
                PublishedPort(host_name, where, text, m.proto, str(m.host_ip), m.host_port, iface.network,
                              str(iface.address.ip), m.port)
                for m in mappings
            ]
    return FirewallRecord(networks=networks, ports=ports)
