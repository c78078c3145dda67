"""IPAM, naming and consistency checks, against a machine described by Occupied entries (no kernel)."""

from __future__ import annotations

import ipaddress

import pytest
from test_spec import ISSUE_EXAMPLE

from nslab.core import spec
from nslab.core.resolve import DEFAULT_POOL, resolve
from nslab.errors import ResolveError
from nslab.model import Occupied


def _resolve(text: str, **kwargs):
    lab_spec, source = spec.parse(text, "lab.yaml")
    return resolve(lab_spec, source, "lab.yaml", **kwargs)


def test_issue_example_names_and_addresses():
    lab = _resolve(ISSUE_EXAMPLE)
    front, back = lab.networks["front"], lab.networks["back"]
    assert str(front.gateway) == "10.80.1.1/24"
    assert back.subnet.subnet_of(DEFAULT_POOL) and str(back.gateway.ip).endswith(".1")
    web1, web2, db, lonely = (lab.hosts[h] for h in ("web1", "web2", "db", "lonely"))
    assert web1.namespace == "demo-web1"
    # eth0.. in the order of networks, then links
    assert [i.name for i in web1.interfaces] == ["eth0", "eth1", "eth2"]
    assert [i.name for i in web2.interfaces] == ["eth0", "eth1"]
    assert str(web1.interfaces[0].address) == "10.80.1.2/24"  # next free after the gateway
    assert str(web2.interfaces[0].address) == "10.80.1.20/24"  # fixed
    assert web2.interfaces[1].address.ip == back.subnet[2]
    assert db.interfaces[0].address.ip == back.subnet[3]
    assert web1.gateway == front.gateway.ip and db.gateway == back.gateway.ip
    assert lonely.interfaces == () and lonely.gateway is None
    assert str(lab.links[1].subnet) == "10.90.0.0/30"
    assert {str(lab.links[1].a_address), str(lab.links[1].b_address)} == {"10.90.0.1/30", "10.90.0.2/30"}
    for h in lab.hosts.values():
        for i in h.interfaces:
            assert len(i.name) <= 15 and (i.host_veth is None or len(i.host_veth) <= 15)
    assert all(len(n.bridge) <= 15 for n in lab.networks.values())


def test_automatic_subnets_avoid_the_machine_and_other_labs():
    occupied = [Occupied(ipaddress.IPv4Network("10.213.0.0/23"), "route on eth9")]
    lab = _resolve("name: a\nnetworks: {x: {}, y: {}}\n", occupied=occupied)
    assert str(lab.networks["x"].subnet) == "10.213.2.0/24"
    assert str(lab.networks["y"].subnet) == "10.213.3.0/24"


def test_explicit_overlap_names_both_sides():
    occupied = [Occupied(ipaddress.IPv4Network("10.80.0.0/16"), "network 'front' of lab 'other'")]
    with pytest.raises(ResolveError) as err:
        _resolve("name: a\nnetworks:\n  n:\n    subnet: 10.80.1.0/24\n", occupied=occupied)
    assert err.value.lines() == [
        "lab.yaml:4: networks.n.subnet: subnet 10.80.1.0/24 overlaps 10.80.0.0/16 (network 'front' of lab 'other')"
    ]


