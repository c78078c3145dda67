"""The reachability model (tools/reach.py) over resolved labs: routers, two hops, internal networks, isolation,
NAT, partitions, links down, total loss, IPv4 and IPv6."""

from __future__ import annotations

import ipaddress

import pytest

from labfiles import ROUTER
from nslab.core import spec
from nslab.core.resolve import resolve
from nslab.tools import reach
from nslab.tools.reach import OUTSIDE, Faults, Topology

OUT4 = ipaddress.ip_address("198.51.100.1")
OUT6 = ipaddress.ip_address("2001:db8::1")


MIXED = """\
name: u
networks:
  front: {subnet: 10.81.1.0/24}
  back: {subnet: 10.81.2.0/24}
  secure: {subnet: 10.81.3.0/24, internal: true}
hosts:
  web1: {networks: [front]}
  web2: {networks: [front]}
  db: {networks: [back]}
  vault: {networks: [secure]}
  both: {networks: [back, secure]}
  alone: {}
links:
  - {endpoints: [web1, db], subnet: 10.90.0.0/30}
"""


def lab_of(text: str):
    lab_spec, source = spec.parse(text, "lab.yaml")
    return resolve(lab_spec, source, "lab.yaml")


def between(text: str, src: str, dst: str, family: int = 4, faults: Faults = Faults(), outside=OUT4):
    topo = Topology(lab_of(text), faults, family)
    address = outside if dst == OUTSIDE else reach.target_address(topo, src, dst)
    return reach.verdict(topo, src, dst, address)


def test_router_example_reaches_through_the_router_with_ttl_63():
    v = between(ROUTER, "a", "b")
    assert v.reachable and v.ttl == 63, v.lines()
    assert [h.node for h in v.there.hops] == ["a", "router", "b"]
    assert v.there.hops[1].note == "forwards"
    assert v.address == "10.81.2.10" and v.source_address == v.address.replace("2.10", "1.2")
    assert between(ROUTER, "b", "a").reachable
    assert between(ROUTER, "a", "router").ttl == 64


def test_router_example_nothing_reaches_outside():
    for host in ("a", "b", "router"):
        v = between(ROUTER, host, OUTSIDE)
        assert not v.reachable
    assert "no route" in between(ROUTER, "router", OUTSIDE).why


def test_router_that_does_not_forward_blocks():
    v = between(ROUTER.replace("sysctls: {net.ipv4.ip_forward: 1}", "sysctls: {}"), "a", "b")
    assert not v.reachable and "router does not forward" in v.why


def test_missing_route_back_blocks_on_the_back_leg():
    v = between(ROUTER.replace("    routes: [{to: 10.81.1.0/24, via: 10.81.2.254}]\n", ""), "a", "b")
    assert v.there.ok and v.back is not None and not v.back.ok
    assert "b has no route to 10.81.1" in v.why


@pytest.mark.parametrize(("src", "dst", "reachable"), [
    ("web1", "web2", True), ("web1", "db", True), ("db", "web1", True), ("db", "both", True),
    ("vault", "both", True), ("web1", "vault", False), ("vault", "web1", False), ("web2", "db", False),
    ("db", "vault", False), ("alone", "web1", False), ("web1", "alone", False), ("web1", "web1", True),
    ("web1", OUTSIDE, True), ("db", OUTSIDE, True), ("both", OUTSIDE, True), ("vault", OUTSIDE, False),
    ("alone", OUTSIDE, False),
])
def test_same_network_links_isolation_internal_nat(src, dst, reachable):
    assert between(MIXED, src, dst).reachable == reachable


def test_why_isolation_and_internal():
    assert "isolation" in between(MIXED, "web2", "db").why
    assert "no route" in between(MIXED, "vault", OUTSIDE).why
    v = between(MIXED, "web1", OUTSIDE)
    assert v.there.hops[1].node == "machine" and v.there.hops[1].note == "masquerades" and v.ttl == 63


def test_link_is_probed_at_its_end():
    topo = Topology(lab_of(MIXED))
    assert str(reach.target_address(topo, "web1", "db")) == "10.90.0.2"
    assert str(reach.target_address(topo, "web1", "web2")) == "10.81.1.3"


TWO_HOPS = """\
name: two
networks:
  n1: {subnet: 10.1.1.0/24}
  n2: {subnet: 10.1.2.0/24, internal: true}
  n3: {subnet: 10.1.3.0/24, internal: true}
hosts:
  r1: {networks: {n1: 10.1.1.254, n2: 10.1.2.3}, sysctls: {net.ipv4.ip_forward: 1},
       routes: [{to: 10.1.3.0/24, via: 10.1.2.2}]}
  r2: {networks: {n2: 10.1.2.2, n3: 10.1.3.254}, sysctls: {net.ipv4.conf.all.forwarding: 1}, default: 10.1.2.3}
  a: {networks: [n1], routes: [{to: 10.1.0.0/16, via: 10.1.1.254}]}
  c: {networks: [n3], default: 10.1.3.254}
"""


