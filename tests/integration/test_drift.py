"""Issue 11 on the real kernel: `status` names each difference from the lab as made and exits 1; `up` repairs
it and says so; then status exits 0 again."""

from __future__ import annotations

import json

import pytest
import test_check
from test_check import matrix, nslab, port_of

from sandbox import sh

lab = test_check.lab  # the fixture: a lab with two NAT networks, an internal one and a link


def drift() -> list[str]:
    r = nslab("status", "chk", "--json", check=False)
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
