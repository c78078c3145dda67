"""Rootless labs, the pure parts: subordinate id ranges, the user's paths, and what a rootless lab file is
refused for (core/rootless.py), all before any change."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from nslab import paths
from nslab.core import load
from nslab.daemons.keeper import subordinate


def test_subordinate_range_by_name_or_id(tmp_path):
    ids = tmp_path / "subuid"
    ids.write_text("alice:100000:65536\n1001:200000:1000\nbroken line\nzero:5:0\n")
    assert subordinate("alice", 1000, str(ids)) == (100000, 65536)
    assert subordinate("bob", 1001, str(ids)) == (200000, 1000)
    assert subordinate("zero", 7, str(ids)) is None  # an empty range is no range
    assert subordinate("carol", 1002, str(ids)) is None
    assert subordinate("alice", 1000, str(tmp_path / "missing")) is None


def test_user_state_root_is_the_same_whatever_the_environment(monkeypatch, tmp_path):
    run_user, tmp = tmp_path / "run-user", str(tmp_path / "tmp")
    run_user.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # (a login shell's; cron has none; after su: another's)
    assert paths.user_state_root(1000, str(run_user), tmp) == f"{tmp}/nslab-1000"  # no /run/user/1000
    (run_user / "1000").mkdir()
    os.chown(run_user / "1000", 1001, 1001)
    assert paths.user_state_root(1000, str(run_user), tmp) == f"{tmp}/nslab-1000"  # another user's
    os.chown(run_user / "1000", 1000, 1000)
    assert paths.user_state_root(1000, str(run_user), tmp) == f"{run_user}/1000/nslab"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert paths.user_state_root(1000, str(run_user), tmp) == f"{run_user}/1000/nslab"
    (run_user / "1002").symlink_to(run_user / "1000")
    assert paths.user_state_root(1002, str(run_user), tmp) == f"{tmp}/nslab-1002"  # a symlink is not the user's


def test_a_state_root_that_is_not_the_users_own_directory_is_refused(tmp_path):
    from nslab.daemons.keeper import state_root_ready
    from nslab.errors import EnvironmentProblem

    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(EnvironmentProblem, match="not a directory of yours closed to others"):
        state_root_ready(str(tmp_path / "link"))
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "open").chmod(0o755)
    with pytest.raises(EnvironmentProblem, match="mode 0700"):
        state_root_ready(str(tmp_path / "open"))
    with pytest.raises(EnvironmentProblem, match="cannot make"):
        state_root_ready(str(tmp_path / "missing" / "nslab"))
    state_root_ready(str(tmp_path / "made"))
    assert (tmp_path / "made").stat().st_mode & 0o777 == 0o700


def test_running_is_the_recorded_keeper_only(tmp_path):
    """A stale pid file (the keeper killed, its pid reused by another process of the user, maybe a container's
    in a user namespace of its own): not running."""
    from nslab.daemons.keeper import running

    root = str(tmp_path)
    own_ns = os.stat("/proc/self/ns/user").st_ino
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m", "nslab.daemons.keeper", root])
    try:
        pid_file = tmp_path / ".keeper.pid"
        pid_file.write_text(f"{fake.pid} {own_ns}\n")
        for _ in range(100):  # (until the child has exec'd python)
            if b"nslab.daemons.keeper" in open(f"/proc/{fake.pid}/cmdline", "rb").read():
                break
            time.sleep(0.01)
        assert running(root) == fake.pid
        pid_file.write_text(f"{fake.pid} {own_ns + 1}\n")  # another user namespace was recorded
        assert running(root) is None
        pid_file.write_text(f"{os.getpid()} {own_ns}\n")  # a reused pid: not the keeper's command line
        assert running(root) is None
        pid_file.write_text(f"{fake.pid}\n")  # no namespace recorded
        assert running(root) is None
        assert running(str(tmp_path / "other")) is None  # a keeper of another state root
    finally:
        fake.kill()
        fake.wait()
    pid_file.write_text(f"{fake.pid} {own_ns}\n")  # dead
    assert running(root) is None


def test_root_trusts_only_the_users_own_state_roots(tmp_path):
    """``/run/user/UID/nslab`` or ``/tmp/nslab-UID``, owned by UID, no symlink anywhere: what root's ``ls`` and
    ``gc`` accept (the user could else make root delete or kill elsewhere)."""
    run_user, tmp = tmp_path / "run", tmp_path / "tmp"
    for d in (run_user / "1000" / "nslab", tmp / "nslab-1001", tmp_path / "rootdir"):
        d.mkdir(parents=True)
    for d in (run_user / "1000", run_user / "1000" / "nslab"):
        os.chown(d, 1000, 1000)
    os.chown(tmp / "nslab-1001", 1001, 1001)
    (tmp / "nslab-1002").symlink_to(tmp_path / "rootdir")  # a symlinked state root
    os.chown(tmp / "nslab-1002", 1002, 1002, follow_symlinks=False)
    (tmp / "nslab-1003").mkdir()  # root's, not 1003's
    (run_user / "1004").symlink_to(run_user / "1000")  # a symlink above the state root
    for root in ("run/1000/nslab", "tmp/nslab-1001", "tmp/nslab-1002", "tmp/nslab-1003", "run/1004/nslab"):
        (tmp_path / root / ".keeper.pid").write_text("1 1\n")
    bases = (str(run_user), str(tmp))

    def owner(rel: str) -> int | None:
        return paths.state_root_owner(str(tmp_path / rel), *bases)

    assert owner("run/1000/nslab") == 1000 and owner("tmp/nslab-1001") == 1001
    assert owner("tmp/nslab-1002") is None and owner("tmp/nslab-1003") is None and owner("run/1004/nslab") is None
    assert owner("rootdir") is None and owner("run/1000") is None  # not a state root's name
    assert paths.user_state_roots(*bases) == [f"{run_user}/1000/nslab", f"{tmp}/nslab-1001"]


def test_a_hostile_pid_file_targets_nothing_outside_the_users_namespaces():
    """Root's gc kills only processes of the user (or its subordinate ids) in a user namespace the user owns
    and that is not the machine's, whatever the pid file says."""
    from nslab.daemons.keeper import Proc, UserLabs, victims

    machine, users_ns, others_ns = 4026531837, 4026532001, 4026532002
    procs = [Proc(1, 0, machine, 0), Proc(200, 1000, machine, 0),  # init; the user's login shell
             Proc(300, 1000, users_ns, 1000), Proc(301, 101000, users_ns, 1000),  # the user's lab; a subordinate id
             Proc(302, 2000, users_ns, 1000),  # someone else's process (root setns'd it in)
             Proc(400, 2000, others_ns, 2000), Proc(401, 1000, others_ns, 2000)]  # another user's container
    subids = (100000, 65536)

    def chosen(user_ns: int, keeper: int | None = None) -> set[int]:
        entry = UserLabs("alice", 1000, "/run/user/1000/nslab", keeper, user_ns, [])
        return victims(entry, procs, {machine}, subids)

    assert chosen(users_ns) == {300, 301}
    assert chosen(machine) == set()  # the machine's user namespace: nothing (not init, not the shell)
    assert chosen(machine, keeper=99999) == set()  # and a dead pid adds nothing
    assert chosen(others_ns) == set()  # another user's namespace: nothing, not even the user's process in it
    assert chosen(0) == set()
    from nslab.daemons.keeper import _machine_namespaces, _processes

    own = os.stat("/proc/self/ns/user").st_ino  # (this test's: root's, the machine's)
    assert _processes(own, _machine_namespaces()) == []  # the real scan: the machine's namespace is never looked in


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another uid needs root")
def test_root_removes_a_state_root_as_the_user():
    """The removal runs in a child that became the user: a directory of root's inside the user's state root (or
    wherever a symlink swapped in leads) is not root's to delete on the user's behalf."""
    from nslab.daemons.keeper import _remove_as

    top = tempfile.mkdtemp(prefix="nslab-unit-")
    try:
        os.chmod(top, 0o755)
        root = os.path.join(top, "nslab-65534")
        os.mkdir(root, 0o700)
        with open(os.path.join(root, "state.json"), "w") as fh:
            fh.write("{}")
        os.mkdir(os.path.join(root, "roots"))  # root's, 0755: its files are not the user's to remove
        with open(os.path.join(root, "roots", "precious"), "w") as fh:
            fh.write("x")
        for path in (root, os.path.join(root, "state.json")):
            os.chown(path, 65534, 65534)
        _remove_as(65534, 65534, root)
        assert os.listdir(root) == ["roots"] and os.listdir(os.path.join(root, "roots")) == ["precious"]
    finally:
        shutil.rmtree(top)