def test_two_routers_ttl_62_and_outside_behind_routers_has_no_way_back():
    v = between(TWO_HOPS, "a", "c")
    assert v.reachable and v.ttl == 62, v.lines()
    assert [h.node for h in v.there.hops] == ["a", "r1", "r2", "c"]
    out = between(TWO_HOPS, "c", OUTSIDE)
    assert out.there.ok and not out.reachable and "no route back" in out.why  # not masqueraded
    assert between(TWO_HOPS, "r1", OUTSIDE).reachable  # on n1: masqueraded


def test_partition_cuts_through_a_router():
    faults = Faults(cuts=(("a", "router"),))
    assert not between(ROUTER, "a", "b", faults=faults).reachable  # router drops packets from a
    assert not between(ROUTER, "a", "router", faults=faults).reachable
    assert between(ROUTER, "b", "router", faults=faults).reachable
    network_cut = Faults(cuts=(("left", "b"),))
    assert "partition" in between(ROUTER, "a", "b", faults=network_cut).why


def test_interface_down_and_total_loss():
    assert not between(ROUTER, "a", "b", faults=Faults(down=frozenset({("router", "eth1")}))).reachable
    assert not between(MIXED, "web1", "db", faults=Faults(down=frozenset({("db", "eth1")}))).reachable
    out = Faults(drops=frozenset({("b", "eth0", "out")}))
    v = between(ROUTER, "a", "b", faults=out)
    assert v.there.ok and not v.reachable and "100 %" in v.why  # the reply is lost
    inbound = Faults(drops=frozenset({("b", "eth0", "in")}))
    assert not between(ROUTER, "a", "b", faults=inbound).there.ok


SIX = """\
name: six
networks:
  front: {subnet: 10.82.1.0/24, subnet6: "fd00:1::/64"}
  routed: {subnet: 10.82.2.0/24, subnet6: "fd00:2::/64", nat6: false}
  plain: {subnet: 10.82.3.0/24}
  secure: {subnet: 10.82.4.0/24, internal: true, subnet6: "fd00:4::/64"}
hosts:
  web: {networks: [front]}
  peer: {networks: [front]}
  r: {networks: [routed]}
  old: {networks: [plain]}
  vault: {networks: [secure]}
links:
  - {endpoints: [web, old], ipv6: true}
"""


def test_ipv6_same_network_link_isolation_outside():
    assert between(SIX, "web", "peer", 6).reachable
    assert between(SIX, "web", "old", 6).reachable  # the dual-stack link
    assert not between(SIX, "web", "vault", 6).reachable
    assert not between(SIX, "peer", "old", 6).reachable  # old has IPv6 only on the link
    assert between(SIX, "web", OUTSIDE, 6, outside=OUT6).reachable
    assert between(SIX, "r", OUTSIDE, 6, outside=OUT6).reachable  # routed: the upstream routes it back
    assert not between(SIX, "old", OUTSIDE, 6, outside=OUT6).reachable
    assert not between(SIX, "vault", OUTSIDE, 6, outside=OUT6).reachable
    topo = Topology(lab_of(SIX), family=6)
    assert reach.target_address(topo, "web", "web") == ipaddress.ip_address("::1")


def test_ipv6_router_needs_ipv6_forwarding():
    text = """\
name: r6
networks:
  l: {subnet: 10.83.1.0/24, subnet6: "fd00:11::/64", internal: true}
  r: {subnet: 10.83.2.0/24, subnet6: "fd00:12::/64", internal: true}
hosts:
  router: {networks: {l: {address6: "fd00:11::fe"}, r: {address6: "fd00:12::fe"}}, sysctls: {SYSCTLS}}
  a: {networks: [l], default: "fd00:11::fe"}
  b: {networks: [r], default: "fd00:12::fe"}
"""
    assert not between(text.replace("SYSCTLS", "net.ipv4.ip_forward: 1"), "a", "b", 6).reachable
    v = between(text.replace("SYSCTLS", "net.ipv6.conf.all.forwarding: 1"), "a", "b", 6)
    assert v.reachable and v.ttl == 63
    assert not between(text.replace("SYSCTLS", "net.ipv6.conf.all.forwarding: 1"), "a", "b", 4).reachable


def test_matrix_and_lines():
    lab = lab_of(ROUTER)
    cells = reach.matrix(lab, Faults(), ["a"], ["b", OUTSIDE], outside=OUT4)
    assert cells[("a", "b")].reachable and not cells[("a", OUTSIDE)].reachable
    text = "\n".join(cells[("a", "b")].lines())
    assert "reachable, ttl 63" in text and "router[eth1]" in text


def test_faults_from_records():
    lab = lab_of(MIXED)
    records = {"links": {"down": [["web1", "eth1"]]}, "partitions": {"partitions": [["web1", "web2", "cli"]]},
               "impair": {"hosts": {"db": {"eth0": {"loss": 100.0, "direction": "both"}}}}}
    f = reach.faults_from(lab, records)
    assert ("db", "eth1") in f.down and ("web1", "web2") in f.cuts
    assert f.drops == {("db", "eth0", "in"), ("db", "eth0", "out")}
