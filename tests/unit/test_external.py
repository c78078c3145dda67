"""A machine's NIC on a lab bridge (features/external.py) over the fake drivers: the lab file's checks, resolve,
the ``ip`` lines, what is written before the first change, giving back on ``down`` (also with no saved state),
drift and its repair, refusing a VLAN on a kernel without 802.1q. On the real kernel:
tests/integration/test_external.py."""

from __future__ import annotations

import ipaddress

import pytest

from nslab.core import lifecycle, spec
from nslab.core.features import external
from nslab.core.resolve import resolve
from nslab.drivers.fake import FakeNics, fake_drivers
from nslab.drivers.nic import Nic, nic_from_json, route_words
from nslab.errors import ResolveError, SpecError
from nslab.lab import Lab
from nslab.model import Occupied
from nslab.naming import bridge_name

LAB = """\
name: ext
networks:
  lan: {external: eth1, subnet: 192.0.2.0/24}
hosts:
  pc: {networks: {lan: 192.0.2.50}, default: 192.0.2.1}
"""
ETH1 = Nic("eth1", kind="veth", up=True, mtu=1400, addresses=("192.0.2.10/24", "2001:db8:5::10/64"),
           routes=("0.0.0.0/0 via 192.0.2.1 proto static metric 100", "2001:db8:99::/48 via 2001:db8:5::1"))
BR = bridge_name("ext", "lan")


@pytest.fixture
def drivers(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path / "state"))
    return fake_drivers(nics=FakeNics([ETH1, Nic("lo", loopback=True), Nic("br9", kind="bridge"),
                                       Nic("p9", kind="veth", master="br9")]))


