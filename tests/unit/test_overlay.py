"""Labs across machines (core/overlay.py, core/kinds/vxlan.py): the file resolves to the same lab whatever machine
reads it; placement, homes, VNIs, the overlay MTU; each machine's part and its plan over the fakes; the VXLAN
forwarding entries' netlink bytes against pyroute2's."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from nslab.core import load, overlay
from nslab.core.lifecycle import Subset, plan
from nslab.drivers import rtnl as nl
from nslab.drivers.fake import fake_drivers
from nslab.errors import MachineError, ResolveError, SpecError

LAB = """
name: multi
machines:
  a: {address: 198.18.0.1}
  b: {address: 198.18.0.2}
  c: {address: 198.18.0.3}
networks:
  lan: {ipv6: true}
  back: {internal: true}
  solo: {}
hosts:
  a1: {machine: a, networks: [lan]}
  b1: {machine: b, networks: [lan, back]}
  c1: {machine: c, networks: [lan, back]}
  c2: {machine: c, networks: [solo]}
links:
  - [a1, b1]
  - [a1, c2]
"""


def _whole(text: str = LAB):
    return load.resolved(load.from_text(text, "multi.yaml"), None)


def _problems(text: str) -> list[str]:
    with pytest.raises((ResolveError, SpecError)) as caught:
        _whole(text)
    return [str(p) for p in caught.value.problems]


def test_the_file_alone_decides_everything_and_the_digest_says_so():
    one, two = _whole(), _whole()
    assert one == two and len(one.digest) == 64
    lan, back, solo = one.networks["lan"], one.networks["back"], one.networks["solo"]
    assert (lan.home, lan.machines, back.home, back.machines) == ("a", ("a", "b", "c"), "b", ("b", "c"))
    assert (solo.home, solo.machines, solo.vni) == ("c", ("c",), None)  # on one machine: no VXLAN
    vnis = [lan.vni, back.vni, *(dict(lk.options)["vni"] for lk in one.links)]
    assert len(set(vnis)) == 4 and all(1 < v < 1 << 24 for v in vnis if v is not None)
    assert [lk.kind for lk in one.links] == ["vxlan", "vxlan"]
    assert one.networks["lan"].subnet6 in overlay.lab_ula("multi").subnets(new_prefix=64)
    assert _whole(LAB.replace("name: multi", "name: other")).digest != one.digest


def test_mtu_auto_is_the_underlay_less_vxlan_and_a_smaller_one_is_kept():
    lab = _whole()
    assert lab.overlay_mtu == 1450
    assert {i.mtu for h in lab.hosts.values() for i in h.interfaces if i.network in ("lan", "back")} == {1450}
    assert lab.hosts["c2"].interfaces[0].mtu is None  # solo lives on one machine
    assert {lk.mtu for lk in lab.links} == {1450}
    six = LAB.replace("198.18.0.", "2001:db8:18::")
    assert _whole(six).overlay_mtu == 1430
    smaller = LAB.replace("b1: {machine: b, networks", "b1: {machine: b, mtu: 1300, networks")
    assert _whole(smaller).hosts["b1"].interfaces[0].mtu == 1300
    assert _whole(LAB.replace("machines:", "overlay: {mtu: 1400}\nmachines:")).overlay_mtu == 1400


def test_spread_places_hosts_by_a_stable_hash_in_file_order():
    hosts = "\n".join(f"  h{n}: {{networks: [lan]}}" for n in range(30))
    text = LAB.split("hosts:")[0].replace("machines:", "placement: spread\nmachines:") + "hosts:\n" + hosts
    lab = _whole(text)
    placed = {h.name: h.machine for h in lab.hosts.values()}
    assert set(placed.values()) == {"a", "b", "c"}
    assert placed == {h.name: h.machine for h in _whole(text).hosts.values()}


def test_unknown_machines_and_homes_are_problems_with_their_line():
    text = LAB.replace("c2: {machine: c,", "c2: {machine: d,").replace("solo: {}", "solo: {home: z}")
    problems = _problems(text)
    assert any("multi.yaml:10: networks.solo.home: unknown machine 'z'" in p for p in problems), problems
    assert any("multi.yaml:15: hosts.c2.machine: unknown machine 'd' (machines: a, b, c)" in p for p in problems)
    lone = "name: x\nhosts:\n  h: {machine: a}\n"
    assert any("machine: needs machines:" in p for p in _problems(lone))
    no_place = LAB.replace("a1: {machine: a, ", "a1: {")
    assert any("host 'a1' has no machine" in p for p in _problems(no_place))


def test_each_machine_cuts_its_part_and_knows_the_rest():
    lab = _whole()
    a, b = overlay.part(lab, "a"), overlay.part(lab, "b")
    assert (set(a.hosts), set(a.remote), set(a.networks), set(a.remote_networks)) == (
        {"a1"}, {"b1", "c1", "c2"}, {"lan"}, {"back", "solo"})
    assert [lk.b for lk in a.links] == ["b1", "c2"] and [lk.b for lk in b.links] == ["b1"]
    assert b.hosts["b1"].interfaces[-1].link == 0  # renumbered in b's part
    assert a.builds_gateway(a.networks["lan"]) and not b.builds_gateway(b.networks["lan"])
    assert a.bridge_mac(a.networks["lan"]) != b.bridge_mac(b.networks["lan"])
    assert a.whole().hosts.keys() == lab.hosts.keys()
    entries = overlay.fdb_entries(a, a.networks["lan"])
    device = overlay.vxlan_name("multi", "lan")
    assert entries[:2] == [(device, overlay.ZERO_MAC, "198.18.0.2"), (device, overlay.ZERO_MAC, "198.18.0.3")]
    assert {dst for _, mac, dst in entries[2:]} == {"198.18.0.2", "198.18.0.3"} and len(entries) == 4  # (a: home)
    b_entries = overlay.fdb_entries(b, b.networks["lan"])
    assert (device, a.bridge_mac(a.networks["lan"]), "198.18.0.1") in b_entries  # the gateway, on a


def test_the_local_machine_by_name_or_by_its_address():
    lab = _whole()
    assert overlay.local_machine(lab, "b", None) == "b"
    assert overlay.local_machine(lab, None, frozenset({ipaddress.ip_address("198.18.0.3")})) == "c"
    with pytest.raises(MachineError, match="say which with --machine"):
        overlay.local_machine(lab, None, frozenset({ipaddress.ip_address("10.0.0.1")}))
    with pytest.raises(MachineError, match="has no machine 'x'"):
        overlay.local_machine(lab, "x", None)


def test_a_subnet_on_this_machine_s_routes_is_an_error_there(monkeypatch):
    drivers = fake_drivers()
    subnet = _whole().networks["lan"].subnet
    monkeypatch.setattr(drivers.kernel, "machine_networks", lambda: [(subnet, "route on eth9")])
    checked = load.validate(load.from_text(LAB, "multi.yaml"), drivers, None, "a")
    assert [str(p) for p in checked.problems] == [
        f"multi.yaml:8: networks.lan: subnet {subnet} overlaps {subnet} (route on eth9) on machine a: give a subnet"]


def test_a_machine_plans_its_vxlan_devices_entries_and_link_ends():
    drivers = fake_drivers()
    planned = plan(load.from_text(LAB, "multi.yaml"), drivers, None, machine="c")
    text = "\n".join(planned.plan.commands())
    lan, back = planned.lab.networks["lan"], planned.lab.networks["back"]
    assert f"type vxlan id {lan.vni} local 198.18.0.3 dstport 14789 nolearning" in text
    assert f"type vxlan id {back.vni} local 198.18.0.3 dstport 14789 nolearning" in text
    assert f"bridge fdb append 00:00:00:00:00:00 dev {overlay.vxlan_name('multi', 'lan')} dst 198.18.0.1 self " \
        "permanent" in text
    assert "remote 198.18.0.1 dstport 14789 nolearning" in text and "ip link add eth1 netns multi-c2 " in text
    assert f"ip addr add {lan.gateway}" not in text  # the gateway lives on a
    from nslab.core.apply import apply

    apply(planned.plan, drivers)
    device = overlay.vxlan_name("multi", "lan")
    assert drivers.kernel.ports[device] == lan.bridge
    assert (device, overlay.ZERO_MAC, "198.18.0.1") in drivers.kernel.fdb
    assert [m.kind for m in drivers.kernel.made] == ["vxlan", "vxlan", "vxlan"]


def test_forwarding_entries_pack_as_pyroute2_packs_them():
    for mac, dst, append in (("00:00:00:00:00:00", "198.18.0.2", True), ("02:11:22:33:44:55", "2001:db8::2", False)):
        batch = nl.Batch()
        nl.add_fdb(batch, 7, mac, ipaddress.ip_address(dst), append)
        ((ours, what),) = batch.messages
        theirs = ndmsg()
        theirs["header"]["type"] = nl.RTM_NEWNEIGH
        theirs["header"]["flags"] = (nl.NLM_F_REQUEST | nl.NLM_F_ACK | nl.NLM_F_CREATE
                                     | (nl.NLM_F_APPEND if append else nl.NLM_F_REPLACE))
        theirs["family"], theirs["ifindex"] = socket.AF_BRIDGE, 7
        theirs["state"], theirs["flags"] = nl.NUD_NOARP | nl.NUD_PERMANENT, nl.NTF_SELF
        theirs["attrs"] = [("NDA_LLADDR", mac), ("NDA_DST", dst)]
        theirs.encode()
        assert ours == bytes(theirs.data) and what == f"add forwarding entry {mac} dst {dst}"


def test_a_vxlan_device_s_data_decodes_as_meant():
    data = overlay.vxlan_data(4242, ipaddress.ip_address("198.18.0.1"), 14789, ipaddress.ip_address("198.18.0.2"))
    batch = nl.Batch()
    nl.add_link(batch, nl.NewLink("vxlan", nl.LinkEnd("", "vx0"), data))
    msg = ifinfmsg(batch.messages[0][0])
    msg.decode()
    info = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    assert (info.get_attr("IFLA_VXLAN_ID"), info.get_attr("IFLA_VXLAN_PORT"), info.get_attr("IFLA_VXLAN_LEARNING"),
            info.get_attr("IFLA_VXLAN_LOCAL"), info.get_attr("IFLA_VXLAN_GROUP")) == (
        4242, 14789, 0, "198.18.0.1", "198.18.0.2")


def test_a_vni_used_here_by_another_device_is_a_problem(monkeypatch):
    from nslab.drivers.rtnl import LinkInfo

    drivers = fake_drivers()
    lan = _whole().networks["lan"]
    vx9 = LinkInfo(9, "vx9", "vxlan", "", 0, True, vni=lan.vni, vxlan_port=14789)
    monkeypatch.setattr(drivers.kernel, "machine_links", lambda: [vx9])
    text = LAB.replace("b1: {machine: b,", "b1: {machine: b, publish: ['8080:80'],")
    checked = load.validate(load.from_text(text, "multi.yaml"), drivers, None, "b")
    assert [str(p) for p in checked.problems] == [
        f"multi.yaml:8: networks.lan: VNI {lan.vni} is already used on machine b by VXLAN device vx9"]
    vx9 = LinkInfo(9, "vx9", "vxlan", "", 0, True, vni=lan.vni, vxlan_port=4790)  # another port: no clash
    assert load.validate(load.from_text(text, "multi.yaml"), drivers, None, "b").problems == []


def test_a_vni_of_another_lab_s_link_end_in_a_host_s_namespace_is_a_problem(monkeypatch):
    from types import SimpleNamespace

    from nslab.values import replace

    lan = _whole().networks["lan"]
    other = _whole(LAB.replace("name: multi", "name: other"))
    link = replace(other.links[0], options=tuple((k, lan.vni if k == "vni" else v) for k, v in other.links[0].options))
    other = overlay.part(replace(other, links=(link, *other.links[1:])), "b")
    monkeypatch.setattr(load, "other_labs", lambda name: [SimpleNamespace(lab=other)])
    text = LAB.replace("lan: {ipv6: true}", "lan: {ipv6: true, subnet: 10.77.0.0/24}").replace(
        "back: {internal: true}", "back: {internal: true, subnet: 10.78.0.0/24}").replace(
        "solo: {}", "solo: {subnet: 10.79.0.0/24}")
    checked = load.validate(load.from_text(text, "multi.yaml"), fake_drivers(), None, "b")
    assert [str(p) for p in checked.problems if "VNI" in str(p)] == [
        f"multi.yaml:8: networks.lan: VNI {lan.vni} is already used on machine b by a link of lab other (a1, b1)"]


def test_the_api_builds_and_removes_one_machine_s_part():
    from nslab.lab import Lab

    drivers = fake_drivers()
    lab = Lab.from_text(LAB, "multi.yaml", drivers=drivers, machine="b")
    result = lab.up()
    assert (result.lab.machine, set(result.lab.hosts)) == ("b", {"b1"})
    assert drivers.kernel.namespaces == {"multi-b1"}
    with pytest.raises(MachineError, match="is up here as machine b's part, not machine c's"):
        Lab.from_text(LAB, "multi.yaml", drivers=drivers, machine="c").up()
    lab.down()
    assert drivers.kernel.namespaces == set() and not drivers.kernel.fdb


def test_an_underlay_with_less_mtu_than_the_overlay_assumes_is_a_problem():
    drivers = fake_drivers()
    drivers.kernel.underlay_mtu = 1400
    checked = load.validate(load.from_text(LAB, "multi.yaml"), drivers, None, "a")
    assert [str(p) for p in checked.problems] == [
        "multi.yaml:4: machines.a: machine a's interface holding 198.18.0.1 has MTU 1400, less than the 1500 the "
        "overlay assumes: write overlay: {underlay_mtu: 1400}"]
    fine = LAB.replace("machines:", "overlay: {underlay_mtu: 1400}\nmachines:")
    assert load.validate(load.from_text(fine, "multi.yaml"), drivers, None, "a").problems == []


def test_a_port_published_by_a_host_anywhere_is_dnat_on_its_network_s_home():
    from nslab.core.features.firewall.record import desired

    text = LAB.replace("b1: {machine: b,", "b1: {machine: b, publish: ['8080:80'],")
    lab = load.resolved(load.from_text(text, "multi.yaml"), None)
    on_a, on_b = desired(overlay.part(lab, "a")), desired(overlay.part(lab, "b"))
    assert [(p.host, p.host_port, p.address) for p in on_a.ports] == [
        ("b1", 8080, str(lab.hosts["b1"].interfaces[0].address.ip))]
    assert on_b.ports == [] and [n.name for n in on_b.networks] == ["back"]  # (b is back's home)
    assert on_a.overlay_peers == ["198.18.0.2", "198.18.0.3"] and on_a.overlay_port == 14789


def test_off_the_lab_s_machines_validate_sees_the_whole_lab_and_up_refuses():
    drivers = fake_drivers()  # (its address, 198.51.100.2, is none of the lab's machines)
    checked = load.validate(load.from_text(LAB, "multi.yaml"), drivers, None, strict=False)
    assert checked.problems == [] and checked.lab.machine is None and set(checked.lab.hosts) == {"a1", "b1", "c1", "c2"}
    with pytest.raises(MachineError, match="no machine of lab multi has an address of this machine"):
        plan(load.from_text(LAB, "multi.yaml"), drivers, None)


def test_a_failed_converge_gives_the_vxlan_devices_their_former_entries_back():
    from nslab.lab import Lab

    drivers = fake_drivers()
    Lab.from_text(LAB, "multi.yaml", drivers=drivers, machine="a").up()
    before = set(drivers.kernel.fdb)
    more = LAB.replace("  c2: {machine: c,", "  c5: {machine: c, networks: [lan]}\n  c2: {machine: c,")
    drivers.kernel.fail_on.add("set_hairpin")  # (a step after the overlay's: a1 publishes now)
    changed = more.replace("a1: {machine: a, networks: [lan]}", "a1: {machine: a, networks: [lan], publish: ['80']}")
    with pytest.raises(Exception, match="injected failure"):
        Lab.from_text(changed, "multi.yaml", drivers=drivers, machine="a").up()
    assert drivers.kernel.fdb == before and overlay.vxlan_name("multi", "lan") in drivers.kernel.ports
    Lab.from_text(more, "multi.yaml", drivers=drivers, machine="a").up()
    assert len(drivers.kernel.fdb) == len(before) + 1  # c5's MAC, to c


def test_machine_for_a_lab_of_one_machine_is_refused():
    with pytest.raises(MachineError, match="lab solo is not across machines"):
        load.validate(load.from_text("name: solo\nhosts: {h: {}}\n"), fake_drivers(), None, "a")


def test_only_some_hosts_of_a_part_keep_their_links_to_other_machines():
    drivers = fake_drivers()
    planned = plan(load.from_text(LAB, "multi.yaml"), drivers, None, Subset(only=("c2",)), machine="c")
    assert set(planned.lab.hosts) == {"c2"} and [(lk.a, lk.b) for lk in planned.lab.links] == [("a1", "c2")]


def test_impairing_what_a_link_to_another_machine_receives_is_refused_in_one_line():
    from nslab.errors import TargetError

    text = LAB.replace("a1: {machine: a, networks: [lan]}",
                       "a1: {machine: a, networks: [lan], impair: {eth1: {loss: 10, direction: in}}}")
    with pytest.raises(TargetError, match="a1:eth1 is a link to b1 on machine b"):
        plan(load.from_text(text, "multi.yaml"), fake_drivers(), None, machine="a")
    out = text.replace("direction: in", "direction: out")
    assert plan(load.from_text(out, "multi.yaml"), fake_drivers(), None, machine="a").plan


def test_a_partition_with_a_side_on_another_machine_is_made_by_this_machine_s_hosts():
    text = LAB + "partitions:\n  - [a1, c1]\n"
    planned = plan(load.from_text(text, "multi.yaml"), fake_drivers(), None, machine="a")
    lines = "\n".join(planned.plan.commands())
    c1 = str(_whole(text).hosts["c1"].interfaces[0].address.ip)
    assert "multi-a1" in lines and c1 in lines
    assert not any("multi-c1" in line for line in planned.plan.commands())  # (c's part cuts on c)


def test_a_written_overlay_mtu_too_big_for_the_underlay_is_a_problem():
    problems = _problems(LAB.replace("machines:", "overlay: {mtu: 1500}\nmachines:"))
    assert any("overlay.mtu: mtu 1500 plus VXLAN's 50 bytes exceeds the underlay MTU 1500: at most 1450" in p
               for p in problems), problems
    assert _whole(LAB.replace("machines:", "overlay: {mtu: 1450}\nmachines:")).overlay_mtu == 1450


def test_the_digest_is_the_same_for_the_same_file_in_another_folder(tmp_path):
    text = LAB.replace("a1: {machine: a,", "a1: {machine: a, run: ['sleep 1'], env_file: [app.env],")
    digests = set()
    for folder in ("one", "two/deeper"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "app.env").write_text("X=1\n")
        lab = load.resolved(load.from_text(text, str(tmp_path / folder / "multi.yaml")), None)
        assert lab.hosts["a1"].services[0].env_files == (str(tmp_path / folder / "app.env"),)
        digests.add(lab.digest)
    assert len(digests) == 1


def test_the_whole_lab_seen_from_any_machine_keeps_the_file_s_order():
    lab = _whole()
    for machine in ("a", "b", "c"):
        whole = overlay.part(lab, machine).whole()
        assert list(whole.hosts) == ["a1", "b1", "c1", "c2"] and list(whole.networks) == ["lan", "back", "solo"]


def test_reading_a_device_s_forwarding_entries_asks_the_kernel_for_that_device_only():
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg as request

    msg = request(nl.fdb_request(42))
    msg.decode()
    assert (msg["header"]["type"], msg["family"], msg["index"]) == (nl.RTM_GETNEIGH, socket.AF_BRIDGE, 42)
    assert msg["header"]["flags"] & nl.NLM_F_DUMP == nl.NLM_F_DUMP and len(nl.fdb_request(42)) == 32


def test_a_remote_host_added_changes_only_forwarding_entries_and_keeps_the_device():
    from nslab.lab import Lab

    drivers = fake_drivers()
    Lab.from_text(LAB, "multi.yaml", drivers=drivers, machine="a").up()
    before = set(drivers.kernel.fdb)
    more = LAB.replace("  c2: {machine: c,", "  c5: {machine: c, networks: [lan]}\n  c2: {machine: c,")
    start = len(drivers.kernel.calls)
    Lab.from_text(more, "multi.yaml", drivers=drivers, machine="a").up()
    calls = drivers.kernel.calls[start:]
    assert "remove_links" not in calls and "add_fdb" in calls, calls  # (the VXLAN device is not made again)
    (added,) = set(drivers.kernel.fdb) - before
    assert set(drivers.kernel.fdb) > before and added[2] == "198.18.0.3"  # c5's MAC, to c
    start = len(drivers.kernel.calls)
    Lab.from_text(LAB, "multi.yaml", drivers=drivers, machine="a").up()  # c5 gone again: its entry only
    assert "del_fdb" in drivers.kernel.calls[start:] and "remove_links" not in drivers.kernel.calls[start:]
    assert set(drivers.kernel.fdb) == before
