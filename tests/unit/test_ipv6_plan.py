"""IPv6 dual stack without a kernel: the lab file's fields, IPAM (ULA /64s, stable derived and sticky host
addresses, overlaps with the machine's IPv6 routes), the wiring commands, hosts files, the nft rules
(NAT66, IPv6 publish, hairpin), the [::1] relay entries, partitions and the state round trip."""

from __future__ import annotations

import ipaddress

import pytest

from nslab.core import spec, state
from nslab.core.features import partitions
from nslab.core.features.dns.render import HostsFiles, Upstream, host_dns, render_resolv_conf
from nslab.core.features.firewall.record import desired
from nslab.core.features.firewall.render import render_table
from nslab.core.resolve import resolve
from nslab.core.wiring import AddBridges, AddHosts
from nslab.errors import ResolveError, SpecError
from nslab.model import Occupied

ULA = ipaddress.IPv6Network("fd12:3456:789a::/48")

LAB = """\
name: six
networks:
  front: {ipv6: true}
  back: {subnet6: "fd00:6::/64"}
  v4only: {}
  secure: {internal: true, ipv6: true}
hosts:
  web: {networks: [front], publish: ["6000:80", "0.0.0.0:6001:81", "[::1]:6002:82", "[::]:6003:83/udp"]}
  peer: {networks: [front, v4only]}
  api: {networks: {back: {address6: "fd00:6::10"}}}
  vault: {networks: [secure]}
partitions:
  - [web, api]
"""


def _resolve(text: str = LAB, **kwargs):
    lab_spec, source = spec.parse(text, "lab.yaml")
    return resolve(lab_spec, source, "lab.yaml", ula=ULA, **kwargs)


def test_dual_stack_networks_get_subnets_gateways_and_hosts_addresses():
    lab = _resolve()
    front, back, v4only, secure = (lab.networks[n] for n in ("front", "back", "v4only", "secure"))
    assert str(front.subnet6) == "fd12:3456:789a::/64" and str(secure.subnet6) == "fd12:3456:789a:1::/64"
    assert str(front.gateway6) == "fd12:3456:789a::1/64" and str(back.gateway6) == "fd00:6::1/64"
    assert v4only.subnet6 is None and v4only.gateway6 is None
    web, peer, api, vault = (lab.hosts[h] for h in ("web", "peer", "api", "vault"))
    assert web.interfaces[0].address6 is not None and web.interfaces[0].address6.ip in front.subnet6
    assert peer.interfaces[1].address6 is None  # on the IPv4-only network
    assert str(api.interfaces[0].address6) == "fd00:6::10/64"
    assert web.gateway6 == front.gateway6.ip and api.gateway6 == back.gateway6.ip
    assert vault.gateway6 is None  # internal: no way out, over IPv6 either


def test_an_ipv6_subnet_and_address_in_the_short_forms():
    lab = _resolve("name: a\nnetworks: {n: {subnet: 'fd00:1::/64'}}\nhosts:\n  h: {networks: {n: 'fd00:1::5'}}\n")
    n = lab.networks["n"]
    assert str(n.subnet6) == "fd00:1::/64" and n.subnet.subnet_of(ipaddress.IPv4Network("10.213.0.0/16"))
    assert str(lab.hosts["h"].interfaces[0].address6) == "fd00:1::5/64"


def test_host_addresses_are_derived_from_names_and_sticky():
    lab = _resolve()
    web6 = lab.hosts["web"].interfaces[0].address6
    # the same on another run, whatever other hosts come before it in the file
    reordered = LAB.replace("  web: {", "  first: {networks: [front]}\n  web: {")
    assert _resolve(reordered).hosts["web"].interfaces[0].address6 == web6
    # sticky: the address it had before is kept (even one not derived)
    before = {"networks6": {"front": "fd12:3456:789a::/64"}, "hosts6": {"web": {"front": "fd12:3456:789a::77"}}}
    again = _resolve(previous=before)
    assert str(again.hosts["web"].interfaces[0].address6) == "fd12:3456:789a::77/64"
    assert lab.allocations()["hosts6"]["web"] == {"front": str(web6.ip)}
    assert lab.allocations()["networks6"]["back"] == "fd00:6::/64"


def test_automatic_subnets6_avoid_the_machine_and_other_labs():
    occupied = [Occupied(ipaddress.IPv6Network("fd12:3456:789a::/63"), "route on wg0"),
                Occupied(ipaddress.IPv4Network("192.0.2.0/24"), "route on eth0")]
    lab = _resolve("name: a\nnetworks: {x: {ipv6: true}}\n", occupied=occupied)
    assert str(lab.networks["x"].subnet6) == "fd12:3456:789a:2::/64"


