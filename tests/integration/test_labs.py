"""Issue 2 end to end through the CLI and the API, on the real kernel inside a throwaway host."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from labfiles import ISSUE_EXAMPLE
from labs import nslab, settled
from nslab import Lab
from sandbox import sh

BASIC = ISSUE_EXAMPLE.replace("  - [web1, db]\n", "")  # one link, with its own subnet


def reaches(host: str, address: str) -> bool:
    return nslab("exec", host, "--", "ping", "-c1", "-W1", address, check=False).returncode == 0


def netns_names() -> list[str]:
    return sorted(os.listdir("/run/netns"))


def ns_inode(name: str) -> int:
    return os.stat(f"/run/netns/{name}").st_ino


def machine_links() -> set[str]:
    """The machine's links once the namespaces that `down` unpinned are dismantled: their host veths (nsv*)
    go with them a little later, asynchronously, as after `ip netns del`. Only called when no lab is up."""

    def names() -> set[str]:
        return {line.split("@")[0] for line in sh("ip -o link show | awk -F': ' '{print $2}'").stdout.split()}

    return settled(names, lambda now: not any(n.startswith("nsv") for n in now))


@pytest.fixture
def lab_file(labs):
    return labs.write(BASIC)


def test_up_exec_status_down(host, lab_file):
    before_links = machine_links()
    out = nslab("up", "-f", str(lab_file)).stdout
    assert "demo-web1" in out and "10.80.1.20/24" in out

    # named namespaces that iproute2 and nsenter can use
    assert {"demo-web1", "demo-web2", "demo-db", "demo-lonely"} <= set(netns_names())
    assert "10.80.1.2/24" in sh("ip netns exec demo-web1 ip -br addr show eth0").stdout
    assert "10.80.1.20/24" in sh("nsenter --net=/run/netns/demo-web2 ip -br addr show eth0").stdout
    assert "UNKNOWN" in sh("ip -n demo-lonely -br link show lo").stdout  # lo is up

    # traffic: same bridge, the machine (gateway), the link, and nothing from the loopback-only host
    assert reaches("web1", "10.80.1.20")
    assert reaches("web1", "10.80.1.1")
    assert sh("ping -c1 -W1 10.80.1.2", check=False).returncode == 0
    assert reaches("web1", "10.90.0.2") and reaches("db", "10.90.0.1")
    assert not reaches("lonely", "10.80.1.1")
    assert "default via 10.80.1.1" in sh("ip -n demo-web1 route").stdout

    # exec passes the exit status, stdin and stdout through
    assert nslab("exec", "web1", "--", "sh", "-c", "exit 7", check=False).returncode == 7
    assert nslab("exec", "demo/web2", "--", "cat", input="hello\n").stdout == "hello\n"

    doc = json.loads(nslab("status", "--json").stdout)
    (lab,) = doc["labs"]
    web2 = next(h for h in lab["hosts"] if h["name"] == "web2")
    assert web2["present"] and {i["name"]: i["addresses"] for i in web2["interfaces"]}["eth0"] == ["10.80.1.20/24"]
    assert any(r["destination"] == "default" and r["gateway"] == "10.80.1.1" for r in web2["routes"])
    assert all(n["present"] for n in lab["networks"])

    assert "lab demo is down" in nslab("down", "demo").stdout
    assert netns_names() == ["wan"]
    assert machine_links() == before_links
    # the lock, and the lab file kept for the next up (core/kept.py): nothing of the lab itself
    assert set(os.listdir("/run/nslab")) <= {".lock", ".cache"}
    assert "was not up" in nslab("down", "demo").stdout  # idempotent


def test_up_twice_changes_nothing_and_an_edit_converges(host, lab_file):
    nslab("up", "-f", str(lab_file))
    inodes = {h: ns_inode(f"demo-{h}") for h in ("web1", "web2", "db", "lonely")}
    assert "nothing to do" in nslab("up", "-f", str(lab_file), "--dry-run").stdout
    nslab("up", "-f", str(lab_file))
    assert {h: ns_inode(f"demo-{h}") for h in inodes} == inodes

    lab_file.write_text(BASIC.replace("  lonely: {}\n", "  cache:\n    networks: [front]\n"))
    dry = nslab("up", "-f", str(lab_file), "--dry-run").stdout
    assert "ip netns del demo-lonely" in dry and "ip netns add demo-cache" in dry
    nslab("up", "-f", str(lab_file))
    assert not os.path.exists("/run/netns/demo-lonely")
    assert {h: ns_inode(f"demo-{h}") for h in ("web1", "web2", "db")} == {
        h: inodes[h] for h in ("web1", "web2", "db")
    }
    assert reaches("cache", "10.80.1.2") and reaches("web1", "10.90.0.2")
    nslab("down", "-f", str(lab_file))


def test_down_works_after_the_file_is_gone_and_with_a_stray_namespace(host, lab_file):
    nslab("up", "-f", str(lab_file))
    lab_file.unlink()
    sh("ip netns del demo-web2")  # someone removed part of it by hand
    nslab("down", "demo")
    assert netns_names() == ["wan"]


def test_bad_input_exits_2_and_touches_nothing(host, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: demo\nhosts:\n  a: {networks: [nope]}\n  b: {colour: red}\n")
    result = nslab("up", "-f", str(bad), check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [  # the schema problem and the reference problem, in one run (issue 13)
        f"nslab: {bad}:3: hosts.a.networks.nope: unknown network 'nope' (networks: none defined)",
        f"nslab: {bad}:4: hosts.b.colour: unknown key 'colour'",
    ]
    assert "Traceback" not in result.stderr
    bad.write_text("name: demo\nnetworks:\n  n: {subnet: 198.51.100.0/25}\nhosts:\n  a: {networks: [nope]}\n")
    result = nslab("up", "-f", str(bad), check=False)
    assert result.returncode == 2
    assert f"{bad}:3: networks.n.subnet: subnet 198.51.100.0/25 overlaps 198.51.100.0/24" in result.stderr
    assert f"{bad}:5: hosts.a.networks.nope: unknown network 'nope'" in result.stderr
    assert netns_names() == ["wan"]
    assert nslab("exec", "nosuchhost", "--", "true", check=False).returncode == 2
    assert nslab("up", "-f", str(tmp_path / "missing.yaml"), check=False).returncode == 2


def test_foreign_namespace_is_a_conflict_before_any_change(host, lab_file):
    sh("ip netns add demo-db")  # not ours: up must refuse before changing anything (issue 13), not take it over
    before_links = machine_links()
    result = nslab("up", "-f", str(lab_file), check=False)
    assert result.returncode == 2
    assert "hosts.db: namespace 'demo-db' already exists" in result.stderr and "rolled back" not in result.stderr
    assert netns_names() == ["demo-db", "wan"]
    assert machine_links() == before_links
    assert not os.path.exists("/run/nslab/demo")
    sh("ip netns del demo-db")


def test_two_labs_at_once_and_name_clash_between_files(host, lab_file, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("name: other\nnetworks: {n: {}}\nhosts: {a: {networks: [n]}, web1: {networks: [n]}}\n")
    nslab("up", "-f", str(lab_file))
    nslab("up", "-f", str(other))
    doc = json.loads(nslab("status", "--json").stdout)
    subnets = {n["subnet"] for lab in doc["labs"] for n in lab["networks"]}
    assert len(subnets) == 3  # the automatic subnets of both labs differ
    # web1 exists in both labs: a bare name is ambiguous, LAB/HOST is not
    ambiguous = nslab("exec", "web1", "--", "true", check=False)
    assert ambiguous.returncode == 2 and "several labs" in ambiguous.stderr
    assert nslab("exec", "other/web1", "--", "true").returncode == 0

    clash = tmp_path / "clash.yaml"
    clash.write_text("name: other\nhosts: {x: {}}\n")
    result = nslab("up", "-f", str(clash), check=False)
    assert result.returncode == 2 and "already used by" in result.stderr
    nslab("down", "other")
    nslab("down", "demo")
    assert netns_names() == ["wan"]


def test_python_api_context_manager(host, lab_file):
    with Lab.load(lab_file) as lab:
        result = lab.exec("web1", ["ping", "-c1", "-W1", "10.80.1.20"], capture_output=True, text=True)
        assert result.returncode == 0
        assert lab.exec("db", ["sh", "-c", "exit 3"]).returncode == 3
        status = lab.status()
        assert [h["name"] for h in status["labs"][0]["hosts"]] == ["web1", "web2", "db", "lonely"]
    assert netns_names() == ["wan"]


def test_up_right_after_down_and_a_recreated_host(host, tmp_path):
    # `down` only unpins namespaces (as `ip netns del` does): their host veths disappear when the kernel has
    # dismantled them, which may be after `down` returned. An immediate `up` of the same lab must still work.
    lab_file = tmp_path / "big.yaml"
    hosts = "".join(f"  h{i}:\n    networks: [lan]\n" for i in range(1, 41))
    lab_file.write_text(f"name: again\nnetworks:\n  lan: {{subnet: 10.81.0.0/24}}\nhosts:\n{hosts}")
    for _ in range(3):
        nslab("up", "-f", str(lab_file))
        nslab("down", "again")
    nslab("up", "-f", str(lab_file))
    assert reaches("h1", "10.81.0.41") and reaches("h40", "10.81.0.1")
    # IPv4 hosts: no automatic IPv6 link-local address to flood the bridge with (::1 stays; IPv6 can be set up)
    assert "fe80" not in sh("ip -n again-h1 -6 addr show dev eth0").stdout
    assert "::1/128" in sh("ip -n again-h1 -6 addr show dev lo").stdout
    # nor the machine's end of a host's veth (a bridge port has no address of its own; the bridge keeps its own)
    assert " nsv" not in sh("ip -6 -o addr show").stdout
    sh("ip -n again-h1 -6 addr add fd00:81::1/64 dev eth0")

    # a host whose namespace is recreated by a converging `up` gets its veth back under the same name
    inode = ns_inode("again-h2")
    lab_file.write_text(lab_file.read_text().replace("  h2:\n", "  h2:\n    hostname: two\n"))
    nslab("up", "-f", str(lab_file))
    assert ns_inode("again-h2") != inode
    assert nslab("exec", "h2", "--", "hostname").stdout.strip() == "two"
    assert reaches("h2", "10.81.0.2")

    # a veth left by a namespace that a process keeps alive (no name any more) is taken over, not a failure
    keeper = subprocess.Popen(["ip", "netns", "exec", "again-h3", "sleep", "60"])
    try:
        time.sleep(0.2)
        nslab("down", "again")
        nslab("up", "-f", str(lab_file))
        assert reaches("h3", "10.81.0.1")
    finally:
        keeper.kill()
        keeper.wait()
    nslab("down", "again")
    assert netns_names() == ["wan"]
    assert not any(n.startswith(("nsv", "nsl")) for n in machine_links())


def test_down_stops_what_still_runs_inside(host, lab_file):
    """Processes nslab did not start as services (exec --detach, a shell) are stopped like a container's:
    SIGTERM, then SIGKILL for those that ignore it; otherwise they would keep namespaces and veths alive."""
    nslab("up", "-f", str(lab_file))
    polite = int(nslab("exec", "--detach", "web1", "--", "sleep", "600").stdout)
    stubborn = int(nslab("exec", "--detach", "db", "--", "sh", "-c", "trap '' TERM; sleep 600 & wait").stdout)
    time.sleep(0.2)  # let sh install its trap
    assert os.path.exists(f"/proc/{polite}") and os.path.exists(f"/proc/{stubborn}")
    nslab("down", "demo", env={**os.environ, "NSLAB_STOP_TIMEOUT": "0.5"})
    for pid in (polite, stubborn):  # gone, or a zombie waiting for its parent
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")")[-1].split()[0] == "Z"
    assert netns_names() == ["wan"]
    deadline = time.monotonic() + 10
    while any(n.startswith(("nsv", "nsl")) for n in machine_links()) and time.monotonic() < deadline:
        time.sleep(0.05)  # veths go with their namespaces, when the kernel has dismantled them
    assert not any(n.startswith(("nsv", "nsl")) for n in machine_links())


@pytest.mark.parametrize("name", ["/tmp/x", "../x", "a/b", "UPPER", "x" * 13])
def test_down_refuses_what_is_not_a_lab_name(host, tmp_path, name):
    """A lab's paths derive from its name: `down /some/dir` must not tear down files under that directory."""
    target = tmp_path / "proj"
    (target / "uts").mkdir(parents=True)
    (target / "uts" / "notes.txt").write_text("keep")
    (target / "services.json").write_text("{}")
    result = nslab("down", str(target) if name == "/tmp/x" else name, check=False)
    assert result.returncode == 2 and "is not a lab name" in result.stderr
    assert (target / "uts" / "notes.txt").read_text() == "keep" and (target / "services.json").exists()
    assert nslab("status", name, check=False).returncode == 2


