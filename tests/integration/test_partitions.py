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