def test_overlapping_subnet6_names_the_machine_route():
    occupied = [Occupied(ipaddress.IPv6Network("fd00:6::/48"), "route on wg0")]
    with pytest.raises(ResolveError) as err:
        _resolve(occupied=occupied)
    assert err.value.lines() == [
        "lab.yaml:4: networks.back.subnet6: subnet6 fd00:6::/64 overlaps fd00:6::/48 (route on wg0)"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: a\nnetworks: {n: {subnet: 'fd00:1::/64', subnet6: 'fd00:2::/64'}}\n", "one IPv6 subnet per network"),
        ("name: a\nnetworks: {n: {subnet6: 'fe80::/64'}}\n", "is a link-local range"),
        ("name: a\nnetworks: {n: {subnet6: '10.0.0.0/24'}}\n", "not an IPv6 subnet"),
        ("name: a\nnetworks: {n: {subnet6: 'fd00::/124'}}\n", "at least a /120"),
    ],
)
def test_bad_subnet6(text, message):
    with pytest.raises(SpecError) as err:
        _resolve(text)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("{networks: {n4: {address6: 'fd00:6::5'}}}", "network 'n4' has no IPv6 (give it ipv6: true or a subnet6)"),
        ("{networks: {n6: {address6: 'fd00:7::5'}}}", "address fd00:7::5 is not a host address of fd00:6::/64"),
        ("{networks: {n6: {address6: 'fd00:6::1'}}}", "address fd00:6::1 is already the gateway"),
    ],
)
def test_bad_address6(host, message):
    text = f"name: a\nnetworks: {{n4: {{}}, n6: {{subnet6: 'fd00:6::/64'}}}}\nhosts:\n  h: {host}\n"
    with pytest.raises(ResolveError) as err:
        _resolve(text)
    assert message in str(err.value)


def test_wiring_commands():
    lab = _resolve()
    bridges = AddBridges(lab, tuple(lab.networks.values())).commands()
    front = lab.networks["front"].bridge
    assert f"sysctl -qew net.ipv6.conf.{front}.accept_ra=0" in bridges
    assert f"ip addr add fd12:3456:789a::1/64 dev {front} nodad" in bridges
    assert not any("nodad" in c and lab.networks["v4only"].bridge in c for c in bridges)
    hosts = AddHosts(lab, (lab.hosts["api"], lab.hosts["peer"])).commands()
    assert "ip -n six-api link set eth0 addrgenmode eui64" in hosts
    assert "ip -n six-api addr add fd00:6::10/64 dev eth0 nodad" in hosts
    assert "ip -n six-api -6 route add default via fd00:6::1 proto static" in hosts
    assert "ip -n six-peer link set eth1 addrgenmode eui64" not in hosts  # IPv4-only: no link-local


def test_hosts_files_name_ipv6_addresses_and_resolv_conf_asks_aaaa():
    lab = _resolve()
    text = HostsFiles(lab).render(lab.hosts["peer"]).splitlines()
    web6 = lab.hosts["web"].interfaces[0].address6.ip
    assert f"{web6}\tweb web.six" in text and "fd00:6::10\tapi api.six" in text
    assert "10.213.0.2\tweb web.six" in text  # IPv4 stays
    upstream = Upstream(servers=("192.0.2.53",), source="/etc/resolv.conf")
    assert "no-aaaa" not in render_resolv_conf("six", host_dns(lab.hosts["web"], upstream))
    v4_lab = _resolve("name: a\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n]}\n")
    assert "no-aaaa" in render_resolv_conf("a", host_dns(v4_lab.hosts["h"], upstream))


def test_ipv6_nameservers_from_the_lab_file():
    lab = _resolve(LAB.replace("name: six\n", "name: six\ndns: ['2001:db8::53', 192.0.2.53]\n"))
    text = render_resolv_conf("six", host_dns(lab.hosts["web"], Upstream()))
    assert "nameserver 2001:db8::53\nnameserver 192.0.2.53\n" in text


