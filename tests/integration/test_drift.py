"""Issue 11 on the real kernel: `status` names each difference from the lab as made and exits 1; `up` repairs
it and says so; then status exits 0 again."""

from __future__ import annotations

import json

import pytest
import test_check
from test_check import matrix, nslab, port_of

from sandbox import sh

lab = test_check.lab  # the fixture: a lab with two NAT networks, an internal one and a link


def drift(name: str = "chk") -> list[str]:
    r = nslab("status", name, "--json", check=False)
    doc = json.loads(r.stdout)["labs"][0]
    assert r.returncode == (1 if doc["drift"] else 0)
    return doc["drift"]


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("ip netns del chk-vault", "host vault: namespace chk-vault is missing"),
        ("ip link set {port} down", "host web2: bridge port {port} (eth0) is down"),
        ("ip -n chk-web2 addr flush dev eth0", "host web2: interface eth0 lacks its address"),
        ("ip -n chk-web2 link set eth0 down", "host web2: interface eth0 is down"),
        ("ip link set {port} nomaster", "host web2: bridge port {port} (eth0) is not attached"),
        ("ip -n chk-web2 route del default", "host web2: default route via"),
        ("ip -n chk-db link del eth1", "host db: interface eth1 is missing"),
        ("nft delete chain inet nslab lab.chk.into.secure", "firewall: chain lab.chk.into.secure"),
    ],
)
def test_status_names_the_drift_and_up_repairs_it(lab, damage, named):
    assert drift() == []
    port = port_of("web2")
    if "nft delete chain" in damage:  # a chain can only go once nothing jumps to it
        sh("nft flush chain inet nslab lab.chk.forward")
    sh(damage.format(port=port))
    found = drift()
    assert any(line.startswith(named.format(port=port)) for line in found), found
    out = nslab("up", "-f", str(lab)).stdout
    assert "already up to date" not in out and "repaired: " + named.format(port=port) in out, out
    assert drift() == []
    code, _cells = matrix()
    assert code == 0


# Issue 21: drift covers everything nslab writes. A router forwards between a NAT network and an internal one;
# c reaches 10.99.0.0/16 through it (a static route).
ROUTED = """\
name: drt
networks:
  out: {subnet: 10.77.1.0/24}
  in: {subnet: 10.77.2.0/24, internal: true}
hosts:
  r:
    networks: {out: 10.77.1.10, in: 10.77.2.254}
    sysctls: {net.ipv4.ip_forward: 1}
  c:
    networks: [in]
    mtu: 1450
    routes: [{to: 10.99.0.0/16, via: 10.77.2.254}]
"""


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("ip -n drt-c link set lo down", "host c: loopback lo is down"),
        ("ip -n drt-c link set eth0 mtu 1400", "host c: interface eth0 has MTU 1400, not 1450"),
        ("ip -n drt-c addr add 10.77.2.77/24 dev eth0",
         "host c: interface eth0 has an address nslab did not give it: 10.77.2.77/24"),
        ("echo nameserver 192.0.2.1 > /etc/netns/drt-c/resolv.conf",
         "host c: /etc/netns/drt-c/resolv.conf differs from what nslab writes"),
        ("rm /etc/netns/drt-r/hosts", "host r: /etc/netns/drt-r/hosts is missing"),
        ("nsenter --uts=/run/nslab/drt/uts/c hostname other", "host c: hostname is other, not c"),
        ("ip -n drt-c route del 10.99.0.0/16", "host c: route to 10.99.0.0/16 via 10.77.2.254 is missing"),
        ("ip netns exec drt-r sysctl -qw net.ipv4.ip_forward=0", "host r: sysctl net.ipv4.ip_forward is 0, not 1"),
        ("sysctl -qw net.ipv4.ip_forward=0", "firewall: sysctl net.ipv4.ip_forward is 0, the lab needs 1"),
        ("nft flush chain inet nslab lab.drt.snat",
         "firewall: chain lab.drt.snat of table inet nslab has rules changed by hand"),
    ],
)
def test_what_nslab_wrote_is_drift_and_up_repairs_it(labs, damage, named):
    path = labs.up(ROUTED)
    assert drift("drt") == []
    sh(damage)
    assert drift("drt") == [named]
    out = nslab("up", "-f", str(path)).stdout
    assert out.count("repaired: ") == 1 and f"repaired: {named}\n" in out, out
    assert drift("drt") == []


def test_lo_and_resolv_conf_together_one_line_each(labs):
    """The issue's own case: both show in `status` (exit 1), `up` repairs them with one line each."""
    path = labs.up(ROUTED)
    sh("ip -n drt-r link set lo down; echo 'nameserver 192.0.2.1' >> /etc/netns/drt-r/resolv.conf")
    r = nslab("status", "drt", check=False)
    assert r.returncode == 1
    assert "drift: host r: loopback lo is down" in r.stdout
    assert "drift: host r: /etc/netns/drt-r/resolv.conf differs from what nslab writes" in r.stdout
    out = nslab("up", "-f", str(path)).stdout
    assert [line for line in out.splitlines() if line.startswith("repaired: ")] == [
        "repaired: host r: loopback lo is down",
        "repaired: host r: /etc/netns/drt-r/resolv.conf differs from what nslab writes"]
    assert "192.0.2.1" not in open("/etc/netns/drt-r/resolv.conf").read()
    assert sh("ip netns exec drt-r ping -c1 -W1 127.0.0.1", check=False).returncode == 0
    assert nslab("status", "drt").returncode == 0
