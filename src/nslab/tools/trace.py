"""``nslab trace SRC DST[:PORT][/udp]``: why can't A reach B — the route, each netfilter step, the verdict.

1. The route SRC takes (``ip -j route get DST`` inside SRC's namespace): device, gateway, source address.
2. A throwaway nft table of our own, ``table inet nslab-trace-<pid>``, in each namespace the packet crosses
   that nslab can watch (the machine, and SRC's own namespace when SRC is not the machine): base chains on
   prerouting and output at priority ``raw - 1`` that set ``meta nftrace`` for exactly the probe's 5-tuple
   (source port chosen before the rule is written). Nothing else is traced, nothing else is changed.
3. ``nft monitor`` in each of those namespaces (readiness: it printed our table's creation; end: it printed
   the marker chain we add after the probe, so every trace event of the probe has been read).
4. The probe from SRC: a TCP SYN (connect), a UDP datagram, or an ICMP echo request; its outcome. An IPv6
   destination (``fd00::5``, ``[fd00::5]:80``, or a host given with ``-6``) is probed over IPv6 (ICMPv6 echo).
5. The table is deleted in a ``finally`` (errors, Ctrl-C), and the monitors stopped.

The events are parsed (:func:`parse_event`) and explained (:func:`explain`): the rule that drops or rejects
the packet, or the base chain whose policy drops it (Docker's ``ip filter FORWARD policy drop``), and every
rewrite on the way (DNAT of a published port, masquerade), each named by family/table/chain and comment.
nslab's comments are ``nslab:<lab>:<what...>`` (isolation, internal, published, partition...): any rule so
commented is named as nslab's, whatever feature wrote it. Bridged traffic between hosts of one network
crosses no inet hook (no br_netfilter) and so shows no events: the route says so.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import EnvironmentProblem, TargetError, UserError
from ..model import Host, Lab
from ..ns.targets import Target
from . import is_address

PROTOCOLS = ("tcp", "udp", "icmp")
_REWRITE = re.compile(r"\b(?:dnat|snat)(?: ip6?)? to \S+|\bmasquerade\b|\bredirect\b")
DROPS = ("drop", "reject")
PROBE_TIMEOUT = 1.5
_EVENT = re.compile(r"^trace id (\S+) (\S+) (\S+) (\S+) (packet:|rule|verdict|policy)\s?(.*?)\s*$")
_RULE_VERDICT = re.compile(r"^(.*) \(verdict (.+)\)$")
_COMMENT = re.compile(r'comment "([^"]*)"')


# ----------------------------------------------------------------------------------------------
# Pure: parsing and explaining `nft monitor trace` events
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceEvent:
    """One line of ``nft monitor trace``: ``kind`` is packet, rule, verdict or policy."""

    id: str
    family: str
    table: str
    chain: str
    kind: str
    text: str  # the packet's fields, or the rule as nft prints it
    verdict: str = ""
    comment: str = ""
    scope: str = ""  # the namespace it was seen in (for messages)

    @property
    def where(self) -> str:
        return f"{self.family} {self.table} {self.chain}"


def parse_event(line: str, scope: str = "") -> TraceEvent | None:
    """One ``nft monitor`` line as a :class:`TraceEvent`; None for anything else (ruleset events)."""
    match = _EVENT.match(line.rstrip("\n"))
    if not match:
        return None
    ident, family, table, chain, kind, rest = match.groups()
    kind = kind.rstrip(":")
    verdict = ""
    if kind == "rule":
        ruled = _RULE_VERDICT.match(rest)
        if ruled:
            rest, verdict = ruled.groups()
    elif kind in ("verdict", "policy"):
        verdict, rest = rest, ""
    comment = _COMMENT.search(rest)
    return TraceEvent(ident, family, table, chain, kind, rest, verdict, comment.group(1) if comment else "", scope)


def name_rule(event: TraceEvent) -> str:
    """How a person should recognise the rule: nslab's by its comment, others by table/chain and text."""
    owner = ""
    if event.comment.startswith("nslab:"):
        parts = event.comment.split(":")
        owner = f"nslab rule \"{event.comment}\" (lab {parts[1]}" + (f", {':'.join(parts[2:])})" if parts[2:] else ")")
    elif event.comment:
        owner = f"rule \"{event.comment}\""
    else:
        owner = f"rule '{event.text}'"
    return f"{owner} in {event.where}"


