"""A lab across three machines (core/overlay.py, core/kinds/vxlan.py), in the several-machines harness
(nslab.tools.sandbox.Machines): each machine runs ``nslab up -f FILE --machine NAME`` on the same file, in
parallel, and the lab works across them: names, a NAT network spanning all three (home a), an internal network
across b and c, a ring of links between machines, a published port on a, dual stack, the overlay MTU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from labs import NSLAB
from machines_lab import FETCH, LAB, PEER_SERVER, all_ok, inside, lab_file, left, machines, on_all, ping
from nslab.tools.sandbox import WAN_ADDRESS, Machine, Machines

__all__ = ["machines"]  # the fixture, used by name


def _in(machines: Machines, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return inside(machines[host[0]], "multi", host, argv)  # (the hosts of LAB are named after their machine)


def _ping(machines: Machines, source: str, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return ping(machines[source[0]], "multi", source, target, *extra)


def test_a_lab_across_three_machines(machines: Machines, host, tmp_path: Path) -> None:
    file = lab_file(tmp_path, "multi", LAB)
    started = time.monotonic()
    all_ok(on_all(machines, "up", "-q", "-f", file))
    took = time.monotonic() - started
    try:
        _works_across(machines, host)
        statuses = {m.name: json.loads(m.run([NSLAB, "status", "multi", "--json"]).stdout)["labs"][0]
                    for m in machines}
        assert {s["machine"] for s in statuses.values()} == {"a", "b", "c"}
        assert len({s["digest"] for s in statuses.values()}) == 1 and all(s["drift"] == [] for s in statuses.values())
        checks = {m.name: m.run([NSLAB, "check", "multi", "--machine", m.name, "--json"]) for m in machines}
        all_ok(checks)
        every = {"a1", "a2", "a3", "b1", "b2", "b3", "c1", "c2", "c3", "c4"}
        for name, result in checks.items():  # rows: the machine's hosts; columns: every host of the lab
            cells = json.loads(result.stdout)["cells"]
            assert {c["source"] for c in cells} == {h for h in every if h[0] == name}
            assert every <= {c["target"] for c in cells}
            # isolation across machines: b3 (internal network only) is reached from c3 and from nobody on lan only
            assert all(not c["reachable"] for c in cells if c["target"] == "b3" and c["source"] in ("a1", "c4"))
        table = machines["b"].run([NSLAB, "status", "multi"])
        assert table.returncode == 0 and f"machine: b  digest: {statuses['b']['digest']}" in table.stdout
        graph = machines["c"].run([NSLAB, "graph", "multi"])
        assert graph.returncode == 0 and "c2" in graph.stdout, graph.stderr
        for verb in ("status", "down"):  # --machine naming another machine's part: refused, nothing done
            wrong = machines["a"].run([NSLAB, verb, "multi", "--machine", "b"])
            assert wrong.returncode == 2 and "is up here as machine a's part, not machine b's" in wrong.stderr
        elsewhere = machines["a"].run([NSLAB, "exec", "multi/b1", "--", "true"])
        assert elsewhere.returncode == 2 and "is on machine b" in elsewhere.stderr
        refused = machines["a"].run([NSLAB, "capture", "multi/c1", "-c", "1"])
        assert refused.returncode == 2 and "is on machine c" in refused.stderr
        traced = machines["c"].run([NSLAB, "trace", "multi/c4", "multi/a1"])  # a1 lives on a: traced by address
        assert traced.returncode == 0, traced.stdout + traced.stderr
        again = machines["b"].run([NSLAB, "up", "-f", file])  # converging an unchanged part changes nothing
        assert again.returncode == 0 and not any(w in again.stdout for w in ("added", "changed", "repaired"))
    finally:
        all_ok(on_all(machines, "down", "multi"))
    for m in machines:
        assert left(m) == [], m.name
    assert took < 60


def _works_across(machines: Machines, host) -> None:
    # names across machines, on the spanning network, the internal one, the ring of links
    for source, target in (("a1", "b1"), ("b1", "c4"), ("c1", "a3"), ("b3", "c3"), ("c3", "b1"), ("a2", "c2")):
        assert _ping(machines, source, target).returncode == 0, (source, target)
    assert _ping(machines, "a1", "b2", "-6").returncode == 0  # dual stack across
    from nslab.core import load

    ring = load.resolved(load.from_text(LAB), None).links[2]  # c2 - a2, dual stack, between c and a
    assert ring.kind == "vxlan" and ring.b_address6 is not None
    assert _ping(machines, "c2", str(ring.b_address6.ip)).returncode == 0
    assert "mtu 1450" in _in(machines, "a2", ["ip", "link", "show", ring.b_ifname]).stdout
    # isolation: the internal network is not reachable from a host that is only on lan
    b1_back = _in(machines, "c3", ["getent", "hosts", "b1"]).stdout.split()[0]
    assert b1_back.startswith("10.")
    assert _ping(machines, "a3", b1_back).returncode != 0
    # the overlay MTU: 1450 on the 1500 underlay; 1422 bytes of ICMP cross without fragments, 1423 do not
    for h in ("b1", "c2"):
        assert "mtu 1450" in _in(machines, h, ["ip", "link", "show", "eth0"]).stdout
    assert _ping(machines, "c4", "a1", "-4", "-M", "do", "-s", "1422").returncode == 0
    too_big = _ping(machines, "c4", "a1", "-4", "-M", "do", "-s", "1423")
    assert too_big.returncode != 0 and "message too long" in (too_big.stdout + too_big.stderr).lower()
    # out through a's NAT: wan sees a's underlay address (the throwaway host forwards a's traffic unchanged)
    server = host.popen(host.in_wan([sys.executable, "-c", PEER_SERVER, WAN_ADDRESS]), stdout=subprocess.PIPE,
                        text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    seen = _in(machines, "c4", [sys.executable, "-c", FETCH, WAN_ADDRESS, "9000"])
    assert seen.stdout.strip() == machines["a"].address, seen.stderr
    # ... and only to a: b, also on lan, gets none of it (the gateway's MAC has its forwarding entry; b may see
    # the odd broadcast, an ARP or IPv6 neighbour query, never the pings: 8 + 14 + 84 bytes of VXLAN payload)
    sniff = subprocess.Popen(machines["b"].argv(["timeout", "3", "tcpdump", "-nni", "eth0", "-c", "20",
                                                 f"udp port 14789 and src {machines['c'].address}"]),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.5)
    assert _in(machines, "c4", ["ping", "-c10", "-i0.05", "-W1", WAN_ADDRESS]).returncode == 0
    assert not [line for line in sniff.communicate()[0].splitlines() if line.endswith("length 106")]
    # the published port answers from wan (through a)
    got = subprocess.run(host.in_wan(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--retry", "20",
                                      "--retry-connrefused", "--retry-delay", "0",
                                      f"http://{machines['a'].address}:8080/"]), capture_output=True, text=True)
    assert got.stdout == "200", got.stderr
    got = subprocess.run(host.in_wan(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--retry", "20",
                                      "--retry-connrefused", "--retry-delay", "0",
                                      f"http://{machines['a'].address}:8081/"]), capture_output=True, text=True)
    assert got.stdout == "200", got.stderr  # (b2 serves it: a's DNAT, then the VXLAN to b)


def test_kill_9_mid_up_then_up_again_converges(machines: Machines, tmp_path: Path) -> None:
    file = lab_file(tmp_path, "multi", LAB)
    b = machines["b"]
    proc = subprocess.Popen(b.argv([NSLAB, "up", "-q", "-f", file, "--machine", "b"]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    intent = Path(b.path("/run/nslab/multi/intent.json"))
    deadline = time.monotonic() + 20
    while not intent.exists() and time.monotonic() < deadline:  # killed once it started changing the machine
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert intent.exists()  # (it left a half-made part behind)
    try:
        all_ok(on_all(machines, "up", "-q", "-f", file, named=False))  # each finds its machine by its address
        assert _ping(machines, "b1", "c1").returncode == 0
        assert _ping(machines, "b2", "a2").returncode == 0
        assert json.loads(b.run([NSLAB, "status", "multi", "--json"]).stdout)["labs"][0]["drift"] == []
    finally:
        all_ok(on_all(machines, "down", "multi"))
    for m in machines:
        assert left(m) == [], m.name


def test_a_vni_in_use_is_refused_before_any_change_and_drift_is_repaired(machines: Machines, tmp_path: Path) -> None:
    from nslab.core import load, overlay

    file = lab_file(tmp_path, "multi", LAB)
    lan = load.resolved(load.from_text(LAB), None).networks["lan"]
    b, c = machines["b"], machines["c"]
    b.sh(f"ip link add vxhand type vxlan id {lan.vni} dstport 14789 local {b.address}")
    refused = b.run([NSLAB, "up", "-f", file, "--machine", "b"])
    assert refused.returncode == 2 and f"VNI {lan.vni} is already used on machine b by VXLAN device vxhand" in \
        refused.stderr
    assert left(b) == []
    b.sh("ip link del vxhand")
    b.sh(f"ip link add vxhand type vxlan id {lan.vni} dstport 4790 local {b.address}")  # another port: no clash
    all_ok(on_all(machines, "up", "-q", "-f", file))
    try:
        device = overlay.vxlan_name("multi", "lan")
        c.sh(f"ip link del {device}")
        drift = json.loads(c.run([NSLAB, "status", "multi", "--json"]).stdout)["labs"][0]["drift"]
        assert drift == [f"network lan: VXLAN device {device} is missing"]
        repaired = c.run([NSLAB, "up", "-f", file])  # (the machine recorded here: c)
        assert repaired.returncode == 0 and "repaired: network lan" in repaired.stdout, repaired.stderr
        c.sh(f"bridge fdb del 00:00:00:00:00:00 dev {device} dst {machines['a'].address}")
        drift = json.loads(c.run([NSLAB, "status", "multi", "--json"]).stdout)["labs"][0]["drift"]
        assert drift == [f"network lan: VXLAN device {device} lost its forwarding entry 00:00:00:00:00:00 dst "
                         f"{machines['a'].address}"]
        all_ok({"c": c.run([NSLAB, "up", "-q", "-f", file])})
        assert _ping(machines, "c1", "a1").returncode == 0
    finally:
        all_ok(on_all(machines, "down", "multi"))
        b.sh("ip link del vxhand")


SIX = """
name: six
machines:
  a: {address: "2001:db8:18::1"}
  b: {address: "2001:db8:18::2"}
