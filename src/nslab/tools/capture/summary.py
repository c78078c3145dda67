"""One line per packet, from the raw frame (what ``tcpdump -n`` would say, shorter): pure, unit-tested.

    15:04:05.123456 lab/web1:eth0 > 10.0.1.2 → 10.0.1.3 ICMP echo request id 7 seq 1, 98 bytes

Decodes Ethernet (and raw IP, for interfaces without a link header), ARP, IPv4, IPv6, TCP, UDP, ICMP and
ICMPv6; anything else is named by its EtherType / protocol number.
"""

from __future__ import annotations

import ipaddress
import struct
import time

ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_VLAN = 0x0800, 0x86DD, 0x0806, 0x8100
TCP_FLAGS = ((0x02, "S"), (0x10, "."), (0x08, "P"), (0x01, "F"), (0x04, "R"), (0x20, "U"))
ICMP_TYPES = {0: "echo reply", 3: "unreachable", 5: "redirect", 8: "echo request", 11: "time exceeded"}
ICMP6_TYPES = {128: "echo request", 129: "echo reply", 1: "unreachable", 3: "time exceeded",
               133: "router solicitation", 134: "router advertisement", 135: "neighbor solicitation",
               136: "neighbor advertisement"}
IP_PROTOCOLS = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 58: "ICMPv6", 132: "SCTP"}


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _tcp(payload: bytes, src: str, dst: str) -> str:
    if len(payload) < 20:
        return f"{src} → {dst} TCP (truncated)"
    sport, dport, seq, ack, offset, flags = struct.unpack_from("!HHIIBB", payload)
    marks = "".join(mark for bit, mark in TCP_FLAGS if flags & bit) or "none"
    data = len(payload) - (offset >> 4) * 4
    text = f"{src}:{sport} → {dst}:{dport} TCP [{marks}] seq {seq}"
    if flags & 0x10:
        text += f" ack {ack}"
    return text + (f" len {data}" if data > 0 else "")


def _udp(payload: bytes, src: str, dst: str) -> str:
    if len(payload) < 8:
        return f"{src} → {dst} UDP (truncated)"
    sport, dport, length = struct.unpack_from("!HHH", payload)
    return f"{src}:{sport} → {dst}:{dport} UDP len {max(length - 8, 0)}"


def _icmp(payload: bytes, src: str, dst: str, names: dict[int, str], label: str) -> str:
    if len(payload) < 4:
        return f"{src} → {dst} {label} (truncated)"
    kind, code = payload[0], payload[1]
    text = f"{src} → {dst} {label} {names.get(kind, f'type {kind}')}"
    if kind in (0, 8, 128, 129) and len(payload) >= 8:
        ident, seq = struct.unpack_from("!HH", payload, 4)
        text += f" id {ident} seq {seq}"
    elif code:
        text += f" code {code}"
    return text


def _transport(proto: int, payload: bytes, src: str, dst: str) -> str:
    if proto == 6:
        return _tcp(payload, src, dst)
    if proto == 17:
        return _udp(payload, src, dst)
    if proto == 1:
        return _icmp(payload, src, dst, ICMP_TYPES, "ICMP")
    if proto == 58:
        return _icmp(payload, src, dst, ICMP6_TYPES, "ICMPv6")
    return f"{src} → {dst} {IP_PROTOCOLS.get(proto, f'IP proto {proto}')}"


def _ipv4(packet: bytes) -> str:
    if len(packet) < 20:
        return "IPv4 (truncated)"
    header = (packet[0] & 0x0F) * 4
    proto = packet[9]
    src, dst = str(ipaddress.IPv4Address(packet[12:16])), str(ipaddress.IPv4Address(packet[16:20]))
    (frag,) = struct.unpack_from("!H", packet, 6)
    if frag & 0x1FFF:
        return f"{src} → {dst} {IP_PROTOCOLS.get(proto, 'IP')} fragment"
    return _transport(proto, packet[header:], src, dst)


def _ipv6(packet: bytes) -> str:
    if len(packet) < 40:
        return "IPv6 (truncated)"
    src, dst = str(ipaddress.IPv6Address(packet[8:24])), str(ipaddress.IPv6Address(packet[24:40]))
    return _transport(packet[6], packet[40:], src, dst)


def _arp(packet: bytes) -> str:
    if len(packet) < 28:
        return "ARP (truncated)"
    op = struct.unpack_from("!H", packet, 6)[0]
    sha, spa, tpa = packet[8:14], packet[14:18], packet[24:28]
    sender, target = ipaddress.IPv4Address(spa), ipaddress.IPv4Address(tpa)
    if op == 1:
        return f"ARP who-has {target} tell {sender}"
    if op == 2:
        return f"ARP reply {sender} is-at {_mac(sha)}"
    return f"ARP op {op} {sender} → {target}"


def network(ethertype: int, packet: bytes) -> str:
    if ethertype == ETH_IPV4:
        return _ipv4(packet)
    if ethertype == ETH_IPV6:
        return _ipv6(packet)
    if ethertype == ETH_ARP:
        return _arp(packet)
    return f"ethertype 0x{ethertype:04x}"


def describe(frame: bytes, link_header: bool = True) -> str:
    """What the frame is: addresses, protocol and the interesting header fields."""
    if not link_header:  # raw IP (tun devices)
        version = frame[0] >> 4 if frame else 0
        return network(ETH_IPV6 if version == 6 else ETH_IPV4, frame)
    if len(frame) < 14:
        return "(truncated frame)"
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    offset = 14
    if ethertype == ETH_VLAN and len(frame) >= 18:
        (ethertype,) = struct.unpack_from("!H", frame, 16)
        offset = 18
    return network(ethertype, frame[offset:])


def line(timestamp_ns: int, where: str, frame: bytes, outgoing: bool | None = None, link_header: bool = True) -> str:
    """``HH:MM:SS.micro WHERE [<|>] SUMMARY, N bytes`` (``>`` sent by that interface, ``<`` received)."""
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    clock = time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{nanos // 1000:06d}"
    arrow = "" if outgoing is None else (" >" if outgoing else " <")
    return f"{clock} {where}{arrow} {describe(frame, link_header)}, {len(frame)} bytes"