@dataclass
class Explanation:
    """What happened to one traced packet."""

    events: list[TraceEvent] = field(default_factory=list)
    dropped_by: str = ""  # a sentence naming the rule or policy
    rewrites: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> bool:
        return bool(self.dropped_by)


def _first_word(verdict: str) -> str:
    return verdict.split(" ", 1)[0] if verdict else ""


def explain(events: Iterable[TraceEvent], own_table: str = "") -> list[Explanation]:
    """One :class:`Explanation` per traced packet, in order.

    A packet starts where our own table's chain (the first of prerouting or output) sees it; trace ids are
    no help, as the kernel gives a packet a new one when it moves on from one hook to another. Our own
    table's events are left out. Without ``own_table``, the trace id separates packets.
    """
    packets: list[Explanation] = []
    current: dict[str, Explanation] = {}  # scope -> the packet being followed there
    for event in events:
        if own_table and event.table == own_table:
            if event.kind == "packet":
                current[event.scope] = Explanation()
                packets.append(current[event.scope])
            continue
        item = current.get(event.scope)
        if item is None or (not own_table and item.events and item.events[-1].id != event.id):
            item = current[event.scope] = Explanation()
            packets.append(item)
        item.events.append(event)
        if not item.dropped:
            _note(item, event)
    return [item for item in packets if item.events]


def _note(item: Explanation, event: TraceEvent) -> None:
    """What ``event`` did to the packet ``item`` follows: a rewrite (NAT), a drop by a rule or a policy."""
    verdict = _first_word(event.verdict)
    if event.kind == "rule" and _REWRITE.search(event.text):
        item.rewrites.append(f"rewritten by {name_rule(event)}: {event.text}")
    on = f" on {event.scope}" if event.scope and event.scope != "the machine" else ""
    if event.kind == "rule" and verdict in DROPS:
        item.dropped_by = f"dropped by {name_rule(event)}{on}"
    elif event.kind == "policy" and verdict in DROPS:
        item.dropped_by = f"dropped by the policy ({verdict}) of chain {event.where}{on}"


def _step(event: TraceEvent, hooks: dict[tuple[str, str, str], str]) -> str:
    hook = hooks.get((event.family, event.table, event.chain), "")
    head = f"{hook + ' ' if hook else ''}{event.where}"
    if event.kind == "packet":
        return f"{head}: {_packet_fields(event.text)}"
    if event.kind == "rule":
        return f"{head}: rule {event.text} -> {event.verdict}"
    return f"{head}: {event.kind} {event.verdict}"


def _packet_fields(text: str) -> str:
    """The interfaces and addresses of a ``packet:`` line (its ports too), not every header field."""
    keep = ("iif", "oif", "ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr", "tcp sport", "tcp dport",
            "udp sport", "udp dport", "icmp type", "ether saddr")
    found = []
    for key in keep:
        match = re.search(rf"(?:^| ){key} (\S+)", text)
        if match:
            found.append(f"{key} {match.group(1)}")
    return " ".join(found) or text


def render(explanations: Sequence[Explanation], hooks: dict[tuple[str, str, str], str] | None = None) -> list[str]:
    """The steps of the first packet of each namespace in full, the verdicts of every packet."""
    hooks = hooks or {}
    lines: list[str] = []
    shown: set[str] = set()
    for number, item in enumerate(explanations, 1):
        scope = item.events[0].scope if item.events else ""
        header = f"packet {number}" + (f" in {scope}" if scope else "")
        if scope in shown:
            lines.append(f"{header}: {item.dropped_by or 'same path'}")
            continue
        shown.add(scope)
        lines.append(f"{header}:")
        lines.extend(f"  {_step(event, hooks)}" for event in item.events)
        lines.extend(f"  => {text}" for text in item.rewrites)
        lines.append(f"  => {item.dropped_by}" if item.dropped else "  => not dropped here")
    return lines


def hooks_of(chains_json: str) -> dict[tuple[str, str, str], str]:
    """``(family, table, chain) -> 'forward (priority 0)'`` from ``nft -j list chains``."""
    out: dict[tuple[str, str, str], str] = {}
    for item in json.loads(chains_json).get("nftables", []):
        chain = item.get("chain")
        if chain and chain.get("hook"):
            out[(chain["family"], chain["table"], chain["name"])] = f"[{chain['hook']} {chain.get('prio', 0)}]"
    return out


