"""Interface kinds (core/kinds/): the registry, and the veth kind's resolve, plan, inverse and drift over the
fake kernel."""

from __future__ import annotations

import inspect
import ipaddress

import pytest

from nslab.core import kinds, spec, state
from nslab.core.kinds import KINDS, Kind, by_kind, kind, of_interface, veth
from nslab.core.resolve import resolve
from nslab.core.wiring import AddHosts, Observed, plan_up
from nslab.drivers.fake import FakeKernel, fake_drivers
from nslab.drivers.rtnl import LinkInfo
from nslab.errors import KernelError
from nslab.naming import LINK_GROUP
from nslab.values import replace

LAB = """\
name: k
networks:
  lan: {subnet: 10.61.0.0/24}
hosts:
  a: {networks: [lan]}
  b: {networks: [lan]}
  c: {}
links:
  - [a, b]
  - endpoints: [b, c]
    subnet: 10.62.0.0/30
    mtu: 9000
"""


def _lab():
    lab_spec, source = spec.parse(LAB)
    return resolve(lab_spec, source)


def _up(lab, kernel):
    from nslab.core.apply import apply

    apply(plan_up(lab, None, Observed()), fake_drivers(kernel=kernel))


# --- the registry -------------------------------------------------------------------------------------------

PARTS = sorted(n for n, v in vars(Kind).items() if callable(v) and not n.startswith("_"))


def test_a_kind_has_these_parts():
    assert PARTS == ["add", "drift", "ends", "remove", "resolve", "schema"]
    assert callable(kinds.port_kind().port_commands)  # the port kind renders hosts' ports too


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_registered_kind_has_every_part(name):
    module = kind(name)
    for part in PARTS:
        assert callable(getattr(module, part, None)), f"kind {name} lacks {part}()"
        params = list(inspect.signature(getattr(module, part)).parameters)
        assert params == list(inspect.signature(getattr(Kind, part)).parameters)[1:], f"{name}.{part}{params}"


def test_the_registry_names_veth_and_its_module():
    assert KINDS["veth"] == ".veth"
    assert kind("veth") is veth
    assert kinds.PORT_KIND in KINDS
    with pytest.raises(KeyError):
        kind("gretap")  # not registered


def test_links_resolve_to_their_kind_and_interfaces_dispatch_on_it():
    lab = _lab()
    assert [lk.kind for lk in lab.links] == ["veth", "veth"]
    port = lab.hosts["a"].interfaces[0]
    end = lab.hosts["c"].interfaces[0]
    assert port.network == "lan" and end.link == 1
    assert of_interface(lab, port) is veth and of_interface(lab, end) is veth


def test_by_kind_groups_in_registry_order_and_keeps_the_order_within():
    lab = _lab()
    other = replace(lab.links[0], kind="gretap")  # an unregistered kind is not planned by the registry
    assert by_kind([lab.links[1], other, lab.links[0]]) == {"veth": (lab.links[1], lab.links[0])}
    assert by_kind([]) == {}


def test_the_kind_is_recorded_and_read_back():
    lab = _lab()
    again = state.lab_from_dict(state.lab_to_dict(lab))
    assert again.links == lab.links
    assert "kind" not in state.lab_to_dict(lab)["links"][0]  # veth: the form states had before kinds
    other = replace(lab, links=(replace(lab.links[0], kind="other"),))
    assert state.lab_from_dict(state.lab_to_dict(other)).links[0].kind == "other"


# --- veth: resolve ------------------------------------------------------------------------------------------

def test_veth_resolve_gives_addresses_names_and_mtu():
    lab = _lab()
    ab, bc = lab.links
    assert (ab.a, ab.b, ab.a_ifname, ab.b_ifname) == ("a", "b", "eth1", "eth1")
    assert (bc.a_ifname, bc.b_ifname) == ("eth2", "eth0")  # b: lan, link to a, then this one
    assert (str(bc.a_address), str(bc.b_address), bc.mtu) == ("10.62.0.1/30", "10.62.0.2/30", 9000)
    assert ab.subnet.prefixlen == 30 and ab.mtu is None


# --- veth: plan and inverse ---------------------------------------------------------------------------------

def test_links_are_planned_by_their_kind_after_the_hosts():
    lab = _lab()
    plan = plan_up(lab, None, Observed())
    adds = plan.of_type(veth.AddLinks)
    assert len(adds) == 1 and adds[0].links == lab.links
    assert plan.actions.index(adds[0]) > plan.actions.index(plan.of_type(AddHosts)[0])


def test_veth_add_renders_the_pair_from_a_with_its_peer_in_b():
    lab = _lab()
    cmds = veth.add(lab, (lab.links[1],)).commands()
    assert cmds[0].startswith("ip -n k-b link add eth2 address ")
    assert cmds[0].endswith(" mtu 9000 netns k-c")
    assert "ip -n k-b addr add 10.62.0.1/30 broadcast + dev eth2" in cmds
    assert cmds[-2:] == ["ip -n k-b link set eth2 up", "ip -n k-c link set eth0 up"]
    assert veth.remove(lab, (lab.links[1],)).commands() == ["ip -n k-b link del eth2"]