LAB = """\
name: r
networks: {n: {}}
hosts:
  a:
    networks: [n]
    publish: ["80:80", "6000:80", "8080"]
    resources: {memory: 64M}
  b:
    networks: [n]
    image: alpine
"""


def _problems(monkeypatch, rootless: bool, port_start: str = "1024") -> list[str]:
    if rootless:
        monkeypatch.setenv("NSLAB_ROOTLESS", "1000")
    else:
        monkeypatch.delenv("NSLAB_ROOTLESS", raising=False)
    monkeypatch.setenv("NSLAB_PORT_START", port_start)
    checked = load.validate(load.from_text(LAB, "nslab.yaml"), None)
    return [str(p) for p in checked.problems]


def test_rootless_refusals_name_each_field(monkeypatch):
    said = "\n".join(_problems(monkeypatch, rootless=True))
    assert "hosts.a.resources" in said and "root's cgroups" in said
    assert "hosts.b.image" in said and "Docker" in said
    assert "hosts.a.publish[0]" in said and "net.ipv4.ip_unprivileged_port_start (1024)" in said
    assert "publish[1]" not in said and "publish[2]" not in said  # 6000 is allowed; a picked port too


def test_the_machines_port_start_is_the_limit(monkeypatch):
    said = "\n".join(_problems(monkeypatch, rootless=True, port_start="7000"))
    assert "hosts.a.publish[1]" in said and "(7000)" in said