# ----------------------------------------------------------------------------------------------
# Pure: what to trace
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    proto: str  # tcp, udp or icmp
    src: str
    dst: str
    sport: int = 0  # tcp/udp; the ICMP echo id for icmp
    dport: int = 0

    @property
    def v6(self) -> bool:
        return ":" in self.dst

    def match(self) -> str:
        family = "ip6" if self.v6 else "ip"
        base = f"{family} saddr {self.src} {family} daddr {self.dst}"
        if self.proto == "icmp":
            icmp = "icmpv6" if self.v6 else "icmp"
            return f"{base} {icmp} type echo-request {icmp} id {self.sport}"
        return f"{base} {self.proto} sport {self.sport} {self.proto} dport {self.dport}"

    def describe(self) -> str:
        if self.proto == "icmp":
            return f"ICMP{'v6' if self.v6 else ''} echo {self.src} → {self.dst}"
        if self.v6:
            return f"{self.proto.upper()} [{self.src}]:{self.sport} → [{self.dst}]:{self.dport}"
        return f"{self.proto.upper()} {self.src}:{self.sport} → {self.dst}:{self.dport}"


def table_name(pid: int | None = None) -> str:
    return f"nslab-trace-{os.getpid() if pid is None else pid}"


def table_text(table: str, flow: Flow) -> str:
    """The throwaway table: trace exactly this flow, from the earliest point of both entry hooks."""
    rule = f"{flow.match()} meta nftrace set 1"
    return (
        f"table inet {table} {{\n"
        f"  chain pre {{ type filter hook prerouting priority raw - 1; policy accept; {rule}; }}\n"
        f"  chain out {{ type filter hook output priority raw - 1; policy accept; {rule}; }}\n"
        f"}}\n"
    )


def parse_destination(text: str) -> tuple[str, int, str]:
    """``DST[:PORT][/udp]`` -> ``(dst, port, proto)``; no port: ICMP echo (unless /udp or /tcp demands one).
    An IPv6 DST with a port is written in brackets: ``[fd00::5]:80``."""
    proto = ""
    base, slash, suffix = text.rpartition("/")
    if slash and suffix in PROTOCOLS:
        text, proto = base, suffix
    text, port = _split_port(text)
    if not text:
        raise UserError("trace: no destination")
    proto = proto or ("tcp" if port else "icmp")
    if proto in ("tcp", "udp") and not port:
        raise UserError(f"{text}/{proto}: a {proto} probe needs a port (DST:PORT/{proto})")
    if proto == "icmp" and port:
        raise UserError(f"{text}: an ICMP probe has no port")
    return text, port, proto


def _split_port(text: str) -> tuple[str, int]:
    """``DST[:PORT]`` (``[IPV6]:PORT``) -> ``(DST, PORT)``, 0 without a port."""
    if text.startswith("[") and "]" in text:
        inner, _, rest = text[1:].partition("]")
        text, port_text = inner, rest.removeprefix(":")
        head, colon, tail = inner, ":" if port_text else "", port_text
    elif ":" in text and is_address(text):  # a bare IPv6 address: no port
        head, colon, tail = text, "", ""
    else:
        head, colon, tail = text.rpartition(":")
    if not (colon and tail.isdigit()):
        return text, 0
    if not 0 < int(tail) < 65536:
        raise UserError(f"{tail}: not a port (1-65535)")
    return head, int(tail)



# ----------------------------------------------------------------------------------------------
# Pure: ICMP errors about the probe
# ----------------------------------------------------------------------------------------------

#: (family, type, code) -> what the answering hop says; (family, type, None): any other code of that type
_ICMP_REASONS = {
    (4, 3, 0): "network unreachable", (4, 3, 1): "host unreachable", (4, 3, 2): "protocol unreachable",
    (4, 3, 3): "port unreachable", (4, 3, 4): "fragmentation needed", (4, 3, 6): "network unknown",
    (4, 3, 7): "host unknown", (4, 3, 9): "network prohibited", (4, 3, 10): "host prohibited",
    (4, 3, 13): "administratively prohibited", (4, 3, None): "unreachable", (4, 11, None): "time exceeded",
    (6, 1, 0): "no route", (6, 1, 1): "administratively prohibited", (6, 1, 3): "address unreachable",
    (6, 1, 4): "port unreachable", (6, 1, 5): "prohibited by policy", (6, 1, 6): "reject route",
    (6, 1, None): "unreachable", (6, 2, None): "packet too big", (6, 3, None): "time exceeded",
}
NO_ROUTE = ("network unreachable", "network unknown", "no route", "reject route")
PROHIBITED = ("network prohibited", "host prohibited", "administratively prohibited", "prohibited by policy")
NO_NEIGHBOUR = ("host unreachable", "address unreachable", "host unknown")