def test_a_foreign_link_with_a_non_utf8_alias_is_no_problem(host, lab_file):
    sh("ip link add zz0 type veth peer name zz1 && ip link set zz0 alias \"$(printf 'caf\\351')\"")
    nslab("up", "-f", str(lab_file))
    assert "web1" in nslab("status").stdout
    nslab("down", "demo")
    assert {"zz0", "zz1"} <= machine_links()
    sh("ip link del zz0")


def test_new_namespaces_get_their_defaults_through_renewed_sysctl_roots(host, monkeypatch):
    # create_namespaces writes each new namespace's IPv6 defaults through a procfs instance of its own, a new
    # one every SYSCTL_ROOT_USES namespaces (kernel dentry chains): every namespace gets them, across renewals
    from nslab.drivers import netlink

    monkeypatch.setattr(netlink, "SYSCTL_ROOT_USES", 3)
    proc_mounts_before = Path("/proc/self/mountinfo").read_text().count(" - proc ")
    names = [f"roots-{i}" for i in range(8)]
    made = netlink.create_namespaces(names, dual_stack=frozenset({"roots-4"}))
    try:
        for name in names:
            read = sh(f"ip netns exec {name} sysctl -n net.ipv6.conf.default.addr_gen_mode "
                      "net.ipv6.conf.default.keep_addr_on_down").stdout.split()
            assert read == (["1", "1"] if name == "roots-4" else ["1", "0"]), name
        proc_mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if " - proc " in line]
        assert len(proc_mounts) == proc_mounts_before  # the procfs instances were mounted nowhere
    finally:
        for ns in made.values():
            ns.close()
            netlink.delete_namespace(ns.name)
