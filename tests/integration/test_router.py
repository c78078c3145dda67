"""Issue 13: the router topology from the lab file alone -- two networks, a router host with ip_forward and
routes, hosts on each side reaching the other through it (real ping, in a throwaway host)."""

from __future__ import annotations

import re

from labfiles import ROUTER
from labs import nslab

ROUTER_LAB = ROUTER + "  c:\n    networks: [left]\n    default: none\n"


def test_router_host_forwards_between_its_networks(host, tmp_path):
    path = tmp_path / "nslab.yaml"
    path.write_text(ROUTER_LAB)
    nslab("up", "-f", str(path))
    try:
        assert nslab("exec", "rt/router", "--", "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
        ping = nslab("exec", "rt/a", "--", "ping", "-c1", "-W2", "10.81.2.10", check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert re.search(r"ttl=63\b", ping.stdout), ping.stdout  # one router on the way
        back = nslab("exec", "rt/b", "--", "ping", "-c1", "-W2", "10.81.1.2")
        assert "ttl=63" in back.stdout
        routes = nslab("exec", "rt/b", "--", "ip", "-4", "route").stdout
        assert "10.81.1.0/24 via 10.81.2.254 dev eth0 proto static" in routes
        link = nslab("exec", "rt/b", "--", "ip", "link", "show", "eth0").stdout
        assert "mtu 1400" in link and "02:aa:00:00:00:0b" in link
        assert "default" not in nslab("exec", "rt/c", "--", "ip", "-4", "route").stdout
        # c has no route off its subnet: the other side is unreachable from it
        assert nslab("exec", "rt/c", "--", "ping", "-c1", "-W1", "10.81.2.10", check=False).returncode != 0
        # ip_forward is per namespace: the hosts without the sysctl keep 0
        assert nslab("exec", "rt/a", "--", "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"
    finally:
        nslab("down", "rt")