@dataclass(frozen=True)
class IcmpError:
    """An ICMP error about the probe: who sent it and what it says."""

    sender: str
    family: int  # 4 or 6
    type: int
    code: int

    @property
    def reason(self) -> str:
        return _ICMP_REASONS.get((self.family, self.type, self.code)) or \
            _ICMP_REASONS.get((self.family, self.type, None), f"type {self.type} code {self.code}")


def _quoted_matches(inner: bytes, proto: int, flow: Flow) -> bool:
    """Whether the transport header quoted in an ICMP error is the probe's (its ports, or its echo id)."""
    if flow.proto == "icmp":
        return proto in (1, 58) and int.from_bytes(inner[4:6], "big") == flow.sport
    wanted = 6 if flow.proto == "tcp" else 17
    return proto == wanted and len(inner) >= 4 and int.from_bytes(inner[0:2], "big") == flow.sport \
        and int.from_bytes(inner[2:4], "big") == flow.dport


def parse_icmp_error(body: bytes, sender: str, flow: Flow) -> IcmpError | None:
    """``body`` (an ICMP message without its IP header) as an error about ``flow``; None for anything else."""
    if len(body) < 8:
        return None
    quoted = body[8:]
    if flow.v6:
        if body[0] not in (1, 2, 3) or len(quoted) < 48:
            return None
        src, dst, proto, inner = quoted[8:24], quoted[24:40], quoted[6], quoted[40:]
    else:
        if body[0] not in (3, 11) or len(quoted) < 28:
            return None
        header = (quoted[0] & 0x0F) * 4
        src, dst, proto, inner = quoted[12:16], quoted[16:20], quoted[9], quoted[header:]
    if (ipaddress.ip_address(src), ipaddress.ip_address(dst)) != (ipaddress.ip_address(flow.src),
                                                                   ipaddress.ip_address(flow.dst)):
        return None
    if not _quoted_matches(inner, proto, flow):
        return None
    return IcmpError(sender, 6 if flow.v6 else 4, body[0], body[1])


# ----------------------------------------------------------------------------------------------
# Live: endpoints, route, the throwaway table, the monitors, the probe
# ----------------------------------------------------------------------------------------------


T = TypeVar("T")


def _in_scope(target: Target | None, work: Callable[[], T]) -> T:
    """Run ``work`` in the target's network namespace (a short-lived thread), or here for the machine."""
    if target is None:
        return work()
    from ..ns import nsenter

    return nsenter.run_in(target, work, name=f"nslab-trace {target.text}")


