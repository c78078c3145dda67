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
from ..ns.targets import Target

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
    if event.kind == "rule" and verdict in DROPS:
        item.dropped_by = f"dropped by {name_rule(event)}"
    elif event.kind == "policy" and verdict in DROPS:
        item.dropped_by = f"dropped by the policy ({verdict}) of chain {event.where}"


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


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


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

    sock: socket.socket = _in_scope(source, make)
    ident = (os.getpid() ^ int(time.monotonic() * 1000)) & 0xFFFF if proto == "icmp" else sock.getsockname()[1]
    return Probe(sock, Flow(proto, src, dst, ident, port))


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
        if body[:1] in (b"\x01", b"\x03"):
            return False, f"ICMPv6 {'unreachable' if body[0] == 1 else 'time exceeded'} from {peer[0]}"
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
        if body[:1] in (b"\x03", b"\x0b"):
            return False, f"ICMP {'unreachable' if body[0] == 3 else 'time exceeded'} from {peer[0]}"
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


def send_probe(probe: Probe, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """``(reached, outcome)``: reached means the destination answered (a refusal too)."""
    try:
        return _icmp_probe(probe, timeout) if probe.flow.proto == "icmp" else _stream_probe(probe, timeout)
    finally:
        probe.sock.close()


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

    @property
    def verdict(self) -> str:
        drops = [e.dropped_by for e in self.explanations if e.dropped]
        if self.reached:
            return f"reached: {self.outcome}"
        if drops:
            return drops[0]
        if "error" in self.route:
            return f"no route: {self.route['error']}"
        return f"not reached ({self.outcome}), and no traced rule dropped it: look at the destination and its replies"


def _scopes(source: Target | None) -> list[tuple[str, Target | None]]:
    scopes: list[tuple[str, Target | None]] = [("the machine", None)]
    if source is not None and os.stat(source.net_path).st_ino != os.stat("/proc/thread-self/ns/net").st_ino:
        scopes.append((source.label, source))
    return scopes


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


def trace(source_text: str, destination_text: str, ipv6: bool = False) -> TraceResult:
    """The whole trace; the table is gone when this returns or raises. ``ipv6``: a destination given by name is
    traced at its IPv6 address (an IPv6 address is traced over IPv6 anyway)."""
    dst_text, port, proto = parse_destination(destination_text)
    source = resolve_source(source_text)
    if is_address(dst_text):
        destination = str(ipaddress.ip_address(dst_text))
    else:
        from ..ns.targets import resolve

        destination = address_of(resolve(dst_text), ipv6)
    path = route(source, destination)
    result = TraceResult(source_text, destination, path)
    if "error" in path:
        return result
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
    for _, target in scopes:
        try:
            result.hooks.update(hooks_of(_nft(target, "list chains", json_output=True)))
        except Exception:  # hook names are a nicety
            pass
    return result
