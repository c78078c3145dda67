"""IPv6 dual stack on the real kernel, inside throwaway hosts: hosts reach each other over IPv6 by name, NAT66
egress to an IPv6 server in ``wan`` (which sees the machine's uplink address), internal networks stay in,
isolation holds for IPv6, a port published as "6000:80" answers on 127.0.0.1, ::1 and the machine's IPv6
uplink address, and no router advertisement is accepted by a lab bridge.

The ``wan`` namespace gets 2001:db8::1/64 (the documentation range, as TESTING.md asks), this throwaway host
2001:db8::2/64 on its uplink and a default IPv6 route via ``wan``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from labs import NSLAB, nslab
from nslab.naming import bridge_name
from sandbox import sh
from traffic import SERVER

WAN6, UPLINK6 = "2001:db8::1", "2001:db8::2"

LAB = """\
name: six
networks:
  front: {ipv6: true}
  back: {subnet6: "fd00:6::/64"}
  secure: {internal: true, ipv6: true}
hosts:
  web: {networks: [front], publish: ["6000:80"]}
  peer: {networks: [front]}
  other: {networks: [back]}
  vault: {networks: [secure]}
"""

#: Prints the body an HTTP GET of ADDRESS:PORT gets (from traffic.SERVER), or "failed: WHY".
CLIENT = r"""
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    print(s.makefile("rb").read().split(b"\r\n\r\n", 1)[-1].decode().strip())
except OSError as exc:
    print(f"failed: {exc}")
"""


#: Echoes every TCP connection's bytes back until the client half-closes; UDP datagrams back to their sender.
ECHO = r"""
import socket, sys, threading
port = int(sys.argv[1])
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(("::", port))
def udp():
    while True:
        data, peer = u.recvfrom(2048); u.sendto(data, peer)
threading.Thread(target=udp, daemon=True).start()
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", port)); s.listen(16); print("ready", flush=True)
while True:
    c, _ = s.accept()
    while data := c.recv(65536):
        c.sendall(data)
    c.close()
"""

#: Sends N bytes through [::1]:PORT, half-closes, reads the echo; then one UDP datagram. Prints what came back.
ECHO_CLIENT = r"""
import socket, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
payload = bytes(i % 251 for i in range(n))
c = socket.create_connection(("::1", port), timeout=5)
def send():
    c.sendall(payload); c.shutdown(socket.SHUT_WR)
