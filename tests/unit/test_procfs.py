"""drivers/procfs.py: against the live /proc of the test process, and against a fake /proc tree (odd
command names, zombies, vanished processes, escaped mount points). No root needed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nslab.drivers import procfs

# --- the live /proc ---------------------------------------------------------------------------------


def test_live_process_facts():
    me = os.getpid()
    assert me in procfs.pids() and procfs.exists(me)
    assert procfs.ppid(me) == os.getppid()
    assert procfs.state(me) in ("R", "S")
    assert procfs.cmdline(me) and os.path.basename(procfs.cmdline(me)[0]).startswith("python")
    assert procfs.comm(me) and "\n" not in procfs.comm(me)
    assert procfs.ns_inode(me, "net") == os.stat("/proc/self/ns/net").st_ino
    assert procfs.ns_inode("thread-self", "net") == os.stat("/proc/thread-self/ns/net").st_ino
    assert procfs.ns_path(42, "uts") == "/proc/42/ns/uts"
    started = procfs.start_time(me)
    assert isinstance(started, int) and started > 0
    assert procfs.is_running(me) and procfs.is_running(me, started) and procfs.is_running(me, str(started))
    assert not procfs.is_running(me, started + 1) and not procfs.is_running(None) and not procfs.is_running(0)
    assert me in procfs.ancestors() and os.getppid() in procfs.ancestors() and 1 not in procfs.ancestors()
    assert procfs.describe(me).startswith(f"{me} (")


CHILD = "import sys; print('ready', flush=True); sys.stdin.read()"


def test_live_child_environment_and_zombie():
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "NSLAB_PROCFS_TEST": "yes"},
    )
    try:
        assert child.stdout.readline() == b"ready\n"  # exec is complete: its environ and cmdline are readable
        assert procfs.environ_has(child.pid, "NSLAB_PROCFS_TEST", "yes")
        assert not procfs.environ_has(child.pid, "NSLAB_PROCFS_TEST", "no")
        assert not procfs.environ_has(child.pid, "PROCFS_TEST", "yes")  # a suffix of another variable
        assert procfs.cmdline(child.pid) == [sys.executable, "-c", CHILD]
        assert procfs.ppid(child.pid) == os.getpid()
    finally:
        child.stdin.close()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert procfs.state(child.pid) == "Z" and not procfs.is_running(child.pid)
    assert procfs.cmdline(child.pid) == []
    child.wait()
    child.stdout.close()
    assert procfs.state(child.pid) is None and procfs.cmdline(child.pid) is None
    assert procfs.start_time(child.pid) is None and procfs.ns_inode(child.pid) is None
    assert procfs.describe(child.pid) == f"{child.pid} (?)"
    assert not procfs.environ_has(child.pid, "NSLAB_PROCFS_TEST", "yes")


def test_live_socket_owner():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        inode = os.fstat(sock.fileno()).st_ino
        assert f"socket:[{inode}]" in procfs.fd_links("self")
        assert procfs.socket_owner(inode) == f"process '{procfs.comm(os.getpid())}' (pid {os.getpid()})"
    assert procfs.socket_owner(1) == "a process"


def test_live_mounts():
    points = {m.point: m for m in procfs.mounts()}
    assert "/" in points and points["/proc"].fstype == "proc"


# --- a fake /proc -----------------------------------------------------------------------------------


def _stat_line(pid: int, comm: str, state: str, ppid: int, start: int) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime
    # cstime priority nice threads itrealvalue starttime ...
    rest = [state, str(ppid), *["0"] * 17, str(start), "123", "456"]
    return f"{pid} ({comm}) {' '.join(rest)}\n"


@pytest.fixture
def fake_proc(tmp_path, monkeypatch):
    root = tmp_path / "proc"

    def process(pid, comm="sh", state="S", ppid=1, start=100, cmdline=b"sh\0", environ=b"A=1\0"):
        d = root / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "stat").write_text(_stat_line(pid, comm, state, ppid, start))
        (d / "comm").write_text(comm[:15] + "\n")
        (d / "cmdline").write_bytes(cmdline)
        (d / "environ").write_bytes(environ)
        return d

    root.mkdir()
    (root / "self").mkdir()
    (root / "sys").mkdir()  # not a process
    monkeypatch.setattr(procfs, "PROC", str(root))
    return process


def test_fake_tree(fake_proc):
    fake_proc(1, comm="init")
    fake_proc(40, comm="a (weird) name", ppid=1, start=500, cmdline=b"sleep\0" + b"60\0")
    fake_proc(41, comm="kthread", ppid=2, cmdline=b"")
    fake_proc(42, state="Z", ppid=40, cmdline=b"")
    fake_proc(43, ppid=42, environ=b"XNSLAB_SERVICE=t\0NSLAB_SERVICE=tok\0")
    assert procfs.pids() == [1, 40, 41, 42, 43]
    assert procfs.ppid(40) == 1 and procfs.start_time(40) == 500 and procfs.state(40) == "S"
    assert procfs.comm(40) == "a (weird) name" and procfs.cmdline(40) == ["sleep", "60"]
    assert procfs.describe(40) == "40 (sleep 60)"
    assert procfs.cmdline(41) == [] and procfs.cmdline(99) is None
    assert not procfs.is_running(42) and procfs.is_running(40, 500) and not procfs.is_running(40, 501)
    assert procfs.ancestors(43) == {43, 42, 40}
    assert procfs.environ_has(43, "NSLAB_SERVICE", "tok") and not procfs.environ_has(43, "NSLAB_SERVICE", "t")
    assert procfs.environ_has(43, "XNSLAB_SERVICE", "t")


def test_fake_socket_owner(fake_proc):
    fake_proc(7, comm="nginx")
    holder = fake_proc(8, comm="dnsmasq")
    os.symlink("/dev/null", holder / "fd" / "0")
    os.symlink("socket:[777]", holder / "fd" / "3")
    assert sorted(procfs.fd_links(8)) == ["/dev/null", "socket:[777]"]
    assert procfs.socket_owner(777) == "process 'dnsmasq' (pid 8)"
    assert procfs.socket_owner(778) == "a process"


def test_fake_mountinfo(fake_proc):
    Path(procfs.PROC, "self", "mountinfo").write_text(
        "25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw\n"
        "35 25 0:30 / /sys/fs/cgroup rw shared:9 master:2 - cgroup2 cgroup2 rw\n"
        "91 27 0:4 net:[4026532253] /run/docker/netns/dc79 rw - nsfs nsfs rw\n"
        "93 27 0:4 net:[4026532300] /run/my\\040ns\\134x rw shared:5 - nsfs nsfs rw\n"
        "garbage line\n"
    )
    found = [(m.root, m.point, m.fstype) for m in procfs.mounts()]
    assert found == [
        ("/", "/sys", "sysfs"),
        ("/", "/sys/fs/cgroup", "cgroup2"),
        ("net:[4026532253]", "/run/docker/netns/dc79", "nsfs"),
        ("net:[4026532300]", "/run/my ns\\x", "nsfs"),
    ]


def test_missing_proc(tmp_path, monkeypatch):
    monkeypatch.setattr(procfs, "PROC", str(tmp_path / "nothing"))
    assert procfs.pids() == [] and procfs.mounts() == [] and procfs.fd_links(1) == []
    assert procfs.socket_owner(1) == "a process" and procfs.ancestors(5) == {5}