def _run(target: Target | None, argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return _in_scope(target, lambda: subprocess.run(argv, capture_output=True, text=True, timeout=10))
    except FileNotFoundError:
        raise EnvironmentProblem(f"trace needs '{argv[0]}' on the machine") from None


def host_of_address(address: str) -> Target | None:
    """The lab host that has ``address``; None when it is the machine's own; UserError otherwise."""
    from ..core import state
    from ..ns import targets

    for recorded in state.all_states():
        for host in recorded.lab.hosts.values():
            if any(address in (str(i.address.ip), str(i.address6.ip) if i.address6 else "") for i in host.interfaces):
                return targets.resolve(f"{recorded.lab.name}/{host.name}")
    probe = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((address, 0))
    except OSError:
        raise UserError(f"{address}: neither a lab host's address nor one of the machine's") from None
    finally:
        probe.close()
    return None


def resolve_source(text: str) -> Target | None:
    """SRC: a target (lab host, netns:, pid:, container:, path:) or an address; None is the machine."""
    from ..ns.targets import resolve

    return host_of_address(text) if is_address(text) else resolve(text)


def address_of(target: Target, ipv6: bool = False) -> str:
    """The first global IPv4 (``ipv6``: IPv6) address of a target (a lab host: its first interface's)."""
    if target.lab and target.host:
        from ..core import state

        recorded = state.LabState.load(target.lab)
        if recorded is not None and target.host in recorded.lab.hosts:
            interfaces = recorded.lab.hosts[target.host].interfaces
            if not ipv6 and interfaces:
                return str(interfaces[0].address.ip)
            found = next((str(i.address6.ip) for i in interfaces if i.address6), None)
            if found:
                return found
    result = _run(target, ["ip", "-j", "-6" if ipv6 else "-4", "addr", "show", "scope", "global"])
    for link in json.loads(result.stdout or "[]"):
        for info in link.get("addr_info", []):
            return str(info["local"])
    raise TargetError(f"{target.text}: has no {'IPv6' if ipv6 else 'IPv4'} address to trace to")


def route(source: Target | None, destination: str) -> dict[str, Any]:
    """``ip -j route get DST`` inside SRC: dev, gateway, prefsrc; a UserError-free failure is returned as error."""
    result = _run(source, ["ip", "-j", "route", "get", destination])
    if result.returncode != 0:
        return {"error": result.stderr.strip().removeprefix("RTNETLINK answers: ") or "no route"}
    routes = json.loads(result.stdout or "[]")
    return routes[0] if routes else {"error": "no route"}


class _Monitor:
    """``nft monitor`` in one namespace, read line by line without blocking past a deadline."""

    def __init__(self, scope: str, target: Target | None) -> None:
        self.scope, self.target = scope, target
        self.process: subprocess.Popen[bytes] = _in_scope(
            target, lambda: subprocess.Popen(["nft", "monitor"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        )
        self.buffer = b""
        self.lines: list[str] = []

    def wait_for(self, wanted: str, timeout: float = 3.0) -> bool:
        """Read until a line equal to ``wanted`` (e.g. our table's creation) or the timeout."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.buffer += chunk
            *complete, self.buffer = self.buffer.split(b"\n")
            for raw in complete:
                text = raw.decode(errors="replace")
                self.lines.append(text)
                if text.strip() == wanted:
                    return True
        return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def events(self) -> list[TraceEvent]:
        parsed = (parse_event(line, self.scope) for line in self.lines)
        return [event for event in parsed if event is not None]


def _nft(target: Target | None, text: str, json_output: bool = False) -> str:
    from ..drivers.nftables import Nft

    return _in_scope(target, lambda: Nft().run(text, json_output=json_output))


@dataclass
class Probe:
    sock: socket.socket
    flow: Flow
    errors: socket.socket | None = None  # a raw ICMP socket in SRC: errors about a TCP/UDP probe
    error: IcmpError | None = None  # the ICMP error some hop sent about the probe


def open_probe(source: Target | None, proto: str, src: str, dst: str, port: int) -> Probe:
    """The probe's socket, made in SRC's namespace and bound, so its source port is known before tracing."""

    family = socket.AF_INET6 if ":" in dst else socket.AF_INET

    def make() -> socket.socket:
        if proto == "icmp":
            icmp = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
            sock = socket.socket(family, socket.SOCK_RAW, icmp)
        else:
            sock = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        sock.bind((src, 0))
        return sock

    def raw_icmp() -> socket.socket:
        return socket.socket(family, socket.SOCK_RAW,
                             socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP)

    sock: socket.socket = _in_scope(source, make)
    errors = None if proto == "icmp" else _in_scope(source, raw_icmp)
    ident = (os.getpid() ^ int(time.monotonic() * 1000)) & 0xFFFF if proto == "icmp" else sock.getsockname()[1]
    return Probe(sock, Flow(proto, src, dst, ident, port), errors)


def _checksum(data: bytes) -> int:
    total = sum(int.from_bytes(data[i: i + 2], "big") for i in range(0, len(data) - 1, 2))
    if len(data) % 2:
        total += data[-1] << 8
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _icmp6_probe(probe: Probe, timeout: float) -> tuple[bool, str]:
    """ICMPv6 echo (the kernel fills the checksum in; what comes back has no IP header in front)."""
    flow = probe.flow
    probe.sock.sendto(bytes([128, 0, 0, 0]) + flow.sport.to_bytes(2, "big") + (1).to_bytes(2, "big") + b"nslab-trace",
                      (flow.dst, 0))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([probe.sock], [], [], left)[0]:
            break
        body, peer = probe.sock.recvfrom(2048)
        if body[:1] == b"\x81" and int.from_bytes(body[4:6], "big") == flow.sport:
            return True, f"echo reply from {peer[0]}"
        probe.error = parse_icmp_error(body, peer[0], flow)
        if probe.error:
            return False, f"ICMPv6 {probe.error.reason} from {peer[0]}"
    return False, "no answer"


def _icmp_probe(probe: Probe, timeout: float) -> tuple[bool, str]:
    flow = probe.flow
    if flow.v6:
        return _icmp6_probe(probe, timeout)
    payload = b"nslab-trace"
    head = bytes([8, 0, 0, 0]) + flow.sport.to_bytes(2, "big") + (1).to_bytes(2, "big")
    checksum = _checksum(head + payload).to_bytes(2, "big")
    probe.sock.sendto(head[:2] + checksum + head[4:] + payload, (flow.dst, 0))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([probe.sock], [], [], left)[0]:
            break
        packet, peer = probe.sock.recvfrom(2048)
        body = packet[(packet[0] & 0x0F) * 4:]
        if body[:1] == b"\0" and int.from_bytes(body[4:6], "big") == flow.sport:
            return True, f"echo reply from {peer[0]}"
        probe.error = parse_icmp_error(body, peer[0], flow)
        if probe.error:
            return False, f"ICMP {probe.error.reason} from {peer[0]}"
    return False, "no answer"


def _stream_probe(probe: Probe, timeout: float) -> tuple[bool, str]:
    import errno

    sock, flow = probe.sock, probe.flow
    sock.setblocking(False)
    code = sock.connect_ex((flow.dst, flow.dport))
    if flow.proto == "udp":
        sock.send(b"nslab-trace")
    elif code not in (0, errno.EINPROGRESS):
        return False, os.strerror(code)
    wanted = select.POLLIN if flow.proto == "udp" else select.POLLOUT
    poller = select.poll()
    poller.register(sock, wanted)
    if not poller.poll(timeout * 1000):
        return False, "no answer"
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error == errno.ECONNREFUSED:
        return True, "refused: the destination answered, nothing listens on that port"
    if error:
        return False, os.strerror(error)
    return True, "connected" if flow.proto == "tcp" else "answered"


def _error_about(probe: Probe, timeout: float = 0.2) -> IcmpError | None:
    """The ICMP error about a TCP/UDP probe that reached SRC's raw ICMP socket, if any."""
    sock, flow = probe.errors, probe.flow
    deadline = time.monotonic() + timeout
    while sock is not None and (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        packet, peer = sock.recvfrom(2048)
        found = parse_icmp_error(packet if flow.v6 else packet[(packet[0] & 0x0F) * 4:], peer[0], flow)
        if found:
            return found
    return None


def send_probe(probe: Probe, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """``(reached, outcome)``: reached means the destination answered (a refusal too). An ICMP error some hop
    sent about the probe is kept in ``probe.error``."""
    try:
        if probe.flow.proto == "icmp":
            return _icmp_probe(probe, timeout)
        reached, outcome = _stream_probe(probe, timeout)
        if not reached:
            probe.error = _error_about(probe)
            if probe.error:
                outcome = f"ICMP{'v6' if probe.flow.v6 else ''} {probe.error.reason} from {probe.error.sender}"
        return reached, outcome
    finally:
        probe.sock.close()
        if probe.errors is not None:
            probe.errors.close()


@dataclass
class TraceResult:
    source: str
    destination: str
    route: dict[str, Any]
    flow: Flow | None = None
    reached: bool = False
    outcome: str = ""
    explanations: list[Explanation] = field(default_factory=list)
    hooks: dict[tuple[str, str, str], str] = field(default_factory=dict)
    raw: list[str] = field(default_factory=list)
    error: IcmpError | None = None  # the ICMP error a hop sent about the probe
    why: str = ""  # why that hop (or SRC itself, without a route) could not forward it

    @property
    def verdict(self) -> str:
        drops = [e.dropped_by for e in self.explanations if e.dropped]
        if self.reached:
            return f"reached: {self.outcome}"
        if drops:
            return drops[0]
        if "error" in self.route:
            return f"no route: {self.route['error']}" + (f": {self.why}" if self.why else "")
        if self.error is not None:
            return f"not reached: {self.why}"
        return f"not reached ({self.outcome}), and no traced rule dropped it: look at the destination and its replies"


FORWARDING = ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding", "net.ipv6.conf.all.forwarding")
MAX_ROUTERS = 8  # routers of SRC's lab traced too (a monitor each)


def _scopes(source: Target | None) -> list[tuple[str, Target | None]]:
    """Where to trace: the machine, SRC, and the hosts of SRC's lab that forward (its routers: a rule there that
    drops or rejects the probe is named)."""
    scopes: list[tuple[str, Target | None]] = [("the machine", None)]
    if source is not None and os.stat(source.net_path).st_ino != os.stat("/proc/thread-self/ns/net").st_ino:
        scopes.append((source.label, source))
    if source is not None and source.lab:
        from ..core import state
        from ..ns.targets import resolve

        recorded = state.LabState.load(source.lab)
        routers = [h.name for h in recorded.lab.hosts.values() if h.name != source.host and h.container is None
                   and any(k in FORWARDING and v == "1" for k, v in h.sysctls)] if recorded else []
        scopes += [(f"{source.lab}/{r}", resolve(f"{source.lab}/{r}")) for r in routers[:MAX_ROUTERS]]
    return scopes


def _no_default(lab: Lab, host: Host, v6: bool) -> str:
    """Why ``host`` has no default route, when the lab file says so ("" when it has one)."""
    if (host.gateway6 if v6 else host.gateway) is not None:
        return ""
    internal = sorted({i.network for i in host.interfaces if i.network and lab.networks[i.network].internal})
    on_networks = {i.network for i in host.interfaces if i.network}
    if internal and set(internal) == on_networks:
        return (f"no default route: network{'s' if len(internal) > 1 else ''} {', '.join(internal)} "
                f"{'are' if len(internal) > 1 else 'is'} internal")
    return "no default route (the lab file gives it none)"


def _hop(address: str) -> tuple[str, tuple[Lab, Host] | None]:
    """How to name the hop that sent an ICMP error: a lab host (and its lab), a lab network's gateway on the
    machine, or the bare address."""
    from ..core import state

    for recorded in state.all_states():
        lab = recorded.lab
        for host in lab.hosts.values():
            if any(address in (str(i.address.ip), str(i.address6.ip) if i.address6 else "") for i in host.interfaces):
                return f"{lab.name}/{host.name} ({address})", (lab, host)
        for network in lab.networks.values():
            if address in (str(network.gateway.ip), str(network.gateway6.ip) if network.gateway6 else ""):
                return f"the machine ({address}, gateway of network {lab.name}/{network.name})", None
    return address, None


def why_icmp(error: IcmpError, destination: str, explanations: Sequence[Explanation]) -> str:
    """The hop that answered the probe with an ICMP error, and why it could not deliver it."""
    hop, known = _hop(error.sender)
    said = f"{hop} answered ICMP{'v6' if error.family == 6 else ''} {error.reason}"
    if error.reason in PROHIBITED:
        rule = next((e.dropped_by for e in explanations if e.dropped and e.events[0].scope in hop), "")
        return f"{said}: {rule or 'a reject rule there'}"
    if error.reason == "time exceeded":
        return f"{said}: the packet's TTL ran out there (a routing loop?)"
    if error.reason in ("fragmentation needed", "packet too big"):
        return f"{said}: the packet is larger than the MTU of the next link"
    if known is None:
        return said
    lab, host = known
    from ..ns.targets import resolve

    path = route(resolve(f"{lab.name}/{host.name}"), destination)
    if error.reason in NO_ROUTE or "error" in path:
        reason = _no_default(lab, host, ":" in destination) if "error" in path else ""
        return f"{said}: no route on {lab.name}/{host.name} to {destination}" + (f" ({reason})" if reason else "")
    if error.reason in NO_NEIGHBOUR:
        return f"{said}: nothing answered for {destination} on its {path.get('dev', '?')} (ARP/ND)"
    return said


def _start_table(monitor: _Monitor, target: Target | None, text: str, table: str) -> None:
    """Create the table once the monitor reports it: ``nft monitor`` subscribes some time after it starts,
    and an event sent before that is lost, so the table is made again until the monitor has seen it."""
    for attempt in range(10):
        if attempt:
            _nft(target, f"delete table inet {table}")
        _nft(target, text)
        if monitor.wait_for(f"add table inet {table}", timeout=0.5):
            return
    raise EnvironmentProblem(f"nft monitor in {monitor.scope} reported nothing; cannot trace")


def _traced(scopes: Sequence[tuple[str, Target | None]], flow: Flow, send: Callable[[], tuple[bool, str]],
            table: str) -> tuple[tuple[bool, str], list[_Monitor]]:
    """Table and monitor in every scope, the probe, the marker; the tables are removed whatever happens."""
    monitors: list[_Monitor] = []
    made: list[Target | None] = []
    try:
        for scope, target in scopes:
            monitor = _Monitor(scope, target)
            monitors.append(monitor)
            made.append(target)
            _start_table(monitor, target, table_text(table, flow), table)
        outcome = send()
        time.sleep(0.1)  # softirq processing of the probe's last packet may lag its send by a little
        for monitor, target in zip(monitors, made, strict=False):
            _nft(target, f"add chain inet {table} done")
            monitor.wait_for(f"add chain inet {table} done")
        return outcome, monitors
    finally:
        for monitor in monitors:
            monitor.stop()
        _remove_tables(made, table)


def _remove_tables(made: Sequence[Target | None], table: str) -> None:
    """Delete our table in every namespace it was made in, all of them even when one fails."""
    from ..errors import FirewallError

    failures = []
    for target in made:
        try:
            _nft(target, f"delete table inet {table}")
        except FirewallError as exc:
            failures.append(f"{target.text if target else 'the machine'}: {exc}")
    if failures:
        raise FirewallError(f"could not remove table inet {table}: " + "; ".join(failures))


def _lab_host(target: Target | None) -> tuple[Lab, Host] | None:
    """The lab and host ``target`` is, when it is a lab host."""
    if target is None or not target.lab or not target.host:
        return None
    from ..core import state

    recorded = state.LabState.load(target.lab)
    if recorded is None or target.host not in recorded.lab.hosts:
        return None
    return recorded.lab, recorded.lab.hosts[target.host]


def _remote_address(text: str, ipv6: bool) -> str | None:
    """A destination ``[LAB/]HOST`` that is a host of a lab across machines living on another machine: its first
    (IPv6 with ``ipv6``) address; None for anything else."""
    from ..core import state

    lab_name, _, host = text.rpartition("/")
    for recorded in state.all_states():
        remote = recorded.lab.remote.get(host)
        if remote is not None and lab_name in ("", recorded.lab.name):
            found = [i.address6.ip if ipv6 and i.address6 else i.address.ip for i in remote.interfaces
                     if not ipv6 or i.address6]
            return str(found[0]) if found else None
    return None


def trace(source_text: str, destination_text: str, ipv6: bool = False) -> TraceResult:
    """The whole trace; the table is gone when this returns or raises. ``ipv6``: a destination given by name is
    traced at its IPv6 address (an IPv6 address is traced over IPv6 anyway)."""
    dst_text, port, proto = parse_destination(destination_text)
    source = resolve_source(source_text)
    if is_address(dst_text):
        destination = str(ipaddress.ip_address(dst_text))
    else:
        from ..ns.targets import resolve

        destination = _remote_address(dst_text, ipv6) or address_of(resolve(dst_text), ipv6)
    path = route(source, destination)
    result = TraceResult(source_text, destination, path)
    if "error" in path:
        known = _lab_host(source)
        result.why = _no_default(*known, ":" in destination) if known else ""
        return result
    _probe(result, source, proto, port)
    return result


def _probe(result: TraceResult, source: Target | None, proto: str, port: int) -> None:
    """The traced probe along ``result.route``: its outcome, what each traced namespace did, why it failed."""
    destination, path = result.destination, result.route
    src_address = str(path.get("prefsrc") or path.get("src") or "")
    if not src_address:
        raise EnvironmentProblem(f"route to {destination} names no source address")
    probe = open_probe(source, proto, src_address, destination, port)
    result.flow = probe.flow
    scopes = _scopes(source)
    table = table_name()
    (result.reached, result.outcome), monitors = _traced(scopes, probe.flow, lambda: send_probe(probe), table)
    events = [event for monitor in monitors for event in monitor.events()]
    result.raw = [line for monitor in monitors for line in monitor.lines if line.startswith("trace id")]
    result.explanations = explain(events, own_table=table)
    result.error = probe.error
    if probe.error is not None and not result.reached:
        result.why = why_icmp(probe.error, destination, result.explanations)
    for _, target in scopes:
        try:
            result.hooks.update(hooks_of(_nft(target, "list chains", json_output=True)))
        except Exception:  # hook names are a nicety
            pass