networks:
  net: {}
hosts:
  s1: {machine: a, networks: [net]}
  s2: {machine: b, networks: [net]}
"""


def test_two_labs_share_the_port_and_an_ipv6_underlay_takes_70_bytes(machines: Machines, tmp_path: Path) -> None:
    file = lab_file(tmp_path, "multi", LAB)
    six = tmp_path / "six.yaml"
    six.write_text(SIX)
    all_ok(on_all(machines, "up", "-q", "-f", file))
    try:
        pair = [machines["a"], machines["b"]]
        all_ok(on_all(pair, "up", "-q", "-f", str(six)))
        try:
            assert _in(machines, "b1", ["true"]).returncode == 0
            s1 = machines["a"].run([NSLAB, "exec", "six/s1", "--", "ping", "-c1", "-W2", "s2"])
            assert s1.returncode == 0, s1.stdout + s1.stderr
            assert "mtu 1430" in machines["b"].run([NSLAB, "exec", "six/s2", "--", "ip", "link", "show",
                                                     "eth0"]).stdout
            rules = machines["a"].run(["nft", "list", "chain", "inet", "nslab", "input"]).stdout
            assert "udp dport 14789 ip saddr != { 198.18.0.2, 198.18.0.3 } drop" in rules
            assert "udp dport 14789 ip6 saddr != 2001:db8:18::2 drop" in rules  # (nft lists a set of one so)
            assert _ping(machines, "a1", "c4").returncode == 0  # the first lab still works beside it
        finally:
            all_ok(on_all(pair, "down", "six"))
    finally:
        all_ok(on_all(machines, "down", "multi"))
    for m in machines:
        assert left(m) == [], m.name


def test_a_host_added_on_another_machine_changes_forwarding_entries_only(machines: Machines, tmp_path: Path
                                                                          ) -> None:
    from nslab.core import overlay

    file = lab_file(tmp_path, "multi", LAB)
    a, c = machines["a"], machines["c"]
    device = overlay.vxlan_name("multi", "lan")
    all_ok(on_all(machines, "up", "-q", "-f", file))
    try:
        index = {m: _index(machines[m], device) for m in "ab"}
        assert all(index.values()), index
        more = LAB.replace("  c4: {machine: c,", "  c9: {machine: c, networks: [lan]}\n  c4: {machine: c,")
        Path(file).write_text(more)
        all_ok({"c": c.run([NSLAB, "up", "-q", "-f", file, "--machine", "c"])})
        pinging = subprocess.Popen(a.argv([NSLAB, "exec", "multi/a1", "--", "ping", "-c", "80", "-i", "0.05", "b1"]),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        all_ok(on_all([machines["a"], machines["b"]], "up", "-q", "-f", file))
        out, err = pinging.communicate(timeout=60)
        assert " 0% packet loss" in out, out + err  # the a1 -> b1 traffic never stopped
        assert {m: _index(machines[m], device) for m in "ab"} == index  # the VXLAN devices were not made again
        assert _ping(machines, "a1", "c9").returncode == 0 and _ping(machines, "b1", "c9").returncode == 0
    finally:
        all_ok(on_all(machines, "down", "multi"))
    for m in machines:
        assert left(m) == [], m.name


def _index(machine: Machine, device: str) -> str:
    """The interface index of ``device`` on ``machine`` ("" if it has none)."""
    return machine.run(["ip", "-o", "link", "show", device]).stdout.split(":")[0]


#: Five VXLAN packets of VNI argv[3] to argv[1]:argv[2], each a broadcast Ethernet frame from MAC argv[4] (local
#: experimental type): the bridge behind the VXLAN device learns that MAC if one gets through.
SEND_VXLAN = """
import socket, sys
frame = b"\\xff" * 6 + bytes.fromhex(sys.argv[4].replace(":", "")) + b"\\x88\\xb5" + bytes(46)
head = b"\\x08\\x00\\x00\\x00" + int(sys.argv[3]).to_bytes(3, "big") + b"\\x00"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    s.sendto(head + frame, (sys.argv[1], int(sys.argv[2])))
"""


def _learned(machine: Machine, bridge: str) -> str:
    return machine.run(["bridge", "fdb", "show", "br", bridge]).stdout


TWO = """
name: two
machines:
  a: {address: 198.18.0.1}
  b: {address: 198.18.0.2}