threading.Thread(target=send).start()
got = bytearray()
while data := c.recv(65536):
    got += data
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.settimeout(3); u.sendto(b"ping6", ("::1", port))
print(len(got), got == payload, u.recvfrom(100)[0].decode())
"""


def ipv6_uplink(host) -> None:
    sh(f"ip -n wan addr add {WAN6}/64 dev eth0 nodad; ip addr add {UPLINK6}/64 dev eth0 nodad; "
       f"ip -6 route add default via {WAN6}")


def serve(host, argv_prefix: list[str], port: int, body: str) -> None:
    """traffic.SERVER on IPv6 and IPv4 (tcp6), run after ``argv_prefix``."""
    argv = [*argv_prefix, "python3", "-c", SERVER, str(port), body, "tcp6"]
    proc = host.popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"


def connect(argv_prefix: list[str], address: str, port: int) -> str:
    out = subprocess.run([*argv_prefix, "python3", "-c", CLIENT, address, str(port)], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()


def lab_up(tmp_path: Path, text: str = LAB) -> Path:
    lab = tmp_path / "nslab.yaml"
    lab.write_text(text)
    nslab("up", "-f", str(lab))
    return lab


def addr6(host_name: str, lab: str = "six") -> str:
    out = sh(f"ip -n {lab}-{host_name} -6 -o addr show dev eth0 scope global").stdout.split()
    return out[out.index("inet6") + 1].split("/")[0]


def exec_in(host_name: str, lab: str = "six") -> list[str]:
    return [NSLAB, "exec", f"{lab}/{host_name}", "--"]


@pytest.mark.usefixtures("host")
def test_hosts_ping_each_other_over_ipv6_by_name(tmp_path):
    lab_up(tmp_path)
    try:
        web, peer = addr6("web"), addr6("peer")
        assert web != peer and web.startswith("fd") and peer.startswith("fd")
        hosts = sh("cat /etc/netns/six-peer/hosts").stdout.splitlines()
        assert f"{web}\tweb web.six" in hosts and f"{peer}\tpeer peer.six" in hosts
        assert "no-aaaa" not in sh("cat /etc/netns/six-peer/resolv.conf").stdout  # AAAA queries are worth asking
        got = sh("ip netns exec six-peer getent ahostsv6 web").stdout
        assert web in got, got
        ping = sh("ip netns exec six-peer ping -6 -c 1 -W 3 web", check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        # link-local where IPv6 is on, none on an IPv4-only interface of a new namespace (lo keeps ::1)
        assert "fe80::" in sh("ip -n six-web -6 addr show dev eth0").stdout
        # the default IPv6 route via the bridge's gateway; internal hosts get none
        assert "default via" in sh("ip -n six-web -6 route show default").stdout
        assert sh("ip -n six-vault -6 route show default").stdout.strip() == ""
        # the other network is the written subnet6
        assert addr6("other").startswith("fd00:6::")
    finally:
        nslab("down", "six")


def test_nat66_egress_is_masqueraded_and_internal_hosts_stay_in(host, tmp_path):
    ipv6_uplink(host)
    serve(host, host.in_wan([]), 8080, "wan")
    lab_up(tmp_path)
    try:
        assert connect(exec_in("web"), WAN6, 8080) == f"wan {UPLINK6}"  # masqueraded as the uplink address
        assert connect(exec_in("other"), WAN6, 8080) == f"wan {UPLINK6}"
        assert connect(exec_in("vault"), WAN6, 8080).startswith("failed")  # internal: no way out
        assert sh("sysctl -n net.ipv6.conf.all.forwarding").stdout.strip() == "1"
    finally:
        nslab("down", "six")
    assert sh("sysctl -n net.ipv6.conf.all.forwarding").stdout.strip() == "0"  # restored


DOCKER6 = """\
table ip6 filter {
  chain DOCKER-USER {
  }
  chain FORWARD {
    type filter hook forward priority filter; policy drop;
    jump DOCKER-USER
  }
}
"""


def test_nat66_passes_docker_ip6_forward_drop_through_docker_user(host, tmp_path):
    """Docker's IPv6 layout (ip6tables: FORWARD policy drop, DOCKER-USER first): nslab's accept rules there
    let lab IPv6 traffic through, and go with the lab."""
    ipv6_uplink(host)
    subprocess.run(["nft", "-f", "-"], input=DOCKER6, text=True, check=True)
    serve(host, host.in_wan([]), 8080, "wan")
    lab_up(tmp_path)
    try:
        assert "nslab:six:front" in sh("nft list chain ip6 filter DOCKER-USER").stdout
        assert connect(exec_in("web"), WAN6, 8080) == f"wan {UPLINK6}"
    finally:
        nslab("down", "six")
    assert "nslab" not in sh("nft list chain ip6 filter DOCKER-USER").stdout


def test_routed_ipv6_egress_keeps_the_lab_address(host, tmp_path):
    """``nat6: false``: the lab's IPv6 address reaches the outside as it is (wan routes the subnet6 back)."""
    ipv6_uplink(host)
    sh(f"ip -n wan -6 route add fd00:7::/64 via {UPLINK6}")
    serve(host, host.in_wan([]), 8080, "wan")
    lab_up(tmp_path, "name: six\nnetworks:\n  routed: {subnet6: 'fd00:7::/64', nat6: false}\n"
                     "hosts:\n  r: {networks: [routed]}\n")
    try:
        assert connect(exec_in("r"), WAN6, 8080) == f"wan {addr6('r')}"
    finally:
        nslab("down", "six")


def test_isolation_holds_for_ipv6(host, tmp_path):
    lab_up(tmp_path)
    try:
        serve(host, ["ip", "netns", "exec", "six-other"], 7000, "other")
        serve(host, ["ip", "netns", "exec", "six-vault"], 7000, "vault")
        other, vault = addr6("other"), addr6("vault")
        assert connect(exec_in("web"), other, 7000).startswith("failed")  # front -> back: isolated
        assert connect(exec_in("web"), vault, 7000).startswith("failed")  # front -> internal secure
        assert connect(exec_in("vault"), other, 7000).startswith("failed")  # internal -> back
        # the machine reaches its own lab's hosts directly (from the bridge's address, as over IPv4)
        assert connect([], other, 7000) == "other fd00:6::1"
        # on the same network: refused (nothing listens), not dropped
        assert connect(exec_in("peer"), addr6("web"), 7000).startswith("failed: [Errno 111]")
    finally:
        nslab("down", "six")