def test_the_machines_interfaces_are_refused_by_field(monkeypatch):
    monkeypatch.setenv("NSLAB_ROOTLESS", "1000")
    text = ("name: r\nnetworks: {lan: {external: eth1, subnet: 192.168.7.0/24}}\nhosts:\n  a:\n    networks: [lan]\n"
            "    macvlan: {parent: eth2}\n")
    said = [str(p) for p in load.validate(load.from_text(text, "nslab.yaml"), None).problems]
    assert len(said) == 2, said
    assert "networks.lan.external" in said[0] and "external: eth1" in said[0] and "rootless" in said[0]
    assert "hosts.a.macvlan[0]" in said[1] and "macvlan: on eth2" in said[1] and "rootless" in said[1]


def test_root_is_refused_nothing_of_it(monkeypatch):
    said = "\n".join(_problems(monkeypatch, rootless=False))
    assert "ip_unprivileged_port_start" not in said and "root's cgroups" not in said


# --- the way out: pasta only when new enough (daemons/wayout.py) -------------------------------------------


def test_pasta_version_dates():
    from nslab.daemons.wayout import version_date

    assert version_date("2023_12_04.b86afe3") == (2023, 12, 4)  # an upstream build
    assert version_date("0.0~git20240220.1e6f92b-1") == (2024, 2, 20)  # Debian's, Ubuntu's
    assert version_date("0^20231204.gb86afe3-1.fc39.x86_64") == (2023, 12, 4)  # Fedora's
    assert version_date("unknown version") is None  # Debian 12's passt 0.0~git20230309
    assert version_date("1.2.3") is None


def _tools(tmp_path, pasta: str | None, slirp: bool) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if pasta is not None:  # a fake pasta that only says its version
        (bin_dir / "pasta").write_text(f"#!/bin/sh\necho 'pasta {pasta}'\necho 'Copyright Red Hat'\n")
        (bin_dir / "pasta").chmod(0o755)
    if slirp:
        (bin_dir / "slirp4netns").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "slirp4netns").chmod(0o755)
    return str(bin_dir)


def test_the_way_out_is_pasta_only_when_new_enough(monkeypatch, tmp_path):
    import pytest

    from nslab.daemons.wayout import choose
    from nslab.errors import EnvironmentProblem

    cases = [("unknown version", True, "slirp4netns (pasta unknown version is older than 2023_12_04)"),
             ("0.0~git20230309.7c7625d-1", True, "slirp4netns (pasta 0.0~git20230309.7c7625d-1 is older than "
                                                 "2023_12_04)"),
             ("2023_12_04.b86afe3", True, "pasta"), ("2025_01_21.4f2c8e7", False, "pasta"),
             (None, True, "slirp4netns")]
    for n, (version, slirp, said) in enumerate(cases):
        where = tmp_path / str(n)
        where.mkdir()
        monkeypatch.setenv("PATH", _tools(where, version, slirp))
        way = choose()
        assert way.said() == said, version
        assert way.path.endswith(way.name)
    for n, version in enumerate(("unknown version", None)):
        where = tmp_path / f"none{n}"
        where.mkdir()
        monkeypatch.setenv("PATH", _tools(where, version, False))
        with pytest.raises(EnvironmentProblem, match="install it") as refused:
            choose()
        assert ("older than 2023_12_04" in str(refused.value)) == (version is not None)


def test_relayed_ports(tmp_path):
    """What the keeper relays from the machine: each port's IPv4 side on the address written, to the host's
    IPv4 address, and its IPv6 side (hosts with IPv6) on the machine's IPv6 addresses or ``::1``."""
    import json

    from nslab.daemons.keeper import wanted_relays

    ports = [{"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 6000, "address": "10.1.0.2", "port": 80,
              "address6": "fd00::2"},
             {"proto": "udp", "host_ip": "::1", "host_port": 6100, "address": "10.1.0.2", "port": 53,
              "address6": "fd00::2"},
             {"proto": "tcp", "host_ip": "127.0.0.1", "host_port": 6200, "address": "10.1.0.3", "port": 80}]
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "state.json").write_text(json.dumps({"firewall": {"ports": ports}}))
    assert wanted_relays(str(tmp_path)) == [
        {"listen": "0.0.0.0", "port": 6000, "proto": "tcp", "to": "10.1.0.2", "to_port": 80, "lab": "lab"},
        {"listen": "::", "port": 6000, "proto": "tcp", "to": "fd00::2", "to_port": 80, "lab": "lab"},
        {"listen": "::1", "port": 6100, "proto": "udp", "to": "fd00::2", "to_port": 53, "lab": "lab"},
        {"listen": "127.0.0.1", "port": 6200, "proto": "tcp", "to": "10.1.0.3", "to_port": 80, "lab": "lab"}]