def test_all_reference_and_address_problems_at_once():
    text = """\
name: a
networks:
  n: {subnet: 10.1.0.0/24}
  m: {subnet: 10.1.0.128/25}
hosts:
  h1: {networks: {n: 10.1.0.1}}
  h2: {networks: {n: 10.1.1.5}}
  h3: {networks: [nope]}
  h4: {networks: {n: 10.1.0.9}}
  h5: {networks: {n: 10.1.0.9}}
  Bad_Name: {}
links:
  - [h1, ghost]
  - [h1, h1]
"""
    with pytest.raises(ResolveError) as err:
        _resolve(text)
    got = "\n".join(err.value.lines())
    for fragment in [
        "lab.yaml:4: networks.m.subnet: subnet 10.1.0.128/25 overlaps 10.1.0.0/24",
        "lab.yaml:6: hosts.h1.networks.n: address 10.1.0.1 is already the gateway",
        "lab.yaml:7: hosts.h2.networks.n: address 10.1.1.5 is not a host address of 10.1.0.0/24",
        "lab.yaml:8: hosts.h3.networks.nope: unknown network 'nope'",
        "lab.yaml:10: hosts.h5.networks.n: address 10.1.0.9 is already used by host 'h4'",
        "hosts.Bad_Name: host name 'Bad_Name': at most 31 characters of a-z, 0-9 and -, starting with a letter",
        "lab.yaml:13: links[0].endpoints[1]: unknown host 'ghost'",
        "lab.yaml:14: links[1].endpoints: a link needs two different hosts",
    ]:
        assert fragment in got, (fragment, got)


def test_previous_addresses_are_kept_when_hosts_are_inserted_before():
    first = _resolve("name: a\nnetworks: {n: {}}\nhosts: {b: {networks: [n]}}\n")
    again = _resolve(
        "name: a\nnetworks: {n: {}}\nhosts: {a: {networks: [n]}, b: {networks: [n]}}\n",
        previous=first.allocations(),
    )
    assert again.hosts["b"] == first.hosts["b"]
    assert again.networks["n"] == first.networks["n"]
    assert again.hosts["a"].interfaces[0].address.ip != first.hosts["b"].interfaces[0].address.ip


def test_full_network_is_reported():
    hosts = "".join(f"  h{i}: {{networks: [n]}}\n" for i in range(3))
    with pytest.raises(ResolveError, match="is full"):
        _resolve(f"name: a\nnetworks: {{n: {{subnet: 10.9.0.0/30}}}}\nhosts:\n{hosts}")


def test_internal_network_gives_no_default_route():
    lab = _resolve(
        "name: a\nnetworks: {i: {internal: true}, o: {}}\nhosts: {x: {networks: [i]}, y: {networks: [i, o]}}\n"
    )
    assert lab.hosts["x"].gateway is None
    assert lab.hosts["y"].gateway == lab.networks["o"].gateway.ip


def test_problems_come_in_phase_order_names_subnets_addresses_links_hostnames():
    occupied = [
        Occupied(ipaddress.IPv4Network("10.213.0.0/16"), "route on eth9"),
        Occupied(ipaddress.IPv4Network("10.214.0.0/16"), "route on eth8"),
    ]
    text = """\
name: a
networks:
  n: {subnet: 10.9.0.0/30}
  auto: {}
  Bad: {subnet: 10.9.0.0/24}
hosts:
  h1: {networks: [n, nope]}
  h2: {networks: [n]}
  h3: {networks: [auto], hostname: "-x"}
links:
  - [h1, h1]
  - {endpoints: [h2, h3], subnet: 10.9.0.0/31}
  - [h1, h2]
"""
    with pytest.raises(ResolveError) as err:
        _resolve(text, occupied=occupied)
    assert err.value.lines() == [
        "lab.yaml:5: networks.Bad: network name 'Bad': at most 31 characters of a-z, 0-9 and -, starting with a letter",
        "lab.yaml:5: networks.Bad.subnet: subnet 10.9.0.0/24 overlaps 10.9.0.0/30 (network 'n' of lab 'a')",
        "lab.yaml:12: links[1].subnet: subnet 10.9.0.0/31 overlaps 10.9.0.0/30 (network 'n' of lab 'a')",
        "lab.yaml:4: networks.auto: no free /24 left in the pool 10.213.0.0/16; give a subnet",
        "lab.yaml:7: hosts.h1.networks.nope: unknown network 'nope' (networks: n, auto, Bad)",
        "lab.yaml:8: hosts.h2.networks.n: network 'n' (10.9.0.0/30) is full",
        "lab.yaml:11: links[0].endpoints: a link needs two different hosts",
        "lab.yaml:13: links[2]: no free /30 left in the pool 10.214.0.0/16; give a subnet",
        "lab.yaml:9: hosts.h3.hostname: '-x' is not a valid hostname",
    ]


