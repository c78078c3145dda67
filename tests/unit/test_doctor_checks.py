"""doctor's checks over hand-made observations: each finds its fault with the right fix, and stays quiet on a
healthy view. No root, no kernel."""

from __future__ import annotations

import ipaddress

import pytest

from nslab.drivers.rtnl import LinkInfo, RouteInfo
from nslab.errors import UserError
from nslab.tools.doctor import checks, parse_to
from nslab.tools.doctor.observe import LabView, MachineView, NsView, nameservers


def link(name: str, *addresses: str, up: bool = True, carrier: bool = True, mtu: int = 1500) -> LinkInfo:
    return LinkInfo(1, name, "veth" if name != "lo" else "", "", 0, up,
                    tuple(ipaddress.ip_interface(a) for a in addresses), mtu, carrier, 7)


def route(dest: str, gateway: str | None = None, device: str = "eth0") -> RouteInfo:
    return RouteInfo(ipaddress.IPv4Network(dest), gateway, device)


def healthy(**changes) -> NsView:
    view = NsView(label="demo/web", text="web", netns="demo-web", lab="demo",
                  links=[link("lo", "127.0.0.1/8"), link("eth0", "10.0.0.2/24")],
                  routes=[route("10.0.0.0/24"), route("0.0.0.0/0", "10.0.0.1")],
                  ip_forward="0", rp_filter={"all": 0, "default": 2, "eth0": 2},
                  resolv_path="/etc/netns/demo-web/resolv.conf", nameservers=["10.0.0.1"],
                  dns_answers={"10.0.0.1": "ok"}, gateway_arp={"10.0.0.1": ("eth0", True)})
    for key, value in changes.items():
        setattr(view, key, value)
    return view


def ids(findings) -> list[str]:
    return [f.check for f in findings]


def test_healthy_namespace_has_no_finding():
    assert checks.check_namespace(healthy()) == []


def test_lo_down():
    view = healthy(links=[link("lo", up=False), link("eth0", "10.0.0.2/24")])
    [finding] = checks.check_namespace(view)
    assert finding.check == "lo-down" and finding.fix == ("ip -n demo-web link set lo up",)


def test_interface_down_and_without_carrier():
    view = healthy(links=[link("lo"), link("eth0", "10.0.0.2/24", up=False), link("eth1", carrier=False)])
    found = checks.interfaces_down(view)
    assert ids(found) == ["link-down", "no-carrier"]
    assert found[0].fix == ("ip -n demo-web link set eth0 up",)


def test_no_default_route_suggests_a_gateway_on_the_subnet_and_route_to():
    view = healthy(routes=[route("10.0.0.0/24")], to=ipaddress.IPv4Address("192.0.2.7"))
    found = checks.routes(view)
    assert ids(found) == ["no-default-route", "no-route-to"]
    assert found[0].fix == ("ip -n demo-web route add default via 10.0.0.1 dev eth0",)
    assert checks.routes(healthy(to=ipaddress.IPv4Address("192.0.2.7"))) == []


def test_gateway_not_answering_arp():
    [finding] = checks.gateway_arp(healthy(gateway_arp={"10.0.0.9": ("eth0", False)}))
    assert "10.0.0.9" in finding.problem and finding.check == "gateway-no-arp"


def test_ip_forward_only_where_the_namespace_forwards():
    assert checks.forwarding(healthy()) == []
    [finding] = checks.forwarding(healthy(forwards=True))
    assert finding.fix == ("ip netns exec demo-web sysctl -w net.ipv4.ip_forward=1",)


def test_rp_filter_strict_matters_with_two_routed_interfaces():
    two = [link("lo"), link("eth0", "10.0.0.2/24"), link("eth1", "10.1.0.2/24")]
    assert checks.rp_filter(healthy(rp_filter={"all": 1})) == []  # one interface: nothing asymmetric
    [finding] = checks.rp_filter(healthy(links=two, rp_filter={"all": 1, "eth0": 2, "eth1": 0}))
    assert finding.fix[0] == "ip netns exec demo-web sysctl -w net.ipv4.conf.all.rp_filter=2"
    assert checks.rp_filter(healthy(links=two, rp_filter={"all": 0, "eth0": 2, "eth1": 2})) == []


def test_loopback_stub_that_does_not_exist_and_silent_nameserver():
    view = healthy(netns="blue", lab=None, label="netns blue", nameservers=["127.0.0.53", "10.0.0.53"],
                   dns_answers={"10.0.0.53": "refused (nothing listens on port 53 there)"},
                   resolv_path="/etc/netns/blue/resolv.conf")
    found = checks.resolver(view)
    assert ids(found) == ["stub-resolver-missing", "nameserver-silent"]
    assert "echo 'nameserver REACHABLE_RESOLVER' > /etc/netns/blue/resolv.conf" in found[0].fix
    view.udp53 = {"127.0.0.53"}  # a stub that does run in this namespace is fine
    assert ids(checks.resolver(view)) == ["nameserver-silent"]


