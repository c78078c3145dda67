"""trace's pure parts: `nft monitor trace` lines (recorded from nftables 1.0.6) parsed and explained, the
throwaway table's text, and DST[:PORT][/udp] parsing."""

from __future__ import annotations

import pytest

from nslab.errors import UserError
from nslab.tools import trace

OWN = "nslab-trace-4242"
PKT = 'iif "eth0" ip saddr 198.51.100.1 ip daddr 198.51.100.2 tcp sport 48785 tcp dport 6000 tcp flags == syn'

ISOLATION = f"""\
trace id 11111111 inet {OWN} pre packet: iif "nsl739908c4" ip saddr 10.213.1.2 ip daddr 10.213.0.2 tcp dport 8080
trace id 11111111 inet {OWN} pre rule ip saddr 10.213.1.2 meta nftrace set 1 (verdict continue)
trace id 11111111 inet {OWN} pre policy accept
trace id 11111111 inet nslab prerouting packet: iif "nsl739908c4" ip saddr 10.213.1.2 ip daddr 10.213.0.2
trace id 11111111 inet nslab prerouting policy accept
trace id 22222222 inet nslab forward packet: iif "nsl739908c4" oif "nsl7205b836" ip saddr 10.213.1.2
trace id 22222222 inet nslab forward rule jump lab.tr.forward comment "nslab:tr" (verdict jump lab.tr.forward)
trace id 22222222 inet nslab lab.tr.forward rule oifname "nsl7205b836" iifname != "nsl7205b836" jump lab.tr.into.front \
comment "nslab:tr:front:isolation" (verdict jump lab.tr.into.front)
trace id 22222222 inet nslab lab.tr.into.front rule drop comment "nslab:tr:front:isolation" (verdict drop)
"""

DOCKER = f"""\
add table inet {OWN}
trace id aaaa0001 inet {OWN} pre packet: {PKT}
trace id aaaa0001 inet {OWN} pre policy accept
trace id aaaa0001 inet nslab prerouting rule ip daddr != 127.0.0.0/8 fib daddr type local jump lab.tr.publish \
comment "nslab:tr" (verdict jump lab.tr.publish)
trace id aaaa0001 inet nslab lab.tr.publish rule tcp dport 6000 dnat ip to 10.213.0.2:8080 \
comment "nslab:tr:hosts.web1.publish[0]" (verdict accept)
trace id bbbb0002 inet nslab lab.tr.into.front rule ct status dnat return comment "nslab:tr:front:published" \
(verdict return)
trace id bbbb0002 inet nslab forward policy accept
trace id bbbb0002 ip filter FORWARD packet: iif "eth0" oif "nsl7205b836" ip saddr 198.51.100.1 ip daddr 10.213.0.2
trace id bbbb0002 ip filter FORWARD policy drop
# new generation 7 by process 99 (nft)
"""


def events(text: str, scope: str = "the machine") -> list[trace.TraceEvent]:
    parsed = [trace.parse_event(line, scope) for line in text.splitlines()]
    return [e for e in parsed if e is not None]


def test_parse_event_kinds_verdicts_and_comments():
    rule = trace.parse_event(ISOLATION.splitlines()[-1])
    assert rule is not None
    assert (rule.family, rule.table, rule.chain, rule.kind) == ("inet", "nslab", "lab.tr.into.front", "rule")
    assert (rule.text, rule.verdict) == ('drop comment "nslab:tr:front:isolation"', "drop")
    assert rule.comment == "nslab:tr:front:isolation"
    policy = trace.parse_event("trace id bbbb0002 ip filter FORWARD policy drop ")
    assert policy is not None and (policy.kind, policy.verdict, policy.where) == ("policy", "drop", "ip filter FORWARD")
    packet = trace.parse_event(f"trace id 1 ip filter FORWARD packet: {PKT} ")
    assert packet is not None and packet.kind == "packet" and packet.text == PKT
    assert trace.parse_event("add table inet x") is None
    assert trace.parse_event("# new generation 7 by process 99 (nft)") is None


def test_isolation_drop_is_named_by_nslab_comment():
    [packet] = trace.explain(events(ISOLATION), own_table=OWN)  # new trace id at forward: still one packet
    assert packet.dropped_by == (
        'dropped by nslab rule "nslab:tr:front:isolation" (lab tr, front:isolation) in inet nslab lab.tr.into.front'
    )
    assert all(e.table != OWN for e in packet.events) and not packet.rewrites


def test_foreign_policy_drop_and_dnat_rewrite():
    [packet] = trace.explain(events(DOCKER), own_table=OWN)
    assert packet.dropped_by == "dropped by the policy (drop) of chain ip filter FORWARD"
    assert len(packet.rewrites) == 1  # `ct status dnat return` matches on DNAT, it rewrites nothing
    assert 'nslab rule "nslab:tr:hosts.web1.publish[0]"' in packet.rewrites[0]
    assert "dnat ip to 10.213.0.2:8080" in packet.rewrites[0]


