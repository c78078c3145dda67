"""Issue 13's lab-file features over the fakes: count, x- keys, ${VAR}, routes/default/sysctls, mtu and mac,
their dry-run commands, state round trip, and a failing ConfigureHosts undone."""

from __future__ import annotations

import pytest

from nslab import Lab
from nslab.core import spec
from nslab.core.state import lab_from_dict, lab_to_dict
from nslab.core.wiring import ConfigureHosts
from nslab.drivers.fake import fake_drivers
from nslab.errors import KernelError, SpecError

ROUTER = """\
name: r
x-defaults: &side {internal: true}
networks:
  left: {subnet: 10.81.1.0/24, <<: *side, mtu: 9000}
  right: {subnet: 10.81.2.0/24, <<: *side}
hosts:
  router:
    networks: {left: 10.81.1.254, right: 10.81.2.254}
    sysctls: {net.ipv4.ip_forward: 1}
  a:
    count: 3
    networks: {left: "10.81.1.1{i}"}
    default: 10.81.1.254
    x-note: ignored
  b:
    networks: {right: {address: 10.81.2.10, mac: "02:AA:00:00:00:0B", mtu: 1400}}
    routes: [{to: 10.81.1.0/24, via: 10.81.2.254}]
  c:
    networks: [left]
    default: none
"""


def test_count_makes_numbered_hosts_with_i_in_addresses():
    lab = Lab.from_text(ROUTER).resolve()
    assert [h for h in lab.hosts if h.startswith("a")] == ["a1", "a2", "a3"]
    assert str(lab.hosts["a2"].interfaces[0].address) == "10.81.1.12/24"


def test_x_keys_are_ignored_anywhere():
    parsed, _ = spec.parse(ROUTER)
    assert "x-defaults" not in parsed.model_dump() and parsed.networks["left"].internal


def test_routes_default_sysctls_mtu_mac_resolved():
    lab = Lab.from_text(ROUTER).resolve()
    router, a1, b, c = (lab.hosts[n] for n in ("router", "a1", "b", "c"))
    assert router.sysctls == (("net.ipv4.ip_forward", "1"),)
    assert a1.gateway is None and [(str(r.to), str(r.via)) for r in a1.routes] == [("0.0.0.0/0", "10.81.1.254")]
    assert [(str(r.to), str(r.via)) for r in b.routes] == [("10.81.1.0/24", "10.81.2.254")]
    assert b.interfaces[0].mac == "02:aa:00:00:00:0b" and b.interfaces[0].mtu == 1400
    assert a1.interfaces[0].mtu == 9000  # the network's
    assert c.gateway is None and not c.routes
    assert lab_from_dict(lab_to_dict(lab)) == lab


def test_dry_run_renders_routes_sysctls_mtu_mac():
    d = fake_drivers()
    text = "\n".join(Lab.from_text(ROUTER, drivers=d).up(dry_run=True).commands())
    assert "ip netns exec r-router sysctl -qw net.ipv4.ip_forward=1" in text
    assert "ip -n r-b route add 10.81.1.0/24 via 10.81.2.254 proto static" in text
    assert "ip -n r-a1 route add 0.0.0.0/0 via 10.81.1.254 proto static" in text
    assert "ip -n r-b link add eth0 index 10 address 02:aa:00:00:00:0b mtu 1400 group 7238508 type veth" in text
    assert " mtu 1400 group 7238508 netns /proc/$$/ns/net" in text


def test_up_configures_hosts_and_a_failure_undoes_everything():
    d = fake_drivers()
    Lab.from_text(ROUTER, drivers=d).up()
    assert d.kernel.host_sysctls["r-router"] == {"net.ipv4.ip_forward": "1"}
    assert any(str(r.to) == "10.81.1.0/24" for r in d.kernel.routes["r-b"])
    failing = fake_drivers()
    failing.kernel.fail_on = {"configure_host"}
    with pytest.raises(KernelError):
        Lab.from_text(ROUTER, drivers=failing).up()
    assert not failing.kernel.namespaces and not failing.kernel.bridges


def test_configure_hosts_inverse_restores_sysctls():
    d = fake_drivers()
    lab = Lab.from_text(ROUTER, drivers=d).up().lab
    router = lab.hosts["router"]
    inverse = ConfigureHosts((router,)).apply(d)
    assert inverse is not None and "sysctl -qw net.ipv4.ip_forward=1" in " ".join(inverse.commands())
    inverse.apply(d)
    assert d.kernel.host_sysctls["r-router"]["net.ipv4.ip_forward"] == "1"  # its value before the second apply


def test_variables_substituted_with_defaults_and_unset_reported_at_its_line():
    text = "name: ${LABNAME:-dflt}\nnetworks:\n  n: {subnet: '${SUBNET}'}\nhosts: {a: {run: 'echo $$HOME'}}\n"
    parsed = spec.parse_all(text, "f.yaml", environ={"SUBNET": "10.5.0.0/24"})
    assert parsed.spec is not None and parsed.spec.name == "dflt" and not parsed.problems
    assert str(parsed.spec.networks["n"].subnet) == "10.5.0.0/24"
    assert parsed.spec.hosts["a"].run == "echo $HOME"
    with pytest.raises(SpecError) as err:
        spec.parse(text, "f.yaml")  # SUBNET unset here (the environment of the test)
    assert [line.split(": ")[0] for line in err.value.lines()] == ["f.yaml:3"]


LINKED = """\
name: p2p
hosts:
  a: {mtu: 1400}
  b: {mtu: 1300}
  c: {}
links:
  - [a, b]
  - {endpoints: [a, c], mtu: 9000}
  - [b, c]
"""


def test_link_mtu_from_the_link_else_the_smaller_of_its_hosts_in_plan_and_state():
    d = fake_drivers()
    lab = Lab.from_text(LINKED, drivers=d).resolve()
    assert [lk.mtu for lk in lab.links] == [1300, 9000, 1300]
    assert lab_from_dict(lab_to_dict(lab)) == lab
    text = "\n".join(Lab.from_text(LINKED, drivers=d).up(dry_run=True).commands())
    assert "ip -n p2p-a link add eth1 address" in text
    assert " mtu 9000 type veth peer name eth0 address " in text and text.count(" mtu 9000 netns p2p-c") == 1
    plain = "name: p\nhosts: {a: {}, b: {}}\nlinks: [[a, b]]\n"
    assert " mtu " not in "\n".join(Lab.from_text(plain, drivers=fake_drivers()).up(dry_run=True).commands())
