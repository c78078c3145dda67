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
    nic = nic_from_json(link, [{"dst": "default", "gateway": "192.0.2.1", "dev": "eth1"}], [])
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
    assert external.saved("ext", drivers) == {"eth1": external.Entry(BR, ETH1)}  # written before the change
    assert Lab.from_text(LAB, drivers=drivers).up().plan.of_type(external.Borrow) == []  # nothing to do
    lifecycle.down("ext", drivers)
    assert drivers.nics.interface("eth1") == ETH1
    assert external.saved("ext", drivers) == {}


def test_a_network_renamed_gives_back_before_its_old_bridge_goes_and_borrows_for_the_new(drivers):
    Lab.from_text(LAB, drivers=drivers).up()
    renamed = LAB.replace("  lan: {external", "  uplink: {external").replace("{lan: 192", "{uplink: 192")
    plan = list(Lab.from_text(renamed, drivers=drivers).up().plan)
    kinds = [type(a).__name__ for a in plan]
    assert kinds.index("GiveBack") < kinds.index("RemoveBridges") < kinds.index("AddBridges") < kinds.index("Borrow")
    new = bridge_name("ext", "uplink")
    assert drivers.nics.interface("eth1").master == new and drivers.nics.interface(new).addresses == ETH1.addresses
    assert external.saved("ext", drivers) == {"eth1": external.Entry(new, ETH1)}
    lifecycle.down("ext", drivers)
    assert drivers.nics.interface("eth1") == ETH1


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


# --- macvlan (features/macvlan.py) ---------------------------------------------------------------------------

MACVLAN = """\
name: mvl
hosts:
  pc:
    macvlan: {parent: eth1, address: 192.0.2.60/24}
  quiet:
    macvlan: [{parent: eth1, mode: private}, {parent: eth1, mode: vepa}]
"""


def test_macvlan_entries_resolve_to_named_interfaces_with_derived_macs():
    lab = resolve(*spec.parse(MACVLAN))
    pc, quiet = lab.hosts["pc"].macvlans, lab.hosts["quiet"].macvlans
    assert [(m.name, m.parent, m.mode, str(m.address)) for m in pc] == [("mv0", "eth1", "bridge", "192.0.2.60/24")]
    assert [(m.name, m.mode, m.address) for m in quiet] == [("mv0", "private", None), ("mv1", "vepa", None)]
    assert pc[0].mac != quiet[0].mac
    with pytest.raises(SpecError) as caught:
        spec.parse(MACVLAN.replace("address: 192.0.2.60/24", "address: 192.0.2.60, mode: fast"), "m.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "m.yaml:4: hosts.pc.macvlan[0].mode: Input should be 'private', 'vepa', 'bridge' or 'passthru'",
        "m.yaml:4: hosts.pc.macvlan[0].address: '192.0.2.60': give the address with its prefix length (10.0.0.5/24)"]


def test_macvlans_are_made_beside_their_parent_and_moved_into_the_host(drivers):
    from nslab.core.features import macvlan

    result = Lab.from_text(MACVLAN, drivers=drivers).up()
    made = {(new.end.namespace, new.end.name): new for new in drivers.kernel.made if new.kind == "macvlan"}
    assert sorted(made) == [("mvl-pc", "mv0"), ("mvl-quiet", "mv0"), ("mvl-quiet", "mv1")]
    pc = made[("mvl-pc", "mv0")]
    assert (pc.made_in, pc.lower, [str(a) for a in pc.end.addresses]) == ("", "eth1", ["192.0.2.60/24"])
    assert pc.data == (8).to_bytes(2, "little") + (1).to_bytes(2, "little") + (4).to_bytes(4, "little")  # bridge
    (add,) = result.plan.of_type(macvlan.AddMacvlans)
    assert add.commands()[:2] == [
        f"ip link add mv0 link eth1 address {pc.end.mac} group {pc.end.group} type macvlan mode bridge netns mvl-pc",
        "ip -n mvl-pc addr add 192.0.2.60/24 brd + dev mv0"]
    again = Lab.from_text(MACVLAN.replace("mode: vepa", "mode: private"), drivers=drivers).up().plan
    (gone,), (new,) = again.of_type(macvlan.RemoveMacvlans), again.of_type(macvlan.AddMacvlans)
    assert [(ns, m.name, m.mode) for ns, m in gone.entries] == [("mvl-quiet", "mv1", "vepa")]
    assert [(ns, m.name, m.mode) for ns, m in new.entries] == [("mvl-quiet", "mv1", "private")]