def test_veth_add_returns_remove_as_its_inverse_and_the_inverse_adds_again():
    lab = _lab()
    kernel = FakeKernel()
    _up(lab, kernel)
    drivers = fake_drivers(kernel=kernel)
    ends = {("k-a", "eth1"), ("k-b", "eth2")}
    assert ends <= kernel.link_ends
    undo = veth.remove(lab, lab.links).apply(drivers)
    assert not ends & kernel.link_ends and "eth0" not in kernel.ifaces["k-c"]
    assert isinstance(undo, veth.AddLinks) and undo.links == lab.links
    again = undo.apply(drivers)
    assert ends <= kernel.link_ends and isinstance(again, veth.RemoveLinks)


def test_a_failing_veth_add_leaves_no_pair():
    lab = _lab()
    kernel = FakeKernel()
    _up(lab, kernel)
    drivers = fake_drivers(kernel=kernel)
    veth.remove(lab, lab.links).apply(drivers)
    kernel.fail_on = {"add_links"}
    with pytest.raises(KernelError):
        veth.add(lab, lab.links).apply(drivers)
    assert kernel.calls[-1] == "remove_link_ends"


def test_port_commands_make_the_veth_inside_with_its_peer_on_the_bridge():
    lab = _lab()
    a = lab.hosts["a"]
    cmds = veth.port_commands(lab, a, 0, a.interfaces[0])
    assert cmds[0].startswith("ip -n k-a link add eth0 index 10 address ")
    assert cmds[0].endswith(f"peer name {a.interfaces[0].host_veth} group {LINK_GROUP} netns /proc/$$/ns/net")
    assert cmds[-1].startswith(f"ip link set {a.interfaces[0].host_veth} master {lab.networks['lan'].bridge} alias ")


# --- veth: drift --------------------------------------------------------------------------------------------

def _seen(name: str, address: str, up: bool = True, master: int = 0, index: int = 10) -> LinkInfo:
    return LinkInfo(index, name, "veth", "", master, up, (ipaddress.ip_interface(address),))


def test_veth_drift_of_a_link_end_repairs_the_link():
    lab = _lab()
    c = lab.hosts["c"]
    end = c.interfaces[0]
    assert veth.drift(lab, c, end, _seen("eth0", "10.62.0.2/30"), {}, True) == []
    missing = veth.drift(lab, c, end, None, {}, True)
    assert [(d.text, d.repair, d.link) for d in missing] == [
        ("host c: interface eth0 is missing", "link", ("b", "c", "eth2", "eth0"))]
    lost = veth.drift(lab, c, end, _seen("eth0", "10.9.9.9/30"), {}, True)
    assert [(d.text, d.repair) for d in lost] == [("host c: interface eth0 lacks its address 10.62.0.2/30", "link")]
    down = veth.drift(lab, c, end, _seen("eth0", "10.62.0.2/30", up=False), {}, True)
    assert [(d.text, d.repair, d.end) for d in down] == [("host c: interface eth0 is down", "up", ("k-c", "eth0"))]
    meant = veth.drift(lab, c, end, _seen("eth0", "10.62.0.2/30"), {}, False)
    assert [d.repair for d in meant] == ["down"]


def test_veth_drift_of_a_port_checks_its_peer_on_the_bridge():
    lab = _lab()
    a = lab.hosts["a"]
    port = a.interfaces[0]
    bridge = lab.networks["lan"].bridge
    inside = _seen("eth0", str(port.address))
    machine = {bridge: _seen(bridge, "10.61.0.1/24", index=100), port.host_veth: _seen(port.host_veth, "10.0.0.1/8",
                                                                                        master=100)}
    assert veth.drift(lab, a, port, inside, machine, True) == []
    gone = veth.drift(lab, a, port, inside, {bridge: machine[bridge]}, True)
    assert [(d.text, d.repair, d.host) for d in gone] == [
        (f"host a: bridge port {port.host_veth} (eth0) is missing", "host", "a")]
    loose = {**machine, port.host_veth: _seen(port.host_veth, "10.0.0.1/8", master=0)}
    assert [d.text for d in veth.drift(lab, a, port, inside, loose, True)] == [
        f"host a: bridge port {port.host_veth} (eth0) is not attached to bridge {bridge}"]
    down = {**machine, port.host_veth: _seen(port.host_veth, "10.0.0.1/8", up=False, master=100)}
    assert [(d.repair, d.end) for d in veth.drift(lab, a, port, inside, down, True)] == [("up", ("", port.host_veth))]


def test_the_wiring_asks_each_interface_s_kind_for_its_drift():
    from nslab.core.wiring import drift

    lab = _lab()
    kernel = FakeKernel()
    _up(lab, kernel)
    drivers = fake_drivers(kernel=kernel)
    assert drift(lab, set(), drivers) == []
    kernel.remove_link_ends([("k-b", "eth2")])
    assert [(d.text, d.repair) for d in drift(lab, set(), drivers)] == [
        ("host b: interface eth2 is missing", "link"), ("host c: interface eth0 is missing", "link")]