def test_nft_rules_for_ipv6():
    lab = _resolve()
    rec = desired(lab)
    text = render_table({"six": rec})
    web6 = lab.hosts["web"].interfaces[0].address6.ip
    front = lab.networks["front"]
    assert f'ip6 saddr {front.subnet6} oifname != "{front.bridge}" masquerade' in text  # NAT66
    assert 'ip6 saddr fd00:6::/64 oifname != "' in text
    assert f"ip6 saddr {lab.networks['secure'].subnet6}" not in text  # internal: no egress
    assert text.count("ip6 daddr != ::1 fib daddr type local jump lab.six.publish6") == 2  # prerouting, output
    assert f"tcp dport 6000 dnat ip6 to [{web6}]:80" in text  # plain: both families
    assert "tcp dport 6000 dnat ip to 10.213.0.2:80" in text
    assert "dport 6001 dnat ip6" not in text  # 0.0.0.0: IPv4 only
    assert "tcp dport 6002 dnat ip to" not in text  # [::1]: IPv6 only
    assert f"ip6 daddr ::1 tcp dport 6002 dnat ip6 to [{web6}]:82" in text  # (never jumped to: the relay's)
    assert f"udp dport 6003 dnat ip6 to [{web6}]:83" in text
    assert f'oifname "{front.bridge}" ip6 saddr {front.subnet6} ct status dnat masquerade' in text  # hairpin
    relays = rec.loopback_relays()
    assert [(r["port"], r["proto"], r["to_port"]) for r in relays] == [(6000, "tcp", 80), (6002, "tcp", 82),
                                                                       (6003, "udp", 83)]
    assert all(r["listen"] == "::1" and r["to"] == str(web6) for r in relays)
    assert rec.needs_forwarding6()


def test_routed_ipv6_egress_has_no_masquerade():
    lab = _resolve("name: a\nnetworks: {n: {subnet6: 'fd00:7::/64', nat6: false}}\nhosts:\n  h: {networks: [n]}\n")
    text = render_table({"a": desired(lab)})
    assert "ip6 saddr fd00:7::/64" not in text and "ip saddr 10.213.0.0/24" in text
    assert desired(lab).needs_forwarding6()


def test_ipv4_only_labs_render_as_before():
    lab = _resolve("name: a\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n], publish: ['6000:80']}\n")
    rec = desired(lab)
    assert "ip6" not in render_table({"a": rec}) and rec.loopback_relays() == [] and not rec.needs_forwarding6()


def test_partitions_drop_ipv6_of_dual_stack_sides():
    lab = _resolve()
    tables = partitions.render(lab, [["web", "api"]])
    web6 = lab.hosts["web"].interfaces[0].address6.ip
    assert "ip6 saddr { fd00:6::10 } drop" in tables["web"] and "ip6 daddr { fd00:6::10 } drop" in tables["web"]
    assert f"ip6 saddr {{ {web6} }} drop" in tables["api"]
    assert f"ip saddr {{ {lab.hosts['api'].interfaces[0].address.ip} }} drop" in tables["web"]  # IPv4 stays


def test_state_round_trip_keeps_ipv6():
    lab = _resolve()
    again = state.lab_from_dict(state.lab_to_dict(lab))
    assert again.networks == lab.networks and again.hosts == lab.hosts


def test_docker_ip6_docker_user_gets_accept_rules_for_dual_stack_networks():
    from nslab.core.features.firewall.record import FirewallRecord, FwNetwork
    from nslab.core.features.firewall.render import Observed, transaction
    from nslab.drivers.nftables import FakeNft

    ruleset = [
        {"chain": {"family": "ip6", "table": "filter", "name": "DOCKER-USER", "handle": 5}},
        {"rule": {"family": "ip6", "table": "filter", "chain": "DOCKER-USER", "handle": 40, "comment": "nslab:l:x"}},
        {"rule": {"family": "ip6", "table": "filter", "chain": "DOCKER-USER", "handle": 41, "comment": "docker"}},
    ]
    seen = Observed.from_ruleset(FakeNft(ruleset).ruleset())
    assert seen.docker_user6 and seen.our_docker_rules6 == (40,) and not seen.docker_user
    rec = FirewallRecord(networks=[FwNetwork("six", "nslaaaa", "10.213.5.0/24", False, "fd00:6::/64"),
                                   FwNetwork("four", "nslbbbb", "10.213.6.0/24", False)])
    text = transaction({"l": rec}, seen)
    assert text.endswith(
        "delete rule ip6 filter DOCKER-USER handle 40\n"
        'insert rule ip6 filter DOCKER-USER iifname "nslaaaa" accept comment "nslab:l:six"\n'
        'insert rule ip6 filter DOCKER-USER oifname "nslaaaa" accept comment "nslab:l:six"\n'
    )
    assert "ip filter DOCKER-USER" not in text  # no IPv4 DOCKER-USER chain here