def test_macvlan_parents_are_checked_before_any_change(drivers):
    from nslab.errors import UserError

    bad = MACVLAN.replace("parent: eth1, address", "parent: lo, address").replace(
        "{parent: eth1, mode: vepa}", "{parent: p9}").replace("{parent: eth1, mode: private}", "{parent: eth1.7}")
    with pytest.raises(UserError) as caught:
        Lab.from_text(bad, drivers=drivers).up()
    assert [str(p) for p in caught.value.problems] == [
        "<string>:4: hosts.pc.macvlan[0]: lo is the loopback interface",
        "<string>:6: hosts.quiet.macvlan[0]: eth1.7: this kernel has no 802.1q (VLAN) support: VLAN sub-interfaces "
        "cannot be used",
        "<string>:6: hosts.quiet.macvlan[1]: p9 is a port of br9: a macvlan needs an interface of its own",
    ]
    assert not drivers.kernel.made


def test_giving_back_after_the_bridge_went_adds_the_addresses_back_and_deletes_nothing(drivers):
    """Killed between removing eth1's addresses and making the bridge hold them, the bridge then removed: eth1
    gets everything back from what was written."""
    from nslab.values import replace

    Lab.from_text(LAB, drivers=drivers).up()
    drivers.nics.nics.pop(BR)
    drivers.nics.nics["eth1"] = replace(drivers.nics.nics["eth1"], master="")
    drivers.nics.lines.clear()
    lifecycle.down("ext", drivers)
    assert not [line for line in drivers.nics.lines if line.endswith(f"dev {BR}")]
    assert drivers.nics.interface("eth1") == ETH1 and external.saved("ext", drivers) == {}


def test_routes_keep_onlink_pref_metrics_and_expiry_and_what_cannot_move_is_named():
    cloud = {"dst": "default", "gateway": "172.31.1.1", "dev": "eth1", "table": "main", "protocol": "dhcp",
             "flags": ["onlink"], "metrics": [{"mtu": 1400, "advmss": 1360}]}
    assert route_words(cloud, False) == "0.0.0.0/0 via 172.31.1.1 proto dhcp mtu 1400 advmss 1360 onlink"
    ra = {"dst": "default", "gateway": "fe80::1", "dev": "eth1", "protocol": "ra", "metric": 1024, "pref": "high",
          "expires": 1790}
    assert route_words(ra, True) == "::/0 via fe80::1 proto ra metric 1024 pref high expires 1790"
    assert route_words({**ra, "pref": "medium"}, True) == "::/0 via fe80::1 proto ra metric 1024 expires 1790"
    link = {"ifname": "eth1", "flags": ["UP"], "address": "02:00:00:00:00:01", "ifalias": "uplink",
            "addr_info": [{"family": "inet6", "local": "2001:db8::5", "prefixlen": 64, "scope": "global",
                           "mngtmpaddr": True, "valid_life_time": 300, "preferred_life_time": 200}]}
    other = [{"dst": "10.7.0.0/16", "dev": "eth1", "table": "100"},
             {"dst": "10.8.0.0/16", "nexthops": [{"dev": "eth1"}, {"dev": "eth2"}]},
             {"dst": "10.9.0.0/16", "dev": "eth1", "metrics": [{"rtt": 10}]},
             {"dst": "10.10.0.0/16", "dev": "eth2", "table": "100"}, cloud]
    nic = nic_from_json(link, other, [ra], [{"priority": 100, "iif": "eth1", "table": "100"},
                                            {"priority": 101, "oif": "eth2"}], read_at=7.0)
    assert nic.routes == (route_words(cloud, False), route_words(ra, True)) and nic.mac == "02:00:00:00:00:01"
    assert nic.unsafe == ("route 10.7.0.0/16 in table 100", "multipath or nexthop-object route 10.8.0.0/16",
                          "route 10.9.0.0/16 with rtt", "policy rule 100 (iif eth1)")
    assert nic.words("2001:db8::5/64") == "mngtmpaddr valid_lft 300 preferred_lft 200" and not nic.nslab
    assert Nic.from_json(nic.to_json()) == nic
    assert nic_from_json({**link, "ifalias": "nslab:lab:host:pc:eth0"}, [], []).nslab
    assert nic_from_json({**link, "ifalias": "", "group": "7238508"}, [], []).nslab