def bridge(network: str) -> str:
    return bridge_name("six", network)


def test_port_published_on_both_families_answers_on_loopbacks_and_the_uplink(host, tmp_path):
    ipv6_uplink(host)
    lab_up(tmp_path)
    try:
        serve(host, ["ip", "netns", "exec", "six-web"], 80, "web")
        assert connect([], "127.0.0.1", 6000).startswith("web ")
        assert connect([], "::1", 6000).startswith("web ")
        assert connect([], UPLINK6, 6000).startswith("web ")
        assert connect(host.in_wan([]), UPLINK6, 6000) == f"web {WAN6}"  # from the outside: the client's address
        # hairpin: a lab host (the publishing one too) via the machine's address, answered through the gateway
        gateway6 = sh(f"ip -6 -o addr show dev {bridge('front')} scope global").stdout.split()[3].split("/")[0]
        assert connect(exec_in("peer"), UPLINK6, 6000) == f"web {gateway6}"
        assert connect(exec_in("web"), UPLINK6, 6000) == f"web {gateway6}"
    finally:
        nslab("down", "six")


def test_the_loopback_relay_carries_both_directions_and_udp(host, tmp_path):
    """[::1] is relayed by the lab's supervisor: a megabyte each way with a half-close, and a UDP round trip."""
    ports = '["6000:80", "[::1]:6100:7000/tcp", "[::]:6100:7000/udp"]'
    lab_up(tmp_path, LAB.replace('publish: ["6000:80"]', f"publish: {ports}"))
    try:
        serve_echo = ["ip", "netns", "exec", "six-web", "python3", "-c", ECHO, "7000"]
        proc = host.popen(serve_echo, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        out = subprocess.run(["python3", "-c", ECHO_CLIENT, "6100", str(1 << 20)], capture_output=True, text=True,
                             timeout=30)
        assert out.stdout.split() == [str(1 << 20), "True", "ping6"], out.stdout + out.stderr
    finally:
        nslab("down", "six")
    listening = sh("ss -Hlnt6 'sport = :6100'").stdout.strip()
    assert listening == "", listening  # the relay went with the lab


@pytest.mark.usefixtures("host")
def test_link_down_and_up_keeps_ipv6_and_a_lost_address_is_drift(tmp_path):
    lab = lab_up(tmp_path)
    try:
        nslab("link", "six/peer:eth0", "down")
        nslab("link", "six/peer:eth0", "up")
        assert addr6("peer")  # kept (keep_addr_on_down), and the default route brought back
        assert "default via" in sh("ip -n six-peer -6 route show default").stdout
        ping = sh("ip netns exec six-peer ping -6 -c 1 -W 3 web", check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        sh("ip -n six-peer -6 route del default")
        drift = nslab("status", "six", check=False).stdout  # exits 1: drift
        assert "host peer: IPv6 default route via fd" in drift, drift
        nslab("up", "-f", str(lab))  # repaired in place
        assert "default via" in sh("ip -n six-peer -6 route show default").stdout
        assert "no drift" in nslab("status", "six").stdout
        sh(f"ip -n six-peer addr del {addr6('peer')}/64 dev eth0")
        drift = nslab("status", "six", check=False).stdout  # exits 1: drift
        assert "host peer: interface eth0 lacks its address fd" in drift, drift
        nslab("up", "-f", str(lab))  # repaired: the host is made again, with the same address
        assert addr6("peer")
    finally:
        nslab("down", "six")


@pytest.mark.usefixtures("host")
def test_turning_ipv6_on_and_off_converges_and_keeps_addresses(tmp_path):
    v4 = "name: six\nnetworks: {n: {subnet: 10.66.0.0/24}}\nhosts:\n  a: {networks: [n]}\n  b: {networks: [n]}\n"
    lab = lab_up(tmp_path, v4)
    try:
        assert sh("ip -n six-a -6 addr show dev eth0").stdout.strip() == ""  # IPv4 only: not even link-local
        lab.write_text(v4.replace("{subnet: 10.66.0.0/24}", "{subnet: 10.66.0.0/24, ipv6: true}"))
        nslab("up", "-f", str(lab))
        first = addr6("a")
        assert "10.66.0.2/24" in sh("ip -n six-a addr show dev eth0").stdout  # the IPv4 address is kept
        nslab("up", "-f", str(lab))  # nothing to do: the same addresses
        assert addr6("a") == first
        lab.write_text(v4)
        nslab("up", "-f", str(lab))
        assert sh("ip -n six-a -6 addr show dev eth0").stdout.strip() == ""
        assert "ip6" not in sh("nft list table inet nslab").stdout
    finally:
        nslab("down", "six")


def test_a_subnet6_overlapping_a_machine_route_is_refused_before_any_change(host, tmp_path):
    ipv6_uplink(host)
    sh(f"ip -6 route add fd00:6::/48 via {WAN6}")
    lab = tmp_path / "nslab.yaml"
    lab.write_text(LAB)
    result = nslab("up", "-f", str(lab), check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "networks.back.subnet6: subnet6 fd00:6::/64 overlaps fd00:6::/48 (route on eth0)" in result.stderr
    assert sorted(os.listdir("/run/netns")) == ["wan"]  # nothing made
    # an automatic /64 steps around the machine's routes
    ula = Path("/run/nslab/.ula6").read_text().strip()
    sh(f"ip -6 route add {ula.replace('::/48', '::/64')} via {WAN6}")
    lab.write_text("name: six\nnetworks: {n: {ipv6: true}}\nhosts:\n  h: {networks: [n]}\n")
    nslab("up", "-f", str(lab))
    try:
        assert addr6("h").startswith(ula.replace("::/48", ":1:"))
    finally:
        nslab("down", "six")


def test_check_over_ipv6_matches_the_policy(host, tmp_path):
    """`nslab check -6`: ICMPv6 and TCP over IPv6, same network reaches, isolation and internal block, the
    outside (wan's IPv6 address, the machine's IPv6 gateway) from NAT hosts only; a partition blocks."""
    ipv6_uplink(host)
    lab_up(tmp_path, LAB + "partitions:\n  - [web, peer]\n")
    try:
        result = nslab("check", "six", "-6", "--json", check=False)
        matrix = json.loads(result.stdout)
        assert result.returncode == 0 and matrix["ok"], result.stdout + result.stderr
        assert matrix["outside"] == WAN6
        cell = {(c["source"], c["target"]): c for c in matrix["cells"]}
        assert cell[("web", "web")]["address"] == "::1" and cell[("web", "web")]["reachable"]
        assert cell[("web", "outside")]["reachable"] and not cell[("vault", "outside")]["reachable"]
        assert not cell[("web", "peer")]["reachable"] and cell[("web", "peer")]["address"] == addr6("peer")  # cut
        assert not cell[("web", "other")]["reachable"]  # isolation
        serve(host, ["ip", "netns", "exec", "six-other"], 7000, "other")
        tcp = json.loads(nslab("check", "six", "-6", "--port", "7000", "--from", "other", "--json").stdout)
        assert [c["result"] for c in tcp["cells"] if c["target"] == "other"] == ["open"]
    finally:
        nslab("down", "six")


ROUTED = """\
name: rt6
networks:
  left: {subnet6: "fd00:a::/64", internal: true}
  right: {subnet6: "fd00:b::/64", internal: true}
hosts:
  router:
    networks: {left: "fd00:a::9", right: "fd00:b::9"}
    sysctls: {net.ipv6.conf.all.forwarding: 1}
  a: {networks: [left], routes: [{to: "fd00:b::/64", via: "fd00:a::9"}]}
  b: {networks: [right], default: "fd00:b::9"}
"""


@pytest.mark.usefixtures("host")
def test_a_dual_stack_link_carries_ipv6(tmp_path):
    lab_up(tmp_path, "name: lk\nhosts:\n  a: {}\n  b: {}\nlinks:\n  - {endpoints: [a, b], subnet6: 'fd00:c::/64'}\n")
    try:
        assert "fd00:c::1/64" in sh("ip -n lk-a -6 addr show dev eth0").stdout
        ping = sh("ip netns exec lk-a ping -6 -c 1 -W 3 b", check=False)  # by name: the hosts file has fd00:c::2
        assert ping.returncode == 0 and "fd00:c::2" in ping.stdout, ping.stdout + ping.stderr
    finally:
        nslab("down", "lk")


@pytest.mark.usefixtures("host")
def test_static_ipv6_routes_through_a_router_host(tmp_path):
    lab_up(tmp_path, ROUTED)
    try:
        assert "fd00:b::/64 via fd00:a::9" in sh("ip -n rt6-a -6 route").stdout
        assert "default via fd00:b::9" in sh("ip -n rt6-b -6 route").stdout
        ping = sh(f"ip netns exec rt6-a ping -6 -c 1 -W 3 {addr6('b', 'rt6')}", check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        nslab("down", "rt6")


def ping6_rtt(source: str, target: str, count: int = 10) -> tuple[str, float]:
    """(packet loss as ping prints it, average round trip in ms; -1 when nothing came back)."""
    out = sh(f"ip netns exec six-{source} ping -6 -n -q -c {count} -i 0.05 -W 2 {target}", check=False).stdout
    loss = re.search(r"(\d+(?:\.\d+)?)% packet loss", out)
    rtt = re.search(r"= [\d.]+/([\d.]+)/", out)
    return (loss.group(1) if loss else "?"), (float(rtt.group(1)) if rtt else -1.0)


@pytest.mark.usefixtures("host")
def test_impairments_apply_to_ipv6(tmp_path):
    """Loss (nft, any family) and delay (NFQUEUE: ip6tables too on a dual-stack host) hit IPv6 packets."""
    lab_up(tmp_path)
    try:
        _, base = ping6_rtt("web", "peer")
        nslab("impair", "six/web", "--delay", "50ms", "--out")
        assert "NFQUEUE" in sh("ip netns exec six-web ip6tables-nft-save -t mangle").stdout
        loss, rtt = ping6_rtt("web", "peer")
        assert loss == "0" and rtt - base >= 45, (base, rtt)
        nslab("impair", "six/web", "--clear")
        assert "NFQUEUE" not in sh("ip netns exec six-web ip6tables-nft-save -t mangle", check=False).stdout
        nslab("impair", "six/web", "--loss", "100%", "--out")
        assert ping6_rtt("web", "peer", 5)[0] == "100"
    finally:
        nslab("down", "six")


def test_trace_over_ipv6_names_isolation_and_reaches_a_neighbour(host, tmp_path):
    lab_up(tmp_path)
    try:
        other = addr6("other")
        result = nslab("trace", "six/web", f"[{other}]:7000", check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"[{other}]:7000" in result.stdout  # the flow, over IPv6
        verdict = result.stdout.splitlines()[-1]
        assert verdict.startswith("verdict: dropped by nslab rule") and '"nslab:six:back:isolation"' in verdict, \
            result.stdout
        reached = nslab("trace", "six/web", "-6", "peer", check=False)  # by name: its IPv6 address, ICMPv6
        assert reached.returncode == 0 and "reached: echo reply from" in reached.stdout, reached.stdout
        assert "nslab-trace" not in sh("nft list tables").stdout
    finally:
        nslab("down", "six")


#: A router advertisement (router lifetime 1800 s, prefix 2001:db8:77::/64 on-link + autonomous) to ff02::1,
#: sent from the host's link-local address with hop limit 255, as a radvd would.
SEND_RA = r"""
import socket, struct
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex("eth0"))
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
prefix = struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, 86400, 14400, 0, socket.inet_pton(socket.AF_INET6, "2001:db8:77::"))
for _ in range(3):
    s.sendto(ra + prefix, ("ff02::1", 0, 0, socket.if_nametoindex("eth0")))
"""


def test_router_advertisements_from_a_lab_do_not_reach_the_machine(host, tmp_path):
    lab_up(tmp_path)
    try:
        for network in ("front", "back", "secure"):
            assert sh(f"sysctl -n net.ipv6.conf.{bridge(network)}.accept_ra").stdout.strip() == "0"
        sh("sysctl -qw net.ipv6.conf.all.forwarding=0")  # the machine as a plain host: it would take RAs
        sh(f"ip netns exec six-web python3 -c '{SEND_RA}'")
        # a neighbour on the same network took it (the RA is valid)...
        def learned() -> bool:
            return "2001:db8:77::/64" in sh("ip -n six-peer -6 route").stdout

        deadline = time.monotonic() + 5
        while not learned() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert learned(), sh("ip -n six-peer -6 route").stdout
        # ... the machine did not (no prefix, no default route via the lab), nor another network's host
        machine = sh("ip -6 route; ip -6 addr").stdout
        assert "2001:db8:77" not in machine and "proto ra" not in machine, machine
        assert "2001:db8:77" not in sh("ip -n six-other -6 route").stdout
    finally:
        nslab("down", "six")
