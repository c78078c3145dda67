"""Docker's publish syntax, parsed: ``[[HOST_IP:]HOST_PORT[-END]:]PORT[-END][/tcp|/udp]`` (an IPv6 HOST_IP in
brackets: ``[::1]:6000:80``).

Pure (stdlib only): no kernel, no files. ``parse`` turns one string of ``hosts.<name>.publish`` into the
port mappings it means, one per port (ranges are expanded: ``6000-6002:8080-8082`` is three mappings), or
raises :class:`PublishSyntaxError` whose message says what is wrong and how to write it.

Without a host port (``8080``, ``:8080``, ``127.0.0.1::8080``), as with Docker, the host port is picked when
the lab comes up: a mapping's ``host_port`` is then :data:`PICK` (0), and features/firewall/pick.py chooses a
free port of the machine's ephemeral range and keeps it while the lab is up.

Differences from Docker, on purpose:
- a host range maps onto a container range of the same length (Docker's ``8000-8010:80`` "pick one" form is
  refused);
- as Docker: no HOST_IP (or an empty one) means every address of the machine, IPv4 and IPv6 (the IPv6 side
  exists when the host has IPv6, see the firewall); ``0.0.0.0`` every IPv4 address only; ``[::]`` every IPv6
  address only.
"""

from __future__ import annotations

import ipaddress

from ..errors import PublishSyntaxError
from ..values import Value

PROTOCOLS = ("tcp", "udp")
PICK = 0  # host_port of a mapping whose host port is picked at ``up``
ANY = ipaddress.IPv4Address("0.0.0.0")
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


class Mapping(Value):
    """One published port: ``host_ip:host_port/proto`` on the machine -> ``port`` of the lab host."""

    host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address  # 0.0.0.0 / :: = every address of that family
    host_port: int  # PICK (0): chosen at up
    port: int
    proto: str
    both: bool = False  # no HOST_IP written: every address of both families (host_ip is then 0.0.0.0)

    @property
    def any_address(self) -> bool:
        return self.host_ip.is_unspecified

    def families(self) -> frozenset[int]:
        return frozenset({4, 6}) if self.both else frozenset({self.host_ip.version})

    @property
    def picked(self) -> bool:
        """Whether the host port is picked at ``up`` (none was written)."""
        return self.host_port == PICK

    def label(self) -> str:
        if self.both:
            where = ""
        elif self.host_ip.version == 6:
            where = f"[{self.host_ip}]:"
        else:
            where = f"{self.host_ip}:"
        return f"{where}{self.host_port}/{self.proto}"

    def overlaps(self, other: Mapping) -> bool:
        """Whether both would claim the same packets (same protocol and port, addresses that meet); a port
        still to be picked claims nothing yet."""
        return (
            not self.picked
            and self.proto == other.proto
            and self.host_port == other.host_port
            and bool(self.families() & other.families())
            and (self.any_address or other.any_address or self.host_ip == other.host_ip)
        )


def _port_range(text: str, what: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    if not first or (sep and not last):
        raise PublishSyntaxError(f"{what} '{text}' is not a port or a range START-END")
    ports = []
    for part in (first, last) if sep else (first,):
        if not part.isdigit():
            raise PublishSyntaxError(f"{what} '{text}' is not a port or a range START-END")
        value = int(part)
        if not 1 <= value <= 65535:
            raise PublishSyntaxError(f"{what} {value} is out of range (1-65535)")
        ports.append(value)
    start, end = ports[0], ports[-1]
    if end < start:
        raise PublishSyntaxError(f"{what} range '{text}' ends before it starts")
    return start, end


def _protocol(body: str) -> tuple[str, str]:
    """``"6000:80/UDP"`` -> (``"6000:80"``, ``"udp"``); tcp when none is written."""
    if "/" not in body:
        return body, "tcp"
    body, proto = body.rsplit("/", 1)
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise PublishSyntaxError(f"protocol '{proto}' is not supported (tcp or udp)")
    return body, proto


def _bracketed(body: str) -> tuple[ipaddress.IPv6Address, str]:
    """``[ADDR]:REST`` -> (ADDR, ``:REST``): the IPv6 HOST_IP and what follows it."""
    address, sep, rest = body[1:].partition("]")
    if not sep or not rest.startswith(":"):
        raise PublishSyntaxError(f"'{body}': an IPv6 HOST_IP is written [ADDRESS]:HOST_PORT:PORT")
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        raise PublishSyntaxError(f"HOST_IP '[{address}]' is not an IPv6 address") from None
    if ip.is_multicast or ip.is_link_local:
        raise PublishSyntaxError(f"HOST_IP {ip} is a {'multicast' if ip.is_multicast else 'link-local'} address")
    return ip, rest


def parse(text: str) -> list[Mapping]:
    """``"127.0.0.1:5353:53/udp"`` -> ``[Mapping(127.0.0.1, 5353, 53, "udp")]``; ``"80"`` ->
    ``[Mapping(0.0.0.0, PICK, 80, "tcp")]``."""
    if not isinstance(text, str) or not text.strip():
        raise PublishSyntaxError("empty; write [[HOST_IP:]HOST_PORT:]PORT[/tcp|/udp]")
    body, proto = _protocol(text.strip())
    host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ANY
    both = True
    if body.startswith("["):
        host_ip, body = _bracketed(body)
        both = False
    parts = body.split(":")
    if len(parts) == 1:  # "8080": the host port is picked (as Docker's -p 8080)
        if not parts[0].replace("-", "").isdigit():
            raise PublishSyntaxError(f"'{text}' is not [[HOST_IP:]HOST_PORT:]PORT[/tcp|/udp]")
        parts = ["", *parts]
    if len(parts) > 3:
        raise PublishSyntaxError(f"'{text}' is not [HOST_IP:]HOST_PORT:PORT[/tcp|/udp] (an IPv6 HOST_IP?)")
    if len(parts) == 3:
        address = parts[0]
        if address:
            try:
                host_ip = ipaddress.IPv4Address(address)
                both = False
            except ValueError:
                raise PublishSyntaxError(f"HOST_IP '{address}' is not an IPv4 address "
                                         "(an IPv6 one goes in brackets: [::1]:6000:80)") from None
    elif not both:
        raise PublishSyntaxError(f"'{text}' is not [HOST_IP]:HOST_PORT:PORT[/tcp|/udp]")
    if not parts[-2]:  # ":8080", "HOST_IP::8080": each port gets a host port picked at up
        start, end = _port_range(parts[-1], "port")
        return [Mapping(host_ip, PICK, port, proto, both) for port in range(start, end + 1)]
    host_start, host_end = _port_range(parts[-2], "host port")
    start, end = _port_range(parts[-1], "port")
    if host_end - host_start != end - start:
        raise PublishSyntaxError(
            f"host ports {host_start}-{host_end} and ports {start}-{end} differ in length; "
            "a range maps port by port"
        )
    return [
        Mapping(host_ip, host_port, start + offset, proto, both)
        for offset, host_port in enumerate(range(host_start, host_end + 1))
    ]
