"""Issue 14 on the real kernel, in throwaway hosts: publish entries without a host port (``"80"``, Docker's
``-p 80``) get a free port of the machine's ephemeral range, printed by ``nslab port`` and answering from the
machine and from ``wan``; the pick is kept by a converging ``up`` and released by ``down``.

The throwaway host's ephemeral range (``net.ipv4.ip_local_port_range`` is per network namespace) is narrowed
to 41000-41009 so the test knows which ports are candidates, and sockets the test holds on some of them
prove that the pick skips ports in use.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import traffic
from labs import NSLAB, nslab
from nslab import Lab
from sandbox import UPLINK_ADDRESS, WAN
from traffic import serve, udp

LAB = """\
name: pr
networks: {front: {}}
hosts:
  web: {networks: [front], publish: ["80", ":53/udp"]}
"""


def fetch(address: str, port: int, namespace: str = "") -> str | None:
    # From the machine, a source port outside the narrowed ephemeral range: the test's own connections must
    # not hold candidate ports
    local = "" if namespace else "--local-port 45000-45999 "
    return traffic.fetch(address, port, namespace, timeout=3, curl_options=local)


def narrow_ephemeral_range() -> None:
    Path("/proc/sys/net/ipv4/ip_local_port_range").write_text("41000 41009\n")


def hold(proto: str, port: int) -> socket.socket:
    """A socket of the machine on ``port``: a TCP listener, or a bound UDP socket."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    if proto == "tcp":
        s.listen(1)
    return s


def test_random_port_is_printed_answers_is_kept_and_released(host, tmp_path):
    narrow_ephemeral_range()
    held = [hold("tcp", 41000), hold("udp", 41000), hold("udp", 41001)]
    path = tmp_path / "nslab.yaml"
    path.write_text(LAB)
    try:
        dry = nslab("up", "-f", str(path), "--dry-run").stdout
        assert "# hosts.web.publish[0] '80': host port 41001/tcp picked" in dry
        assert "# hosts.web.publish[1] ':53/udp': host port 41002/udp picked" in dry
        assert "tcp dport 41001 dnat ip to" in dry
        up = nslab("up", "-f", str(path)).stdout
        assert "picked web 80/tcp -> 0.0.0.0:41001, web 53/udp -> 0.0.0.0:41002" in up  # where the ports went

        # `nslab port` prints it as `docker port` does
        assert nslab("port", "pr/web").stdout.splitlines() == ["53/udp -> 0.0.0.0:41002", "80/tcp -> 0.0.0.0:41001"]
        assert nslab("port", "pr/web", "80").stdout.strip() == "0.0.0.0:41001"
        assert nslab("port", "web", "80/tcp").stdout.strip() == "0.0.0.0:41001"  # HOST alone when unique
        assert nslab("port", "pr/web", "53/udp").stdout.strip() == "0.0.0.0:41002"
        missing = nslab("port", "pr/web", "81", check=False)
        assert missing.returncode == 1 and "no public port '81/tcp' published for pr/web" in missing.stderr
        assert nslab("port", "pr/web", "80/sctp", check=False).returncode == 2

        # the port nslab printed answers: from the machine (its address and loopback) and from wan
        tcp_port = int(nslab("port", "pr/web", "80").stdout.strip().rsplit(":", 1)[1])
        assert Lab.from_text(LAB).port("web", 80) == tcp_port  # the Python API says the same
        udp_port = int(nslab("port", "pr/web", "53/udp").stdout.strip().rsplit(":", 1)[1])
        serve(host, "pr-web", 80, "web")
        serve(host, "pr-web", 53, "dns", "udp")
        assert (fetch(UPLINK_ADDRESS, tcp_port, WAN) or "").startswith("web 198.51.100.1")  # the client, unNATed
        assert (fetch(UPLINK_ADDRESS, tcp_port) or "").startswith("web ")
        assert (fetch("127.0.0.1", tcp_port) or "").startswith("web ")
        assert (udp(UPLINK_ADDRESS, udp_port, WAN) or "").startswith("dns 198.51.100.1")

        # status shows the pick, in text and JSON
        doc = json.loads(nslab("status", "pr", "--json").stdout)
        ports = {p["publish"]: p for p in doc["labs"][0]["firewall"]["ports"]}
        assert ports["80"]["host_port"] == 41001 and ports["80"]["picked"] is True
        assert ports[":53/udp"]["host_port"] == 41002 and ports[":53/udp"]["proto"] == "udp"
        assert "*:41001 (picked)" in nslab("status", "pr", "--wide").stdout

        # sticky: with 41000 free now, an unchanged up keeps 41001 (nothing to do)
        for s in held:
            s.close()
        held = []
        assert "is up to date" in nslab("up", "-f", str(path), "--dry-run").stdout
        nslab("up", "-f", str(path))
        assert nslab("port", "pr/web", "80").stdout.strip() == "0.0.0.0:41001"
        assert (fetch(UPLINK_ADDRESS, tcp_port, WAN) or "").startswith("web ")

        # another lab picks around this one's ports
        other = tmp_path / "other.yaml"
        other.write_text("name: po\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n], publish: ['80', '81']}\n")
        nslab("up", "-f", str(other))
        assert nslab("port", "po/h").stdout.splitlines() == ["80/tcp -> 0.0.0.0:41000", "81/tcp -> 0.0.0.0:41002"]
        nslab("down", "po")

        # down releases the pick: the next up takes the lowest free port again
        nslab("down", "pr")
        assert "no lab" in nslab("port", "pr/web", check=False).stderr
        nslab("up", "-f", str(path))
        assert nslab("port", "pr/web", "80").stdout.strip() == "0.0.0.0:41000"
    finally:
        for s in held:
            s.close()
        nslab("down", "po", check=False)
        nslab("down", "pr", check=False)


def test_run_publishes_a_random_port_and_says_where(host):
    narrow_ephemeral_range()
    listener = hold("tcp", 41000)
    try:
        serve_once = ("import socket; s = socket.socket(); s.bind(('0.0.0.0', 80)); s.listen(1); "
                      "c, peer = s.accept(); c.recv(100); "
                      "c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nfrom run\\n'); c.close()")
        proc = host.popen([NSLAB, "run", "--network", "nat", "-p", "80", "--", "python3", "-c", serve_once],
                          stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        line = proc.stderr.readline().strip()
        assert line.startswith("nslab: published 80/tcp -> 0.0.0.0:41001 (run-") and line.endswith("/main)")
        answer = None
        for _ in range(50):  # the command inside may not listen yet
            answer = fetch(UPLINK_ADDRESS, 41001, WAN)
            if answer:
                break
            time.sleep(0.1)
        assert answer == "from run"
        assert proc.wait(timeout=10) == 0
    finally:
        listener.close()