def test_external_needs_the_lan_s_subnet_and_an_interface_name():
    with pytest.raises(SpecError) as caught:
        spec.parse(LAB.replace(", subnet: 192.0.2.0/24", "").replace("external: eth1", "external: a/b"), "x.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "x.yaml:3: networks.lan.external: 'a/b' is not an interface name (1 to 15 characters, no '/', ':' or blank)"]
    with pytest.raises(SpecError) as caught:
        spec.parse(LAB.replace(", subnet: 192.0.2.0/24", ""), "x.yaml")
    assert "give the subnet of the LAN it is on (subnet:)" in str(caught.value.problems[0])


def test_resolve_lets_the_subnet_be_the_interface_s_and_makes_the_network_internal():
    machine = [Occupied(ipaddress.ip_network("192.0.2.0/24"), "address 192.0.2.10/24 on eth1"),
               Occupied(ipaddress.ip_network("192.0.2.0/24"), "route on eth1")]
    lab = resolve(*spec.parse(LAB), occupied=machine)
    lan = lab.networks["lan"]
    assert (lan.external, lan.internal, str(lab.hosts["pc"].interfaces[0].address)) == ("eth1", True, "192.0.2.50/24")
    assert lab.hosts["pc"].gateway is None  # no NAT network: the default route is the host's own default:
    assert [(str(r.to), str(r.via)) for r in lab.hosts["pc"].routes] == [("0.0.0.0/0", "192.0.2.1")]
    other = [Occupied(ipaddress.ip_network("192.0.2.0/24"), "route on eth2")]
    with pytest.raises(ResolveError, match="overlaps 192.0.2.0/24 \\(route on eth2\\)"):
        resolve(*spec.parse(LAB), occupied=other)


def test_route_words_keep_what_ip_shows_and_leave_the_kernel_s_routes():
    dhcp = {"dst": "default", "gateway": "192.0.2.1", "protocol": "dhcp", "metric": 100, "prefsrc": "192.0.2.10"}
    assert route_words(dhcp, False) == "0.0.0.0/0 via 192.0.2.1 proto dhcp metric 100 src 192.0.2.10"
    assert route_words({"dst": "default", "gateway": "fe80::1", "protocol": "ra"}, True) == "::/0 via fe80::1 proto ra"
    assert route_words({"dst": "192.0.2.0/24", "protocol": "kernel", "scope": "link"}, False) is None
    assert route_words({"dst": "10.1.0.0/16", "scope": "link"}, False) == "10.1.0.0/16 scope link"
    assert route_words({"dst": "fe80::/64", "protocol": "static"}, True) is None
    link = {"ifname": "eth1", "flags": ["BROADCAST", "UP"], "mtu": 1400, "master": "br0",
            "linkinfo": {"info_kind": "veth"},
            "addr_info": [{"family": "inet", "local": "192.0.2.10", "prefixlen": 24, "scope": "global"},
                          {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]}
    nic = nic_from_json(link, [{"dst": "default", "gateway": "192.0.2.1"}], [])
    assert nic == Nic("eth1", "veth", True, 1400, "br0", False, ("192.0.2.10/24",), ("0.0.0.0/0 via 192.0.2.1",))
    assert Nic.from_json(nic.to_json()) == nic


def test_dry_run_prints_the_ip_lines(drivers):
    result = Lab.from_text(LAB, drivers=drivers).up(dry_run=True)
    lines = [line for action in result.plan for line in action.commands()]
    (borrow,) = result.plan.of_type(external.Borrow)
    assert borrow.commands() == [
        "ip addr del 192.0.2.10/24 dev eth1",
        "ip addr del 2001:db8:5::10/64 dev eth1",
        f"ip link set eth1 master {BR}",
        "ip link set eth1 up",
        f"ip addr add 192.0.2.10/24 brd + dev {BR}",
        f"ip addr add 2001:db8:5::10/64 nodad dev {BR}",
        f"ip route replace 0.0.0.0/0 via 192.0.2.1 proto static metric 100 dev {BR}",
        f"ip route replace 2001:db8:99::/48 via 2001:db8:5::1 dev {BR}",
    ]
    assert not any(line.startswith(f"ip addr add 192.0.2.1/24 brd + dev {BR}") for line in lines)  # no gateway
    assert drivers.nics.lines == []


def test_up_moves_everything_to_the_bridge_and_down_gives_it_back(drivers):
    Lab.from_text(LAB, drivers=drivers).up()
    moved = drivers.nics.interface("eth1")
    assert (moved.master, moved.addresses, moved.routes) == (BR, (), ())
    bridge = drivers.nics.interface(BR)
    assert (bridge.addresses, bridge.routes) == (ETH1.addresses, ETH1.routes)
    assert external.saved("ext", drivers) == {"eth1": (BR, ETH1)}  # written before the change
    assert Lab.from_text(LAB, drivers=drivers).up().plan.of_type(external.Borrow) == []  # nothing to do
    lifecycle.down("ext", drivers)
    assert drivers.nics.interface("eth1") == ETH1
    assert external.saved("ext", drivers) == {}


def test_down_with_no_state_gives_back_from_what_was_written_first(drivers):
    """An ``up`` killed right after it borrowed eth1 saved no state: ``down`` finds the entry all the same."""
    import os

    from nslab import paths

    Lab.from_text(LAB, drivers=drivers).up()
    os.remove(paths.state_file("ext"))
    lifecycle.down("ext", drivers)
    assert drivers.nics.interface("eth1") == ETH1


def test_a_failing_borrow_gives_back_and_leaves_nothing(drivers):
    drivers.nics.fail_on = {"change"}
    with pytest.raises(Exception, match="injected"):
        Lab.from_text(LAB, drivers=drivers).up()
    assert drivers.nics.interface("eth1") == ETH1 and external.saved("ext", drivers) == {}


def test_drift_shows_the_interface_off_its_bridge_and_up_repairs_it(drivers):
    from nslab.core import state
    from nslab.core.drift import lab_drift

    Lab.from_text(LAB, drivers=drivers).up()
    drivers.nics.change(["ip link set eth1 nomaster"])
    st = state.LabState.load("ext")
    assert st is not None
    assert [d.text for d in lab_drift(st, drivers)] == [f"network lan: eth1 is not a port of {BR}"]
    plan = Lab.from_text(LAB, drivers=drivers).up().plan
    assert len(plan.of_type(external.Borrow)) == 1 and drivers.nics.interface("eth1").master == BR
    assert [d.text for d in lab_drift(st, drivers)] == []


BAD = """\
name: ext
networks:
  a: {external: nope0, subnet: 10.9.1.0/24}
  b: {external: lo, subnet: 10.9.2.0/24}
  c: {external: p9, subnet: 10.9.3.0/24}
  d: {external: eth1, subnet: 192.0.0.0/16}
  e: {external: br9, subnet: 10.9.5.0/24}
  f: {external: eth1.10, subnet: 10.9.6.0/24}
  g: {external: eth1, subnet: 10.9.7.0/24}
hosts:
  pc: {networks: [a]}
"""


def test_every_problem_of_the_interfaces_at_once_before_any_change(drivers):
    from nslab.errors import UserError

    with pytest.raises(UserError) as caught:
        Lab.from_text(BAD, drivers=drivers).up()
    said = [str(p) for p in caught.value.problems]
    assert said == [
        "<string>:3: networks.a.external: the machine has no interface nope0",
        "<string>:4: networks.b.external: lo is the loopback interface",
        "<string>:5: networks.c.external: p9 is a port of br9: take it off first (ip link set p9 nomaster)",
        "<string>:6: networks.d.subnet: subnet 192.0.0.0/16 clashes with eth1's address 192.0.2.10/24: "
        "write subnet: 192.0.2.0/24",
        "<string>:7: networks.e.external: br9 is a bridge: give one of its ports, or the interface it stands on",
        "<string>:8: networks.f.external: eth1.10: this kernel has no 802.1q (VLAN) support: VLAN sub-interfaces "
        "cannot be used",
        "<string>:9: networks.g.external: eth1 is already on a lab bridge: network 'd'",
    ]
    assert drivers.nics.lines == [] and "add_bridges" not in drivers.kernel.calls


def test_a_host_may_not_take_the_machine_s_address(drivers):
    from nslab.errors import UserError

    with pytest.raises(UserError) as caught:
        Lab.from_text(LAB.replace("192.0.2.50", "192.0.2.10"), drivers=drivers).up()
    assert [str(p) for p in caught.value.problems] == [
        "<string>:5: hosts.pc.networks.lan: 192.0.2.10 is the machine's address on eth1: give host 'pc' another "
        "one (networks: {lan: ADDRESS})"]
