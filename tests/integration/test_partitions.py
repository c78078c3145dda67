"""Issue 11 on the real kernel, inside throwaway hosts: partitions between hosts and between networks block
both ways (an established TCP connection too), ``heal`` restores, the lab-file form, and nothing stays."""

from __future__ import annotations

import re
import subprocess

import test_impair
from test_impair import address, namespace, nslab, ping

from sandbox import sh

lab = test_impair.lab  # the fixture: a lab file up for the test, down after it

LAB = """\
name: imp
networks:
  front: {}
  back: {}
hosts:
  a: {networks: [front]}
  b: {networks: [front]}
  c: {networks: [front]}
  d: {networks: [back]}
"""

ECHO = r"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 7000)); s.listen()
print("ready", flush=True)
c, _ = s.accept()
while data := c.recv(100):
    c.sendall(data)
"""

CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], 7000), timeout=2)
for line in sys.stdin:
    try:
        c.sendall(b"x"); c.recv(10); print("ok", flush=True)
    except OSError as exc:
        print("blocked", type(exc).__name__, flush=True)
"""


def reachable(src: str, dst: str) -> bool:
    return ping(src, dst, 3, "0.05")[0] < 100


def test_partition_blocks_both_ways_established_too_and_heal_restores(lab, host):
    lab(LAB)
    server = host.popen(["ip", "netns", "exec", namespace("b"), "python3", "-c", ECHO], stdout=subprocess.PIPE,
                        text=True)
    assert server.stdout.readline().strip() == "ready"
    client = host.popen(["ip", "netns", "exec", namespace("a"), "python3", "-c", CLIENT, address("b")],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def exchange() -> str:
        client.stdin.write("go\n")
        client.stdin.flush()
        return client.stdout.readline().strip()

    assert exchange() == "ok"
    nslab("partition", "imp/a", "b")
    assert not reachable("a", "b") and not reachable("b", "a")
    assert reachable("a", "c") and reachable("b", "c")
    assert exchange().startswith("blocked")  # the established connection stops
    rules = sh(f"ip netns exec {namespace('a')} nft list table inet nslab-partition").stdout
    assert 'comment "nslab:imp:partition:a:b"' in rules
    assert re.search(r"partition +a \| b +dropped both ways +cli", nslab("status", "imp").stdout)
    nslab("heal", "imp/a", "b")
    assert reachable("a", "b") and reachable("b", "a")
    for name in ("a", "b", "c"):
        assert sh(f"ip netns exec {namespace(name)} nft list tables").stdout == ""


def test_partitions_from_the_lab_file_and_heal_all(lab):
    path = lab(LAB + "partitions: [[a, c], [front, back]]\n")
    assert not reachable("a", "c") and not reachable("c", "a")
    assert reachable("a", "b") and reachable("c", "b")
    # a network side stands for its subnet, in every host on it
    back = sh(f"ip netns exec {namespace('a')} nft list table inet nslab-partition").stdout
    assert 'comment "nslab:imp:partition:front:back"' in back
    subnet = re.search(r"ip saddr (\S+) drop comment \"nslab:imp:partition:front:back\"", back).group(1)
    assert subnet.endswith("/24") and address("d").startswith(subnet.rsplit(".", 1)[0])
    nslab("heal", "imp")
    assert reachable("a", "c")
    for name in ("a", "b", "c", "d"):
        assert sh(f"ip netns exec {namespace(name)} nft list tables").stdout == ""
    bad = nslab("partition", "imp/a", "nowhere", check=False)
    assert bad.returncode == 2 and "'nowhere' is neither a host nor a network" in bad.stderr
    path.write_text(LAB + "partitions: [[a, nowhere]]\n")
    bad = nslab("up", "-f", str(path), check=False)
    assert bad.returncode == 2 and "partitions[0]" in bad.stderr


UDP_RECEIVE = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 7001)); s.settimeout(1.5)
print("ready", flush=True)
try:
    print(s.recv(100).decode(), flush=True)
except TimeoutError:
    print("nothing", flush=True)
"""


def udp_passes(host, src: str, dst: str) -> bool:
    """Whether a UDP datagram sent by ``src`` reaches ``dst`` (no reply needed: one direction only)."""
    receiver = host.popen(["ip", "netns", "exec", namespace(dst), "python3", "-c", UDP_RECEIVE],
                          stdout=subprocess.PIPE, text=True)
    assert receiver.stdout.readline().strip() == "ready"
    for _ in range(3):
        sh(f"ip netns exec {namespace(src)} python3 -c \"import socket; socket.socket(socket.AF_INET, "
           f"socket.SOCK_DGRAM).sendto(b'hello', ('{address(dst)}', 7001))\"", check=False)  # (EPERM: dropped)
    got = receiver.stdout.readline().strip()
    receiver.wait(timeout=5)
    return got == "hello"


def test_oneway_partition_drops_only_what_a_sends_to_b(lab, host):
    lab(LAB)
    assert nslab("partition", "imp/a", "b", "--oneway").stdout == "imp: cut a -> b (b -> a still passes)\n"
    assert not udp_passes(host, "a", "b")
    assert udp_passes(host, "b", "a")
    assert udp_passes(host, "a", "c")
    assert re.search(r"partition +a -> b +dropped one way +cli", nslab("status", "imp").stdout)
    assert nslab("heal").stdout == "imp: healed 1 partition(s)\n"  # the only lab up: no name needed
    assert udp_passes(host, "a", "b")