def test_dual_stack_links():
    text = "name: l\nhosts:\n  a: {}\n  b: {}\n  c: {}\nlinks:\n  - {endpoints: [a, b], ipv6: true}\n  - [b, c]\n"
    lab = _resolve(text)
    first, second = lab.links
    assert str(first.subnet6) == "fd12:3456:789a::/64" and second.subnet6 is None
    assert (str(first.a_address6), str(first.b_address6)) == ("fd12:3456:789a::1/64", "fd12:3456:789a::2/64")
    assert lab.hosts["a"].interfaces[0].address6 == first.a_address6
    assert lab.allocations()["links6"] == {"a|b|0": "fd12:3456:789a::/64"}
    assert state.lab_from_dict(state.lab_to_dict(lab)).links == lab.links
    from nslab.core.kinds.veth import AddLinks

    cmds = AddLinks(lab, lab.links).commands()
    assert "ip -n l-b addr add fd12:3456:789a::2/64 dev eth0 nodad" in cmds
    assert "ip -n l-a link set eth0 addrgenmode eui64" in cmds
    assert "ip -n l-c link set eth0 addrgenmode eui64" not in cmds
    assert "fd12:3456:789a::2\tb b.l" in HostsFiles(lab).render(lab.hosts["a"])


def test_static_ipv6_routes_and_default():
    text = """\
name: r
networks: {n: {subnet6: 'fd00:1::/64'}}
hosts:
  router: {networks: {n: {address6: 'fd00:1::9'}}}
  h:
    networks: [n]
    routes: [{to: 'fd00:99::/48', via: 'fd00:1::9'}, {to: 10.99.0.0/16, via: 10.213.0.1}]
    default: 'fd00:1::9'
"""
    lab = _resolve(text)
    h = lab.hosts["h"]
    assert [(str(r.to), str(r.via)) for r in h.routes] == [
        ("fd00:99::/48", "fd00:1::9"), ("10.99.0.0/16", "10.213.0.1"), ("::/0", "fd00:1::9")]
    assert h.gateway6 is None and str(h.gateway) == "10.213.0.1"  # IPv4 default as before
    assert state.lab_from_dict(state.lab_to_dict(lab)).hosts["h"].routes == h.routes
    from nslab.core.wiring import ConfigureHosts

    assert "ip -n r-h route add fd00:99::/48 via fd00:1::9 proto static" in ConfigureHosts((h,)).commands()


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("{to: 'fd00:99::/48', via: 10.213.0.1}", "different IP versions"),
        ("{to: 'fd00:99::/48', via: 'fd00:2::1'}", "gateway fd00:2::1 is on none of the host's subnets (fd00:1::/64)"),
    ],
)
def test_bad_ipv6_routes(route, message):
    text = f"name: r\nnetworks: {{n: {{subnet6: 'fd00:1::/64'}}}}\nhosts:\n  h: {{networks: [n], routes: [{route}]}}\n"
    with pytest.raises((ResolveError, SpecError)) as err:
        _resolve(text)
    assert message in str(err.value)


def test_a_full_small_subnet6_is_reported():
    text = ("name: a\nnetworks: {n: {subnet: 10.1.0.0/23, subnet6: 'fd00:1::/120'}}\n"
            "hosts:\n  h: {networks: [n], count: %d}\n")
    lab = _resolve(text % 254)  # every address but the subnet's first (and the gateway's)
    assert len({h.interfaces[0].address6 for h in lab.hosts.values()}) == 254
    with pytest.raises(ResolveError) as err:
        _resolve(text % 255)
    assert "network 'n' (fd00:1::/120) is full" in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fd00::5", ("fd00::5", 0, "icmp")),
        ("[fd00::5]:80", ("fd00::5", 80, "tcp")),
        ("[fd00::5]:53/udp", ("fd00::5", 53, "udp")),
        ("netns:blue:22", ("netns:blue", 22, "tcp")),
    ],
)
def test_trace_destinations_in_ipv6(text, expected):
    from nslab.tools.trace import Flow, parse_destination

    assert parse_destination(text) == expected
    flow = Flow("icmp", "fd00::2", "fd00::5", 7)
    assert flow.match() == "ip6 saddr fd00::2 ip6 daddr fd00::5 icmpv6 type echo-request icmpv6 id 7"


def test_the_machines_ipv6_nameservers_go_to_hosts_with_an_ipv6_way_out():
    from nslab.core.features.dns.render import discover_upstream

    text = "nameserver 192.0.2.53\nnameserver 2001:db8::53\nnameserver fe80::1%eth0\n"
    upstream = discover_upstream("/r", "/s", read=lambda path: text if path == "/r" else None)
    assert upstream.servers == ("192.0.2.53",) and upstream.servers6 == ("2001:db8::53",)
    lab = _resolve()
    dual = render_resolv_conf("six", host_dns(lab.hosts["web"], upstream))
    assert "nameserver 192.0.2.53\nnameserver 2001:db8::53\n" in dual
    v4_lab = _resolve("name: a\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n]}\n")
    assert "2001:db8::53" not in render_resolv_conf("a", host_dns(v4_lab.hosts["h"], upstream))