def test_unknown_network_when_none_is_defined():
    with pytest.raises(ResolveError, match=r"unknown network 'n' \(networks: none defined\)"):
        _resolve("name: a\nhosts: {h: {networks: [n]}}\n")


def test_previous_subnets_are_kept_where_still_free():
    text = "name: a\nnetworks: {x: {}, y: {}}\nhosts: {a: {}, b: {}}\nlinks: [[a, b], [b, a]]\n"
    previous = {"networks": {"x": "10.213.7.0/24"}, "links": {"a|b|0": "10.214.0.8/30"}}
    lab = _resolve(text, previous=previous)
    assert str(lab.networks["x"].subnet) == "10.213.7.0/24"
    assert str(lab.networks["y"].subnet) == "10.213.0.0/24"  # no previous: first free of the pool
    assert [str(lk.subnet) for lk in lab.links] == ["10.214.0.8/30", "10.214.0.0/30"]
    # a previous subnet that something else took since is given up for the next free one
    occupied = [Occupied(ipaddress.IPv4Network("10.213.7.0/24"), "route on eth9")]
    lab = _resolve(text, occupied=occupied, previous=previous)
    assert [str(n.subnet) for n in lab.networks.values()] == ["10.213.0.0/24", "10.213.1.0/24"]


def test_previous_address_yields_to_a_fixed_one_and_must_still_fit():
    text = """\
name: a
networks: {n: {subnet: 10.1.0.0/24}}
hosts:
  a: {networks: [n]}
  b: {networks: {n: 10.1.0.5}}
  c: {networks: [n]}
  d: {networks: [n]}
  e: {networks: [n]}
"""
    before = {"a": "10.1.0.5", "c": "10.2.0.3", "d": "10.1.0.255", "e": "10.1.0.9"}  # c: outside, d: broadcast
    previous = {"hosts": {h: {"n": ip} for h, ip in before.items()}}
    lab = _resolve(text, previous=previous)
    got = {h: str(lab.hosts[h].interfaces[0].address.ip) for h in "abcde"}
    # fixed first (b), then what is still valid from before (e), then the next free in file order
    assert got == {"a": "10.1.0.2", "b": "10.1.0.5", "c": "10.1.0.3", "d": "10.1.0.4", "e": "10.1.0.9"}


def test_link_interfaces_follow_network_interfaces_and_a_31_uses_both_addresses():
    text = """\
name: a
networks: {n: {}, m: {internal: true}}
hosts:
  a: {networks: [m, n]}
  b: {}
links:
  - {endpoints: [a, b], subnet: 10.9.0.0/31}
"""
    lab = _resolve(text)
    a, b = lab.hosts["a"], lab.hosts["b"]
    assert [(i.name, i.network, i.link) for i in a.interfaces] == [
        ("eth0", "m", None),
        ("eth1", "n", None),
        ("eth2", None, 0),
    ]
    assert [(i.name, str(i.address), i.host_veth) for i in b.interfaces] == [("eth0", "10.9.0.1/31", None)]
    assert str(a.interfaces[2].address) == "10.9.0.0/31"
    assert a.gateway == lab.networks["n"].gateway.ip  # the first network that is not internal
    assert (lab.links[0].a_ifname, lab.links[0].b_ifname) == ("eth2", "eth0")


def test_a_previous_address_that_is_now_the_network_address_is_not_kept():
    text = "name: a\nnetworks: {n: {subnet: 10.1.1.0/24}}\nhosts:\n  h: {networks: [n]}\n"
    lab = _resolve(text, previous={"hosts": {"h": {"n": "10.1.1.0"}}})
    assert str(lab.hosts["h"].interfaces[0].address) == "10.1.1.2/24"


def test_a_hostname_with_a_trailing_newline_is_refused():
    with pytest.raises(ResolveError, match="is not a valid hostname"):
        _resolve('name: a\nhosts:\n  h: {hostname: "web\\n"}\n')
