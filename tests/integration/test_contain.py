"""Issue 23: what a host runs, contained (user, capabilities, read-only filesystem, private /tmp and PIDs), and
``nslab run`` with the same options. Real kernel, throwaway hosts; every check is made on the service's own
process (``/proc/PID/status``, ``/proc/PID/ns/*``, ``/proc/PID/mountinfo``), never through ``nslab exec``."""

from __future__ import annotations

import os
import re

from labs import SERVICES_ENV as ENV
from labs import lab_status, wait_for
from labs import nslab as run_nslab


def nslab(*args: str, check: bool = True):
    return run_nslab(*args, check=check, env=ENV)


def services(name: str) -> dict[str, dict]:
    return {s["id"]: s for s in lab_status(name, env=ENV)["hostsetup"]["services"]}


def running(name: str, *ids: str) -> dict[str, dict]:
    """The services ``ids`` once each runs with a pid."""
    return wait_for(lambda: (found := services(name)) and all(
        found[i]["state"] == "running" and found[i]["pid"] for i in ids) and found)


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as fh:
        return dict(line.rstrip("\n").split(":\t", 1) for line in fh if ":\t" in line)


def inode(path: str) -> int:
    return os.stat(path).st_ino


def mounts(pid: int) -> dict[str, tuple[str, str]]:
    """mount point -> (its per-mount options, its filesystem type) as the process sees them (the last mount)."""
    out = {}
    with open(f"/proc/{pid}/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            out[fields[4]] = (fields[5], fields[fields.index("-") + 1])
    return out


def _in_namespace(pid: str, other: int) -> bool:
    """Whether process ``pid`` is in the PID namespace of process ``other``."""
    try:
        return inode(f"/proc/{pid}/ns/pid") == inode(f"/proc/{other}/ns/pid")
    except OSError:
        return False


def log(name: str, host: str, n: int) -> str:
    with open(f"/run/nslab/{name}/logs/{host}.{n}.log") as fh:
        return fh.read()


PROBE = ("ip link add nslabx0 type dummy; echo link=$?; echo x > /etc/nslab-contain-x; echo etc=$?; "
         "echo x > /tmp/nslab-contain-x && echo tmp=$?; echo ps=$(ps -e -o pid= | tr -s ' \\n' ' '); "
         "echo uid=$(id -u); exec sleep 600")
CONTAINED = f"""\
name: ct
networks:
  front: {{}}
hosts:
  app:
    networks: [front]
    run:
      - exec sleep 601
      - "{PROBE}"
    user: nobody
    cap_drop: [ALL]
    read_only: true
    private_tmp: true
    pid: private
  plain:
    networks: [front]
    run: exec sleep 602
"""


def test_a_contained_service_is_nobody_without_capabilities_in_a_read_only_filesystem_and_its_own_pids(lab):
    name = lab(CONTAINED)
    found = running(name, "app.1", "app.2", "plain")
    probe = wait_for(lambda: "\nuid=" in (text := log(name, "app", 2)) and text)
    pid, sleeper, plain = found["app.2"]["pid"], found["app.1"]["pid"], found["plain"]["pid"]
    # Its own process: nobody, no capability at all (not even in its bounding set), no new privileges.
    status = proc_status(pid)
    assert status["Uid"].split() == ["65534"] * 4 and status["Gid"].split() == ["65534"] * 4
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == status["CapAmb"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"
    assert "\nuid=65534\n" in probe
    # ... in its host's network, in a PID namespace of the host's own (shared with its other service, not the
    # machine's); inside it is not PID 1 (the host's init is).
    assert inode(f"/proc/{pid}/ns/net") == inode("/run/netns/ct-app")
    assert inode(f"/proc/{pid}/ns/pid") == inode(f"/proc/{sleeper}/ns/pid") != inode("/proc/self/ns/pid")
    assert len(status["NSpid"].split()) == 2 and status["NSpid"].split()[1] != "1"
    inside = {int(p) for p in re.search(r"^ps=(.*)$", probe, re.M)[1].split()}
    assert 1 in inside and len(inside) <= 6 and max(inside) < 20, inside  # init, the two services, ps and its shell
    # The machine's filesystem is read-only for it; its /tmp is the host's own (the other service sees the same),
    # its /run a fresh tmpfs.
    seen = mounts(pid)
    assert seen["/"][0].startswith("ro") and seen["/run"] == (seen["/run"][0], "tmpfs")
    assert seen["/tmp"][0].startswith("rw") and seen["/run"][0].startswith("rw")
    assert re.search(r"link=[1-9]", probe) and "Operation not permitted" in probe
    assert re.search(r"etc=[1-9]", probe) and "Read-only file system" in probe
    assert "tmp=0" in probe
    assert not os.path.exists("/etc/nslab-contain-x") and not os.path.exists("/tmp/nslab-contain-x")
    assert os.path.exists(f"/proc/{sleeper}/root/tmp/nslab-contain-x")
    # The uncontained host's service: root with every capability, the machine's PIDs; status tells them apart.
    assert proc_status(plain)["CapEff"] == proc_status(os.getpid())["CapEff"]
    assert inode(f"/proc/{plain}/ns/pid") == inode("/proc/self/ns/pid")
    assert (found["app.2"]["user"], found["app.2"]["contained"]) == ("nobody", True)
    assert (found["plain"]["user"], found["plain"]["contained"]) == ("root", False)
    assert "nobody (contained)" in nslab("status", name).stdout
    # The host's init: PID 1 of that namespace, a child of the lab's supervisor, named nslab-init.
    init = next(int(p) for p in filter(str.isdigit, os.listdir("/proc")) if p != str(pid) and _in_namespace(p, pid)
                and proc_status(int(p))["NSpid"].split()[-1] == "1")
    assert proc_status(init)["Name"] == "nslab-init"
    assert proc_status(init)["PPid"] == str(lab_status(name, env=ENV)["hostsetup"]["supervisor"]["pid"])
    # down: the private /tmp and the host's init go with the lab
    nslab("down", name)
    assert not os.path.exists(f"/run/nslab/{name}")
    assert not any(os.path.exists(f"/proc/{p}") for p in (pid, sleeper, init))


TWO = """\
name: cu
networks:
  front: {}
hosts:
  a:
    networks: [front]
    run: exec sleep 603
    user: USER
    cap_add: [NET_BIND_SERVICE]
  b:
    networks: [front]
    run: exec sleep 604
    read_only: true
"""


def test_a_changed_user_restarts_that_hosts_services_only_and_the_dry_run_shows_the_commands(lab, tmp_path):
    name = lab(TWO.replace("USER", "nobody"))
    before = running(name, "a", "b")
    a = proc_status(before["a"]["pid"])
    assert a["Uid"].split()[0] == "65534" and a["CapEff"] == a["CapAmb"] == f"{1 << 10:016x}"  # net_bind_service
    assert mounts(before["b"]["pid"])["/"][0].startswith("ro")
    assert proc_status(before["b"]["pid"])["Uid"].split()[0] == "0"
    changed = tmp_path / "nslab.yaml"
    changed.write_text(TWO.replace("USER", "daemon"))
    dry = nslab("up", "-f", str(changed), "--dry-run").stdout
    assert "setpriv --reuid=1 --regid=1" in dry and "--ambient-caps=+net_bind_service" in dry
    assert "--no-new-privs" in dry
    assert "stops a, starts nothing" in dry and "stops nothing, starts a" in dry and "sleep 604" not in dry
    nslab("up", "-f", str(changed))
    after = wait_for(lambda: (found := running(name, "a", "b")) and found["a"]["pid"] != before["a"]["pid"] and found)
    assert after["b"]["pid"] == before["b"]["pid"]
    assert proc_status(after["a"]["pid"])["Uid"].split()[0] == "1"
    assert after["a"]["user"] == "daemon"


def test_bad_user_and_capability_are_file_line_errors_with_the_others(labs):
    path = labs.write("""\
name: cb
hosts:
  a:
    run: sleep 1
    user: nslab-no-such-user
    cap_drop: [NET_ADMIN, FLYING]
    cap_add: [CAP_SYS_TIME]
    networks: [nowhere]
""")
    result = nslab("up", "-f", str(path), check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert any(f"{path}:5: hosts.a.user: no user 'nslab-no-such-user'" in line for line in lines), lines
    assert any(f"{path}:6: hosts.a.cap_drop[1]: unknown capability 'FLYING'" in line for line in lines), lines
    assert any("nowhere" in line for line in lines) and not any("cap_add" in line for line in lines)
    assert not os.path.exists("/run/netns/cb-a")


def test_nslab_run_as_nobody_read_only_without_network(host):
    script = ("ip -o link | cut -d: -f2; echo x > /etc/nslab-run-x; echo etc=$?; echo x > /tmp/nslab-run-x; "
              "echo tmp=$?; cat /proc/self/status; grep -E ' / | /tmp ' /proc/self/mountinfo")
    result = nslab("run", "--network", "none", "--user", "nobody", "--read-only", "--", "sh", "-c", script,
                   check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.split("\n")[0].strip() == "lo" and "eth0" not in out
    assert re.search(r"etc=[1-9]", out) and "Read-only file system" in result.stderr and "tmp=0" in out
    status = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert status["Uid"].split() == ["65534"] * 4 and status["CapEff"] == status["CapBnd"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"
    assert not os.path.exists("/etc/nslab-run-x") and not os.path.exists("/tmp/nslab-run-x")
    assert sorted(os.listdir("/run/netns")) == ["wan"] and [e for e in os.listdir("/run/nslab") if e[0] != "."] == []


def test_nslab_run_in_a_lab_network_with_its_own_pids_and_capabilities(host):
    script = "ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '; echo; grep -E 'Cap|NSpid' /proc/self/status; exit 3"
    result = nslab("run", "--network", "nat", "--pid", "private", "--private-tmp", "--cap-drop", "net_admin",
                   "--cap-drop", "CAP_NET_RAW", "--", "sh", "-c", script, check=False)
    assert result.returncode == 3, result.stderr
    pids = [int(p) for p in result.stdout.split("\n")[0].split()]
    assert 1 in pids and max(pids) < 10
    status = dict(line.split(":\t", 1) for line in result.stdout.splitlines() if ":\t" in line)
    bounding = int(status["CapBnd"], 16)
    assert not bounding & (1 << 12) and not bounding & (1 << 13) and bounding & (1 << 21)  # net_admin, net_raw gone
    assert int(status["NSpid"]) < 10  # (its /proc is its PID namespace's)
    assert sorted(os.listdir("/run/netns")) == ["wan"] and [e for e in os.listdir("/run/nslab") if e[0] != "."] == []
    bad = nslab("run", "--user", "nslab-no-such-user", "--cap-add", "FLYING", "--", "true", check=False)
    assert bad.returncode == 2 and "--user" in bad.stderr and "--cap-add" in bad.stderr
