"""Issue 11 on the real kernel: `nslab link` puts both ends of an interface down/up, changes real
reachability, is shown by `status` and kept by `up` (intended, not drift)."""

from __future__ import annotations

import json
import os
import subprocess

import test_check
from test_check import matrix, nslab, port_of

from labs import NSLAB
from sandbox import sh

lab = test_check.lab  # the fixture: a lab with two NAT networks, an internal one and a link


def iface_up(namespace: str, name: str) -> bool:
    out = sh(f"ip {'-n ' + namespace + ' ' if namespace else ''}-j link show {name}").stdout
    return "UP" in json.loads(out)[0]["flags"]


def test_bridge_port_down_and_up(lab):
    port = port_of("web2")
    assert nslab("link", "chk/web2:eth0", "down").stdout.strip() == "chk/web2:eth0 down"
    assert not iface_up("chk-web2", "eth0") and not iface_up("", port)  # both ends
    code, cells = matrix()
    assert code == 0  # what the lab implies now: web2 is cut off
    assert not cells[("web1", "web2")]["reachable"] and not cells[("web1", "web2")]["expected"]
    assert not cells[("web2", "outside")]["reachable"] and not cells[("web2", "outside")]["expected"]
    assert cells[("web2", "web2")]["reachable"]
    status = subprocess.run([NSLAB, "status", "chk"], capture_output=True, text=True, env={**os.environ,
                            "COLUMNS": "200"})
    assert status.returncode == 0 and "eth0 (down: nslab link)" in status.stdout  # intended: shown, exit 0
    doc = json.loads(nslab("status", "chk", "--json").stdout)["labs"][0]
    assert doc["drift"] == [] and doc["link_state"]["down"] == ["web2:eth0"]
    assert "already up to date" in nslab("up", "-f", str(lab)).stdout  # up keeps it down
    assert not iface_up("chk-web2", "eth0")

    nslab("link", "chk/web2:eth0", "up")
    assert iface_up("chk-web2", "eth0") and iface_up("", port)
    assert "default via" in sh("ip -n chk-web2 route").stdout  # restored (IPv4 dropped it)
    code, cells = matrix()
    assert code == 0 and cells[("web1", "web2")]["reachable"] and cells[("web2", "outside")]["reachable"]
    assert json.loads(nslab("status", "chk", "--json").stdout)["labs"][0]["link_state"]["down"] == []


def test_point_to_point_link_down_both_ends(lab):
    nslab("link", "chk/web1:eth1", "down")
    assert not iface_up("chk-web1", "eth1") and not iface_up("chk-db", "eth1")
    code, cells = matrix()
    assert code == 0 and not cells[("web1", "db")]["reachable"] and cells[("web1", "web2")]["reachable"]
    # a host recreated by up (its namespace deleted by hand) keeps the link down
    sh("ip netns del chk-db")
    assert nslab("status", "chk", check=False).returncode == 1
    nslab("up", "-f", str(lab))
    assert not iface_up("chk-web1", "eth1") and not iface_up("chk-db", "eth1")
    assert nslab("status", "chk").returncode == 0
    nslab("link", "chk/db:eth1", "up")  # either end names the link
    code, cells = matrix()
    assert code == 0 and cells[("web1", "db")]["reachable"], [
        (c["source"], c["target"], c["result"]) for c in cells.values() if c["ok"] is False]


def test_link_bad_input(lab):
    assert nslab("link", "chk/web2:eth7", "down", check=False).returncode == 2
    assert nslab("link", "chk/nobody", "down", check=False).returncode == 2
    assert nslab("link", "chk/web2", "sideways", check=False).returncode == 2
