"""Issue 12 `nslab doctor`: plant each classic fault in a throwaway host and check doctor names it with its
fix and exits 1; a healthy lab exits 0. Real kernel; the only nameserver is one the test runs in `wan`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from labfiles import lab_text
from labs import nslab as run_nslab
from labs import private_resolver
from sandbox import WAN_ADDRESS, sh

LAB = lab_text(
    "doc", {"front": "10.71.1.0/24", "back": "10.71.2.0/24"}, hosts={
        "web": "networks: [front]", "router": "networks: [front, back]",
    },
)

# A DNS server in `wan` that answers every query (with an empty answer): enough for "does it answer".
DNS_SERVER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
while True:
    data, peer = s.recvfrom(512)
    s.sendto(data[:2] + b"\\x81\\x80" + data[4:], peer)
"""


def nslab(*args: str) -> subprocess.CompletedProcess:
    return run_nslab(*args, check=False)


def doctor(*args: str) -> tuple[int, dict[str, list[dict]]]:
    result = nslab("doctor", *args, "--json")
    assert result.returncode in (0, 1) and result.stdout, result.stderr
    by_check: dict[str, list[dict]] = {}
    for f in json.loads(result.stdout)["findings"]:
        by_check.setdefault(f["check"], []).append(f)
    return result.returncode, by_check


@pytest.fixture
def lab(host, labs, tmp_path):
    private_resolver(tmp_path)  # the machine's resolver: the test's own, in wan
    host.popen(host.in_wan([sys.executable, "-c", DNS_SERVER]))
    labs.up(LAB)
    yield host
    sh("ip netns del blue", check=False)


def test_healthy_lab_exits_0(lab):
    result = nslab("doctor", "doc")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "healthy" in result.stdout


def test_each_planted_fault_is_found_with_its_fix(lab):
    sh("ip -n doc-web link set lo down")
    sh("ip -n doc-web route del default")
    sh("sysctl -qw net.ipv4.ip_forward=0")
    sh("nft add table ip filter && nft add chain ip filter FORWARD "
       "'{ type filter hook forward priority 0; policy drop; }'")
    sh("ip netns add blue && mkdir -p /etc/netns/blue && echo 'nameserver 127.0.0.53' > /etc/netns/blue/resolv.conf")
    sh("ip netns exec doc-router sysctl -qw net.ipv4.conf.all.rp_filter=1")
    try:
        code, found = doctor()
    finally:
        sh("nft delete table ip filter")
    assert code == 1
    assert found["lo-down"][0]["where"] == "doc/web"
    assert "ip -n doc-web link set lo up" in found["lo-down"][0]["fix"]
    assert [f["where"] for f in found["no-default-route"]][:1] == ["doc/web"]
    assert any(cmd.startswith("ip -n doc-web route add default via 10.71.1.") for cmd in
               found["no-default-route"][0]["fix"])
    machine_forward = [f for f in found["ip-forward-off"] if f["where"] == "machine"]
    assert machine_forward and "sysctl -w net.ipv4.ip_forward=1" in machine_forward[0]["fix"]
    assert "table ip filter chain FORWARD" in found["forward-drop"][0]["problem"]
    assert any("nft insert rule ip filter FORWARD" in cmd for cmd in found["forward-drop"][0]["fix"])
    stub = found["stub-resolver-missing"][0]
    assert stub["where"] == "netns blue" and "/etc/netns/blue/resolv.conf" in stub["problem"]
    assert "127.0.0.53" in stub["problem"]
    rp = found["rp-filter-strict"][0]
    assert rp["where"] == "doc/router"
    assert "ip netns exec doc-router sysctl -w net.ipv4.conf.all.rp_filter=2" in rp["fix"]
    # each fault fixed by the commands doctor printed: healthy again
    for cmd in [*found["lo-down"][0]["fix"], *rp["fix"], *machine_forward[0]["fix"]]:
        sh(cmd)
    sh("ip netns del blue")
    sh("ip -n doc-web route add default via 10.71.1.1")
    code, found = doctor("doc")
    assert code == 0, found


def test_gateway_that_does_not_answer_arp(lab):
    sh("ip -n doc-web route replace default via 10.71.1.250")
    code, found = doctor("doc/web", "--to", "203.0.113.9:443")
    assert code == 1
    assert found["gateway-no-arp"][0]["problem"].startswith("the gateway 10.71.1.250 (on eth0)")
    assert "no-route-to" not in found  # the default route covers it


def test_nameserver_that_does_not_answer(lab):
    dns_server = lab.started[-1]
    dns_server.kill()
    dns_server.wait()
    code, found = doctor("doc/web")
    assert code == 1
    silent = found["nameserver-silent"][0]
    where = "/etc/netns/doc-web/resolv.conf"  # nslab writes it for the host
    assert silent["problem"].startswith(f"nameserver {WAN_ADDRESS} (from {where}) does not answer")
    assert "refused" in silent["problem"]


def test_no_route_to_and_target_kinds(lab):
    sh("ip -n doc-web route del default")
    code, found = doctor("netns:doc-web", "--to", "203.0.113.9")
    assert code == 1
    assert found["no-route-to"][0]["problem"] == "no route to 203.0.113.9"
    assert nslab("doctor", "nosuchlab").returncode == 2