def test_lifetimes_are_counted_down_and_what_expired_is_left_out():
    from nslab.drivers.nic import aged

    assert aged("2001:db8::5/64 nodad valid_lft 300 preferred_lft 200", 250.5) == (
        "2001:db8::5/64 nodad valid_lft 50 preferred_lft 0")
    assert aged("2001:db8::5/64 valid_lft 300 preferred_lft 200", 300) is None
    assert aged("::/0 via fe80::1 expires 30", 31) is None and aged("10.0.0.0/8 via 10.1.1.1", 1e6) == (
        "10.0.0.0/8 via 10.1.1.1")
    had = Nic("eth1", up=True, mac="02:00:00:00:00:01", addresses=("2001:db8::5/64", "192.0.2.10/24"),
              routes=("::/0 via fe80::1 proto ra expires 100",),
              details=(("2001:db8::5/64", "valid_lft 300 preferred_lft 200"),), read_at=1000.0)
    assert external.attach_lines(had, "br0", clock=1060.0)[4:] == [
        "ip link set br0 address 02:00:00:00:00:01",
        "ip addr add 2001:db8::5/64 nodad valid_lft 240 preferred_lft 140 dev br0",
        "ip addr add 192.0.2.10/24 brd + dev br0", "ip route replace ::/0 via fe80::1 proto ra expires 40 dev br0"]
    back = external.restore_lines(had, "br0", bridge_mac="02:aa:00:00:00:02", clock=1200.0)
    assert back[:4] == ["ip link set eth1 nomaster", "ip addr del 2001:db8::5/64 dev br0",
                        "ip addr del 192.0.2.10/24 dev br0", "ip link set br0 address 02:aa:00:00:00:02"]
    assert "ip addr add 2001:db8::5/64 nodad valid_lft 100 preferred_lft 0 dev eth1" in back
    assert not [line for line in back if "route" in line]  # (the RA's route expired meanwhile)


def test_the_bridge_takes_the_nic_s_mac_and_gets_its_own_back(drivers):
    from nslab.values import replace

    drivers.nics.nics["eth1"] = replace(ETH1, mac="02:00:00:00:00:01")
    drivers.nics.nics[BR] = Nic(BR, kind="bridge", up=True, mac="02:aa:00:00:00:02")  # (the bridge's own)
    Lab.from_text(LAB, drivers=drivers).up()
    assert external.saved("ext", drivers)["eth1"].bridge_mac == "02:aa:00:00:00:02"
    assert drivers.nics.interface(BR).mac == "02:00:00:00:00:01"
    lines = drivers.nics.lines
    assert lines.index(f"ip link set eth1 master {BR}") < lines.index(f"ip link set {BR} address 02:00:00:00:00:01") < (
        lines.index(f"ip addr add 192.0.2.10/24 brd + dev {BR}"))  # (the LAN sees the address at eth1's MAC)
    lifecycle.down("ext", drivers)
    assert [line for line in drivers.nics.lines if "address" in line] == [
        f"ip link set {BR} address 02:00:00:00:00:01", f"ip link set {BR} address 02:aa:00:00:00:02"]
    assert drivers.nics.interface(BR).mac == "02:aa:00:00:00:02"


def test_a_failing_give_back_keeps_what_the_nic_had_and_says_both_failures(drivers, monkeypatch):
    from nslab.errors import KernelError, TeardownError

    Lab.from_text(LAB, drivers=drivers).up()

    def fails(lines, force=False):
        raise KernelError("ip: RTNETLINK answers: File exists\nCommand failed -:3")

    with monkeypatch.context() as patched, pytest.raises(TeardownError, match="giving eth1 back: ip: RTNETLINK"):
        patched.setattr(drivers.nics, "change", fails)
        lifecycle.down("ext", drivers)
    assert external.saved("ext", drivers)["eth1"].had == ETH1  # kept: the next down tries again
    lifecycle.down("ext", drivers)
    assert drivers.nics.interface("eth1") == ETH1 and external.saved("ext", drivers) == {}

    borrow = external.Borrow("ext", BR, ETH1)
    monkeypatch.setattr(drivers.nics, "change", fails)
    with pytest.raises(KernelError) as caught:
        borrow.apply(drivers)
    said = str(caught.value)
    assert said.startswith(f"putting eth1 on {BR}: ip: RTNETLINK") and "; then giving it back: giving eth1" in said
    assert external.saved("ext", drivers)["eth1"].had == ETH1


def test_nslab_s_own_links_and_what_cannot_move_are_refused(drivers):
    from nslab.errors import UserError

    drivers.nics.nics["nsv1"] = Nic("nsv1", kind="veth", nslab=True)
    drivers.nics.nics["eth2"] = Nic("eth2", kind="veth", unsafe=("route 10.7.0.0/16 in table 100",
                                                                 "policy rule 100 (iif eth2)"))
    bad = LAB.replace("  lan: {external: eth1, subnet: 192.0.2.0/24}",
                      "  lan: {external: nsv1, subnet: 192.0.2.0/24}\n  two: {external: eth2, subnet: 10.9.0.0/24}")
    with pytest.raises(UserError) as caught:
        Lab.from_text(bad, drivers=drivers).up()
    assert [str(p) for p in caught.value.problems] == [
        "<string>:3: networks.lan.external: nsv1 is one of nslab's own links (a lab's bridge or host link)",
        "<string>:4: networks.two.external: eth2 has what cannot move to a bridge as it is: route 10.7.0.0/16 in "
        "table 100; policy rule 100 (iif eth2): remove it first, or give another interface"]
    assert drivers.nics.lines == []
