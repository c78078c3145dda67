"""Issue 5 (targets, exec flags, ls, attach/detach, nslab.enter) and the exec flags of issue 4, on the real
kernel inside a throwaway host. Docker's part is in test_docker.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import nslab as api
from labs import NSLAB, nslab
from nslab import paths
from sandbox import sh

LAB = "name: demo\nnetworks: {front: {subnet: 10.80.1.0/24}}\nhosts: {web1: {networks: [front]}}\n"


def in_new_netns(host, script: str, *unshare_flags: str) -> int:
    """A process in a namespace of its own (what a container is): returns its pid once it is set up."""
    ready = f"/tmp/nslab-ready-{os.getpid()}-{time.monotonic_ns()}"
    proc = host.popen(
        ["unshare", "--net", *unshare_flags, "--", "sh", "-c", f"{script}; touch {ready}; exec sleep 600"]
    )
    for _ in range(200):
        if os.path.exists(ready):
            os.unlink(ready)
            return proc.pid
        time.sleep(0.01)
    raise AssertionError("the namespace process did not start")


def test_pid_and_path_targets(host):
    pid = in_new_netns(host, "ip link set lo up; ip addr add 192.0.2.9/32 dev lo; hostname pidhost", "--uts")
    out = nslab("exec", f"pid:{pid}", "--", "ip", "-j", "addr").stdout
    addresses = {a["local"] for i in json.loads(out) for a in i["addr_info"]}
    assert "192.0.2.9" in addresses and "198.51.100.2" not in addresses
    assert "192.0.2.9" in nslab("exec", f"path:/proc/{pid}/ns/net", "--", "ip", "-br", "addr").stdout
    # --uts enters its hostname namespace; by default the machine's is kept
    assert nslab("exec", "--uts", f"pid:{pid}", "--", "hostname").stdout.strip() == "pidhost"
    assert nslab("exec", f"pid:{pid}", "--uts", "--", "hostname").stdout.strip() == "pidhost"
    assert nslab("exec", f"pid:{pid}", "--", "hostname").stdout.strip() != "pidhost"
    # /sys shows the target's interfaces (ip netns exec semantics)
    assert sorted(nslab("exec", f"pid:{pid}", "--", "ls", "/sys/class/net").stdout.split()) == ["lo"]
    # a bind mount of its nsfs file is a target too, and keeps the namespace after the process is gone
    keep = Path("/run/netns/kept")  # a tmpfs of the throwaway host
    keep.touch()
    sh(f"mount --bind /proc/{pid}/ns/net {keep}")
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)
    assert "192.0.2.9" in nslab("exec", f"path:{keep}", "--", "ip", "-br", "addr").stdout
    assert "192.0.2.9" in nslab("exec", "netns:kept", "--", "ip", "-br", "addr").stdout
    sh(f"umount {keep} && rm {keep}")


def test_netns_target_uses_etc_netns_files(host):
    sh("ip netns add plain && mkdir -p /etc/netns/plain && echo '192.0.2.77 magic' > /etc/netns/plain/hosts")
    assert "192.0.2.77 magic" in nslab("exec", "netns:plain", "--", "cat", "/etc/hosts").stdout
    assert "magic" not in Path("/etc/hosts").read_text()
    sh("ip netns del plain")


def test_exec_flags_env_workdir_user_detach_status(host, tmp_path):
    sh("ip netns add box && ip -n box link set lo up")
    out = nslab("exec", "netns:box", "-e", "A=1", "--env", "B=two", "--", "sh", "-c", 'echo "$A $B"').stdout
    assert out == "1 two\n"
    assert nslab("exec", "netns:box", "--workdir", str(tmp_path), "--", "pwd").stdout.strip() == str(tmp_path)
    assert nslab("exec", "netns:box", "--user", "nobody", "--", "id", "-u").stdout.strip() == "65534"
    assert nslab("exec", "netns:box", "--", "sh", "-c", "exit 9", check=False).returncode == 9
    assert nslab("exec", "netns:box", "--", "cat", input="piped\n").stdout == "piped\n"
    # without -- the command starts at the first word that is not an option of ours
    assert "lo" in nslab("exec", "netns:box", "ip", "-br", "link").stdout
    # --detach: prints the pid; the command keeps running in the namespace
    pid = int(nslab("exec", "--detach", "netns:box", "--", "sleep", "600").stdout)
    try:
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/run/netns/box").st_ino
    finally:
        os.kill(pid, signal.SIGKILL)
    sh("ip netns del box")


def test_ctrl_c_reaches_the_command(host):
    sh("ip netns add box")
    proc = subprocess.Popen([NSLAB, "exec", "netns:box", "--", "sleep", "600"], start_new_session=True)
    for _ in range(200):  # exec replaced nslab: the pid becomes sleep
        try:
            if Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep":
                break
        except FileNotFoundError:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=5) == -signal.SIGINT
    sh("ip netns del box")


def test_lab_host_enters_its_hostname_namespace(host, tmp_path):
    lab_file = tmp_path / "nslab.yaml"
    lab_file.write_text(LAB)
    nslab("up", "-f", str(lab_file))
    try:
        uts = paths.uts_path("demo", "web1")
        if not os.path.exists(uts):  # made by the hostsetup feature; make it here the same way if it is not yet
            os.makedirs(os.path.dirname(uts), exist_ok=True)
            Path(uts).touch()
            sh(f"unshare --uts={uts} hostname web1")
        assert nslab("exec", "web1", "hostname").stdout.strip() == "web1"
        assert nslab("exec", "demo/web1", "--", "hostname").stdout.strip() == "web1"
        assert "10.80.1.2/24" in nslab("exec", "web1", "--", "ip", "-br", "addr", "show", "eth0").stdout
        detach = nslab("detach", "demo-web1", check=False)
        assert detach.returncode == 2 and "nslab down demo" in detach.stderr
    finally:
        nslab("down", "demo")


@pytest.mark.parametrize(
    "target, words",
    [
        ("pid:999999999", "no process with pid 999999999"),
        ("pid:abc", "not a process id"),
        ("path:/etc/hostname", "is not a namespace file"),
        ("path:/proc/self/ns/uts", "is a uts namespace, not a net namespace"),
        ("path:/nonexistent/ns", "does not exist"),
        ("netns:nosuch", "no named network namespace 'nosuch'"),
        ("bogus:x", "unknown target kind 'bogus:'"),
        ("nosuchhost", "no lab that is up has a host 'nosuchhost'"),
    ],
)
def test_bad_targets_give_one_line_and_exit_2(host, target, words):
    result = nslab("exec", target, "--", "true", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_a_pid_that_exits_gives_one_line(host):
    proc = subprocess.Popen(["true"])
    proc.wait()
    result = nslab("exec", f"pid:{proc.pid}", "--", "true", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "exited" in result.stderr or "no process" in result.stderr


def test_ls_lists_every_namespace_once_and_creates_nothing(host):
    sh("ip netns add named1 && ip -n named1 addr add 192.0.2.1/32 dev lo")
    pid = in_new_netns(host, "ip link set lo up; ip addr add 192.0.2.2/32 dev lo")
    kept = Path("/run/nslab-kept")
    kept.touch()
    orphan = in_new_netns(host, "ip addr add 192.0.2.3/32 dev lo")
    sh(f"mount --bind /proc/{orphan}/ns/net {kept}")
    os.kill(orphan, signal.SIGKILL)
    try:
        netns_before = sorted(os.listdir("/run/netns"))
        doc = json.loads(nslab("ls", "--json").stdout)
        spaces = doc["namespaces"]
        inodes = [ns["inode"] for ns in spaces]
        assert len(inodes) == len(set(inodes))
        (machine,) = [ns for ns in spaces if ns["machine"]]
        assert machine["inode"] == host.net_ns_inode
        assert any("198.51.100.2/24" in i["addresses"] for i in machine["interfaces"])
        by_name = {n: ns for ns in spaces for n in ns["names"]}
        assert {"wan", "named1"} <= set(by_name)
        assert "192.0.2.1/32" in [a for i in by_name["named1"]["interfaces"] for a in i["addresses"]]
        (proc_ns,) = [ns for ns in spaces if any(p["pid"] == pid for p in ns["processes"])]
        assert proc_ns["inode"] == os.stat(f"/proc/{pid}/ns/net").st_ino
        (only_mount,) = [ns for ns in spaces if str(kept) in ns["bind_mounts"]]
        assert not only_mount["processes"] and only_mount["inode"] == os.stat(kept).st_ino
        assert sorted(os.listdir("/run/netns")) == netns_before
        assert api.list_namespaces(with_docker=False)
        text = nslab("ls").stdout
        assert "(this machine)" in text and "named1" in text and str(kept) in text
    finally:
        sh(f"umount {kept}; rm -f {kept}; ip netns del named1", check=False)


def test_attach_and_detach(host):
    pid = in_new_netns(host, "ip link set lo up; ip addr add 192.0.2.5/32 dev lo")
    nslab("attach", "mine", f"pid:{pid}")
    assert "mine" in sh("ip netns list").stdout
    assert "192.0.2.5" in sh("ip netns exec mine ip -br addr").stdout
    sh("ip netns add taken")
    clash = nslab("attach", "taken", f"pid:{pid}", check=False)
    assert clash.returncode == 2 and "exists already" in clash.stderr
    assert os.stat("/run/netns/taken").st_ino != os.stat(f"/proc/{pid}/ns/net").st_ino  # not shadowed
    nslab("detach", "mine")
    assert "mine" not in sh("ip netns list").stdout
    assert os.path.exists(f"/proc/{pid}")  # the owner is untouched
    assert "192.0.2.5" in nslab("exec", f"pid:{pid}", "--", "ip", "-br", "addr").stdout
    missing = nslab("detach", "mine", check=False)
    assert missing.returncode == 2
    bad = nslab("attach", "other", "path:/etc/hostname", check=False)
    assert bad.returncode == 2 and not os.path.exists("/run/netns/other")
    sh("ip netns del taken")


def test_enter_switches_only_the_calling_thread(host):
    import threading

    sh("ip netns add apiside")
    home = os.stat("/proc/thread-self/ns/net").st_ino
    seen: list[int] = []
    inside, looked = threading.Event(), threading.Event()

    def other_thread() -> None:  # started before: stays where it was
        inside.wait(5)
        seen.append(os.stat("/proc/thread-self/ns/net").st_ino)
        looked.set()

    t = threading.Thread(target=other_thread)
    t.start()
    with api.enter("netns:apiside") as target:
        assert target.netns_name == "apiside"
        assert os.stat("/proc/thread-self/ns/net").st_ino == os.stat("/run/netns/apiside").st_ino
        inside.set()
        looked.wait(5)
    t.join()
    assert seen == [home]
    assert os.stat("/proc/thread-self/ns/net").st_ino == home
    with pytest.raises(api.TargetError):
        with api.enter("pid:999999999"):
            pass
    sh("ip netns del apiside")


def test_pid_from_forks_into_the_targets_pid_namespace(host):
    proc = host.popen(["unshare", "--pid", "--fork", "--", "sleep", "600"])
    children: list[str] = []
    for _ in range(200):
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if children:
            break
        time.sleep(0.01)
    inner = int(children[0])  # pid 1 of its own PID namespace
    sh("ip netns add box")
    out = nslab("exec", "netns:box", "--pid-from", f"pid:{inner}", "--", "sh", "-c", "echo $$").stdout
    assert 1 < int(out) < 50  # numbered inside the target's PID namespace
    assert (
        nslab("exec", "netns:box", "--pid-from", f"pid:{inner}", "--", "sh", "-c", "exit 3", check=False).returncode
        == 3
    )
    sh("ip netns del box")


def test_ls_output_forms(host):
    sh("ip netns add named2")
    import yaml

    doc = yaml.safe_load(nslab("ls", "-o", "yaml").stdout)

    def names(d: dict) -> list:  # (the processes differ from call to call: each sees itself; and the unnamed
        # namespaces of other processes on the machine, e.g. a parallel test session's, come and go)
        return [(ns["inode"], ns["names"]) for ns in d["namespaces"] if ns["names"]]

    assert names(doc) == names(json.loads(nslab("ls", "-o", "json").stdout))
    assert names(doc) == names(json.loads(nslab("ls", "--json").stdout))
    quiet = nslab("ls", "-q").stdout.splitlines()
    assert any(line.endswith(" named2") and line.startswith("net:[") for line in quiet), quiet
    assert len([line for line in quiet if " " in line]) == len(names(doc))
