"""The resolved domain model: frozen, fully concrete hosts, networks and links, and the naming rules.

Pure data and pure functions (stdlib only), shared by resolve (which builds it), plan, apply, state (which
stores it as JSON) and the drivers. Importing this is cheap, which keeps ``nslab exec`` fast.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

try:  # hashlib imports OpenSSL's _hashlib first (~4 ms on every command); blake2 is built in
    from _blake2 import blake2s
except ImportError:  # pragma: no cover - an interpreter without the builtin module
    from hashlib import blake2s

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address


def short_hash(*parts: str, length: int = 8) -> str:
    return blake2s("/".join(parts).encode(), digest_size=8).hexdigest()[:length]


def bridge_name(lab: str, network: str) -> str:
    return "nsl" + short_hash(lab, network)


def host_veth_name(lab: str, host: str, ifname: str) -> str:
    return "nsv" + short_hash(lab, host, ifname)


#: Every machine-side link nslab makes carries an alias starting with this (shown by `ip link`).
OWNER_PREFIX = "nslab:"


def owner_alias(lab: str, *parts: str) -> str:
    """The ownership mark of a link: ``nslab:<lab>:net:<network>`` or ``nslab:<lab>:host:<host>:<if>``."""
    return OWNER_PREFIX + ":".join((lab, *parts))


def namespace_name(lab: str, host: str) -> str:
    return f"{lab}-{host}"


@dataclass(frozen=True)
class Occupied:
    """An IPv4 range already in use on the machine, and who uses it (for the error message)."""

    network: IPv4Net
    owner: str


@dataclass(frozen=True)
class Network:
    name: str
    bridge: str
    subnet: IPv4Net
    gateway: ipaddress.IPv4Interface
    internal: bool


@dataclass(frozen=True)
class Interface:
    """An interface inside a host: on a network (veth to the bridge) or one end of a link."""

    name: str
    address: ipaddress.IPv4Interface
    network: str | None = None  # set for bridge attachments
    host_veth: str | None = None  # the machine-side end, for bridge attachments
    link: int | None = None  # index into Lab.links, for point-to-point ends


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    interfaces: tuple[Interface, ...]
    gateway: IPv4Addr | None
    hostname: str

    def interface_on(self, network: str) -> Interface | None:
        return next((i for i in self.interfaces if i.network == network), None)


@dataclass(frozen=True)
class Link:
    """A veth pair between two hosts; ``a`` creates it with the peer inside ``b``."""

    a: str
    b: str
    a_ifname: str
    b_ifname: str
    subnet: IPv4Net
    a_address: ipaddress.IPv4Interface
    b_address: ipaddress.IPv4Interface


@dataclass(frozen=True)
class Lab:
    name: str
    source: str
    networks: Mapping[str, Network]
    hosts: Mapping[str, Host]
    links: tuple[Link, ...] = ()
    spec: Any = field(default=None, compare=False, repr=False)  # the LabSpec it came from, if any

    def allocations(self) -> dict[str, Any]:
        """What IPAM decided, in the JSON shape state.py stores, so the next resolve can keep it."""
        return {
            "networks": {n.name: str(n.subnet) for n in self.networks.values()},
            "hosts": {
                h.name: {i.network: str(i.address.ip) for i in h.interfaces if i.network}
                for h in self.hosts.values()
            },
            "links": {f"{lk.a}|{lk.b}|{i}": str(lk.subnet) for i, lk in enumerate(self.links)},
        }
