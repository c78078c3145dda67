"""Issue 11 on the real kernel, inside throwaway hosts: `nslab check`'s matrix with real traffic (ICMP, TCP,
UDP), its exit codes, and the repro of the issue (a bridge port put down by hand -> check exits 1, `up`
repairs it, check exits 0 again)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from labfiles import CHECK_HOSTS, CHECK_LAB, CHECK_REACH
from labs import nslab
from sandbox import WAN, WAN_ADDRESS, sh


def matrix(*args: str) -> tuple[int, dict[tuple[str, str], dict]]:
    # a cell is blocked when nothing answers within the timeout: give a busy machine (the whole suite on
    # 2 CPUs) time enough that only a real block is taken for one
    r = nslab("check", "chk", "--json", "--timeout", "3", *args, check=False)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, {(c["source"], c["target"]): c for c in json.loads(r.stdout)["cells"]}


def port_of(host_name: str, iface: int = 0) -> str:
    state = json.loads(Path("/run/nslab/chk/state.json").read_text())
    return state["lab"]["hosts"][host_name]["interfaces"][iface]["host_veth"]


@pytest.fixture
def lab(labs):
    return labs.up(CHECK_LAB)


def test_matrix_matches_the_policy_with_real_traffic(lab):
    code, cells = matrix()
    assert set(cells) == {(a, b) for a in CHECK_HOSTS for b in [*CHECK_HOSTS, "outside"]}
    for (src, dst), cell in cells.items():
        want = src == dst or (src, dst) in CHECK_REACH
        assert cell["expected"] == want, (src, dst)
        assert cell["reachable"] == want, (src, dst, cell)
    assert cells[("web1", "outside")]["address"] == WAN_ADDRESS
    assert cells[("web1", "db")]["address"] == cells[("web1", "db")]["address"]  # the link's end
    assert code == 0
    plain = nslab("check", "chk", "--timeout", "3").stdout
    assert "web1" in plain and "!" not in plain and "42/42 cells as the lab implies" in plain
    # the verdicts agree with ping itself
    db_link = cells[("web1", "db")]["address"]
    assert sh(f"ip netns exec chk-web1 ping -c1 -W1 {db_link}", check=False).returncode == 0
    vault = cells[("web1", "vault")]["address"]
    assert sh(f"ip netns exec chk-web1 ping -c1 -W1 {vault}", check=False).returncode != 0


def test_tcp_and_udp_ports(lab, host):
    # A TCP listener and a UDP echo on db; web2 (other network) must not get there, web1 (link) must.
    server = ("import socket,sys\nt=socket.socket();t.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
              "t.bind(('0.0.0.0',7000));t.listen(64)\nu=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
              "u.bind(('0.0.0.0',7000));print('ready',flush=True)\n"
              "while True:\n d,p=u.recvfrom(2048);u.sendto(d,p)\n")
    proc = host.popen(["ip", "netns", "exec", "chk-db", "python3", "-c", server], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    code, cells = matrix("--port", "7000", "--from", "web1")
    assert {k[0] for k in cells} == {"web1"}
    assert cells[("web1", "db")]["result"] == "open"
    assert cells[("web1", "web2")]["result"] == "refused"  # the network delivers; nothing listens
    assert cells[("web1", "vault")]["result"] == "timeout"
    assert code == 0
    code, cells = matrix("--port", "7000/udp", "--from", "web1")
    assert cells[("web1", "db")]["result"] == "open"
    assert cells[("web1", "web2")]["result"] == "refused"  # ICMP port unreachable
    assert not cells[("web1", "vault")]["reachable"]
    _code, cells = matrix("--port", "7000/udp", "--from", "web2")
    assert cells[("web2", "db")]["result"] == "timeout"  # isolation drops it: silence
    proc.terminate()
    proc.wait()


def test_bad_input_exits_2(lab):
    assert nslab("check", "chk", "--port", "http", check=False).returncode == 2
    assert nslab("check", "chk", "--from", "nobody", check=False).returncode == 2
    assert nslab("check", "nolab", check=False).returncode == 2


def test_port_down_by_hand_fails_check_then_up_repairs(lab):
    port = port_of("web2")
    sh(f"ip link set {port} down")
    code, cells = matrix()
    assert code == 1
    assert not cells[("web1", "web2")]["reachable"] and cells[("web1", "web2")]["expected"]
    assert not cells[("web2", "outside")]["reachable"]
    status = nslab("status", "chk", check=False)
    assert status.returncode == 1 and f"bridge port {port} (eth0) is down" in status.stdout
    dry = nslab("up", "--dry-run", "-f", str(lab)).stdout.splitlines()
    assert dry == [f"# repairs drift: host web2: bridge port {port} (eth0) is down", f"ip link set {port} up"]
    out = nslab("up", "-f", str(lab)).stdout
    assert "already up to date" not in out and f"repaired: host web2: bridge port {port} (eth0) is down" in out
    code, _cells = matrix()
    assert code == 0
    assert nslab("status", "chk").returncode == 0
    assert "already up to date" in nslab("up", "-f", str(lab)).stdout


def test_outside_is_only_the_uplink_gateway(lab):
    _code, cells = matrix()
    outside = {c["address"] for (_s, t), c in cells.items() if t == "outside"}
    assert outside == {WAN_ADDRESS}
    assert sh(f"ip netns exec {WAN} true").returncode == 0


def test_python_api(lab):
    from nslab.lab import Lab

    api = Lab.load(lab)
    assert api.link("web2", "eth0", up=False) == ["web2:eth0"]
    matrix = api.check()
    assert matrix.ok and not matrix.cell("web1", "web2").reachable
    assert api.link("web2") == ["web2:eth0"]
    matrix = api.check(port="9/udp", source="web1", timeout=3.0)  # a neighbour just back may need ARP again
    assert matrix.ok and matrix.cell("web1", "web2").result == "refused"