networks:
  net: {subnet: 10.201.7.0/24}
hosts:
  t1: {machine: a, networks: [net]}
  t2: {machine: b, networks: [net]}
"""


def test_the_overlay_port_takes_vxlan_only_from_the_lab_s_machines(machines: Machines, tmp_path: Path) -> None:
    from nslab.core import load

    file, two = lab_file(tmp_path, "multi", LAB), tmp_path / "two.yaml"
    two.write_text(TWO)
    a, b, c = machines["a"], machines["b"], machines["c"]
    lan = load.resolved(load.from_text(LAB), None).networks["lan"]
    net = load.resolved(load.from_text(TWO), None).networks["net"]
    all_ok(on_all(machines, "up", "-q", "-f", file))
    try:
        all_ok(on_all([a, b], "up", "-q", "-f", str(two)))
        try:
            send = [sys.executable, "-c", SEND_VXLAN, a.address, "14789"]
            subprocess.run([*send, str(lan.vni), "02:fe:ed:00:00:01"], check=True)  # from the throwaway host
            assert b.run([*send, str(lan.vni), "02:fe:ed:00:00:02"]).returncode == 0  # from machine b
            # c is a machine of lab multi, not of lab two: two's VNI from c is dropped although the port is shared
            assert c.run([*send, str(net.vni), "02:fe:ed:00:00:03"]).returncode == 0
            assert b.run([*send, str(net.vni), "02:fe:ed:00:00:04"]).returncode == 0
            time.sleep(0.3)
            learned, learned_two = _learned(a, lan.bridge), _learned(a, net.bridge)
            assert "02:fe:ed:00:00:02" in learned, learned  # b's reached lan's bridge on a
            assert "02:fe:ed:00:00:01" not in learned  # the others were dropped before VXLAN saw them
            assert "02:fe:ed:00:00:04" in learned_two and "02:fe:ed:00:00:03" not in learned_two, learned_two
        finally:
            all_ok(on_all([a, b], "down", "two"))
    finally:
        all_ok(on_all(machines, "down", "multi"))