def test_a_partition_rule_would_be_named_the_same_way():
    line = (
        'trace id 3 inet nslab lab.tr.partition rule ip saddr 10.0.0.0/24 drop comment "nslab:tr:partition:a-b"'
        " (verdict drop)"
    )
    [packet] = trace.explain(events(line))
    assert packet.dropped_by.startswith('dropped by nslab rule "nslab:tr:partition:a-b" (lab tr, partition:a-b)')


def test_foreign_rule_without_comment_is_named_by_its_text():
    line = "trace id 4 ip filter INPUT rule tcp dport 22 reject (verdict drop)"
    [packet] = trace.explain(events(line))
    assert packet.dropped_by == "dropped by rule 'tcp dport 22 reject' in ip filter INPUT"


def test_render_shows_hooks_steps_and_verdicts():
    hooks = trace.hooks_of(
        '{"nftables": [{"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward",'
        ' "prio": 0}}]}'
    )
    lines = trace.render(trace.explain(events(DOCKER + DOCKER), own_table=OWN), hooks)
    assert lines[0] == "packet 1 in the machine:"
    assert "  [forward 0] ip filter FORWARD: policy drop" in lines
    assert lines[-2] == "  => dropped by the policy (drop) of chain ip filter FORWARD"
    assert lines[-1] == "packet 2 in the machine: dropped by the policy (drop) of chain ip filter FORWARD"


def test_table_traces_exactly_the_flow():
    flow = trace.Flow("tcp", "10.0.0.2", "10.0.1.2", 40000, 8080)
    text = trace.table_text(OWN, flow)
    assert f"table inet {OWN} {{" in text
    assert text.count("ip saddr 10.0.0.2 ip daddr 10.0.1.2 tcp sport 40000 tcp dport 8080 meta nftrace set 1") == 2
    assert "hook prerouting priority raw - 1" in text and "hook output priority raw - 1" in text
    icmp = trace.Flow("icmp", "10.0.0.2", "10.0.1.2", 77)
    assert "icmp type echo-request icmp id 77" in icmp.match()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web1:8080", ("web1", 8080, "tcp")),
        ("lab/web1:53/udp", ("lab/web1", 53, "udp")),
        ("10.0.0.2", ("10.0.0.2", 0, "icmp")),
        ("netns:blue:22", ("netns:blue", 22, "tcp")),
        ("web1/icmp", ("web1", 0, "icmp")),
    ],
)
def test_parse_destination(text, expected):
    assert trace.parse_destination(text) == expected


@pytest.mark.parametrize("text", ["web1:0", "web1:70000", "web1/udp", "web1:22/icmp", ":80"])
def test_parse_destination_refuses(text):
    with pytest.raises(UserError):
        trace.parse_destination(text)


def _quoted_ipv4(src: str, dst: str, proto: int, transport: bytes) -> bytes:
    import ipaddress

    header = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, proto, 0, 0])
    return header + ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed + transport


def test_icmp_errors_about_the_probe_are_read_and_others_ignored():
    from nslab.tools.trace import Flow, parse_icmp_error

    flow = Flow("tcp", "10.81.1.2", "198.51.100.1", 40000, 80)
    tcp = (40000).to_bytes(2, "big") + (80).to_bytes(2, "big") + bytes(4)
    error = parse_icmp_error(bytes([3, 0, 0, 0, 0, 0, 0, 0]) + _quoted_ipv4("10.81.1.2", "198.51.100.1", 6, tcp),
                             "10.81.1.254", flow)
    assert error is not None and (error.sender, error.reason) == ("10.81.1.254", "network unreachable")
    prohibited = parse_icmp_error(bytes([3, 13, 0, 0, 0, 0, 0, 0]) + _quoted_ipv4("10.81.1.2", "198.51.100.1", 6, tcp),
                                  "x", flow)
    assert prohibited is not None and prohibited.reason == "administratively prohibited"
    other_port = (40001).to_bytes(2, "big") + (80).to_bytes(2, "big") + bytes(4)
    assert parse_icmp_error(bytes([3, 0, 0, 0, 0, 0, 0, 0]) + _quoted_ipv4("10.81.1.2", "198.51.100.1", 6, other_port),
                            "x", flow) is None
    echo = Flow("icmp", "10.81.1.2", "198.51.100.1", 77)
    quoted_echo = bytes([8, 0, 0, 0]) + (77).to_bytes(2, "big") + bytes(2)
    ttl = parse_icmp_error(bytes([11, 0, 0, 0, 0, 0, 0, 0]) + _quoted_ipv4("10.81.1.2", "198.51.100.1", 1, quoted_echo),
                           "10.0.0.1", echo)
    assert ttl is not None and ttl.reason == "time exceeded"
    assert parse_icmp_error(bytes([0, 0, 0, 0, 0, 0, 0, 0]), "x", echo) is None  # an echo reply is no error