def test_fix_commands_for_targets_without_a_name():
    view = healthy(netns=None, text="pid:42", links=[link("lo", up=False)])
    assert checks.lo_down(view)[0].fix == ("nslab exec pid:42 -- ip link set lo up",)


def nat_lab(**changes) -> LabView:
    net = ("front", ipaddress.IPv4Network("10.0.0.0/24"), "nsbr1")
    lab = LabView(name="demo", source="/x/nslab.yaml", nat_networks=[net], all_networks=[net])
    for key, value in changes.items():
        setattr(lab, key, value)
    return lab


def machine(**changes) -> MachineView:
    m = MachineView(ip_forward="1", labs=[nat_lab()],
                    ruleset_lines=['ip saddr 10.0.0.0/24 oifname != "nsbr1" masquerade comment "nslab:demo:egress"'])
    for key, value in changes.items():
        setattr(m, key, value)
    return m


def test_healthy_machine():
    assert checks.check_machine(machine()) == []


def test_machine_faults():
    m = machine(ip_forward="0", foreign_drops=[("ip", "filter", "FORWARD")], ruleset_lines=[],
                foreign_networks=[(ipaddress.IPv4Network("10.0.0.0/16"), "route on tun0")],
                leftovers=["lab old (its links outlived its state)"])
    found = {f.check: f for f in checks.check_machine(m)}
    assert set(found) == {"ip-forward-off", "forward-drop", "no-masquerade", "subnet-overlap", "leftovers"}
    assert 'nft insert rule ip filter FORWARD iifname "nsbr1" accept' in found["forward-drop"].fix
    assert found["leftovers"].fix == ("nslab gc",)
    assert checks.forward_drop(machine(foreign_drops=[("ip", "filter", "FORWARD")], docker_user=True)) == []


def test_mtu_mismatch_on_a_network():
    lab = nat_lab(mtus={"front": {"bridge nsbr1": 1500, "web:eth0": 1400}},
                  mtu_commands={"bridge nsbr1": "ip link set nsbr1 mtu {mtu}"})
    [finding] = checks.mtu(machine(labs=[lab]))
    assert finding.fix == ("ip link set nsbr1 mtu 1400",)


def test_parsing():
    assert nameservers("# x\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nsearch a\n") == ["10.0.0.1", "fe80::1"]
    assert parse_to("10.0.0.1:443") == (ipaddress.IPv4Address("10.0.0.1"), "443")
    assert parse_to("10.0.0.1") == (ipaddress.IPv4Address("10.0.0.1"), None)
    assert parse_to("[fd00::1]:53/udp") == (ipaddress.IPv6Address("fd00::1"), "53/udp")
    assert parse_to("fd00::1") == (ipaddress.IPv6Address("fd00::1"), None)
    assert parse_to(None) is None
    for bad in ("nowhere", "10.0.0.1:0", "[fd00::1]x", "10.0.0.1:80/sctp"):
        with pytest.raises(UserError):
            parse_to(bad)


def test_mtu_set_on_purpose_is_no_finding_and_a_change_is_fixed_back():
    planned = {"port nsv1": 9000, "router:eth1": 9000, "port nsv2": 1400, "b:eth0": 1400, "bridge nsbr1": 1400}
    lab = nat_lab(mtus={"right": dict(planned)}, mtu_planned=planned,
                  mtu_commands={"b:eth0": "ip -n rt-b link set eth0 mtu {mtu}"})
    assert checks.mtu(machine(labs=[lab])) == []
    lab.mtus["right"]["b:eth0"] = 1300
    [finding] = checks.mtu(machine(labs=[lab]))
    assert finding.fix == ("ip -n rt-b link set eth0 mtu 1400",)


def test_lab_host_default_route_and_forwarding_from_the_model():
    no_default = [route("10.0.0.0/24")]
    # the model expects none (only internal networks): no finding
    assert checks.check_namespace(healthy(routes=no_default, planned=True)) == []
    # the model's gateway, not a guess from the first subnet
    [finding] = checks.check_namespace(healthy(routes=no_default, planned=True, default_via=("10.0.0.254", "eth0")))
    assert finding.fix == ("ip -n demo-web route add default via 10.0.0.254 dev eth0",)
    # forwarding: the lab file's sysctls say so, the kernel has 0
    [fwd] = checks.forwarding(healthy(planned=True, forwards=True))
    assert "lab file" in fwd.problem and fwd.fix == ("ip netns exec demo-web sysctl -w net.ipv4.ip_forward=1",)
    assert checks.forwarding(healthy(planned=True, forwards=False)) == []
