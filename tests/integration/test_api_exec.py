"""The API's exec (Lab.exec, nslab.lab.exec_host, nsenter.run_in_target): the command runs in the host's
network, hostname and /etc/netns files, with subprocess.run's keywords, and the calling process never moves."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from nslab import Lab, TargetError
from nslab.lab import exec_host
from nslab.ns.nsenter import ExecOptions, run_in_target
from nslab.ns.targets import resolve

LAB = """\
name: api
networks:
  lan:
    subnet: 10.81.0.0/24
hosts:
  a:
    networks: {lan: 10.81.0.10}
  b:
    networks: {lan: 10.81.0.11}
"""


def own_namespaces() -> dict[str, int]:
    return {kind: os.stat(f"/proc/thread-self/ns/{kind}").st_ino for kind in ("net", "mnt", "uts")}


@pytest.fixture
def lab(host, tmp_path):
    path = tmp_path / "nslab.yaml"
    path.write_text(LAB)
    with Lab.load(path) as lab:
        yield lab


def test_runs_inside_the_host_and_the_caller_stays(lab):
    before, threads = own_namespaces(), threading.active_count()
    addr = lab.exec("a", ["ip", "-4", "-o", "addr", "show", "eth0"], capture_output=True, text=True, check=True)
    assert "10.81.0.10/24" in addr.stdout
    assert lab.exec("a", ["hostname"], capture_output=True, text=True).stdout == "a\n"
    assert lab.exec("b", ["cat", "/etc/hostname"], capture_output=True, text=True).returncode == 0
    resolv = lab.exec("a", ["cat", "/etc/resolv.conf"], capture_output=True, text=True).stdout
    assert resolv == open("/etc/netns/api-a/resolv.conf").read()
    assert "b" in lab.exec("a", ["cat", "/etc/hosts"], capture_output=True, text=True).stdout.split()
    # /sys shows the host's interfaces, as after `ip netns exec`
    assert "eth0" in lab.exec("a", ["ls", "/sys/class/net"], capture_output=True, text=True).stdout.split()
    assert lab.exec("a", ["ping", "-c1", "-W1", "10.81.0.11"], capture_output=True).returncode == 0
    assert own_namespaces() == before
    assert threading.active_count() == threads
    assert exec_host("api", "b", ["hostname"], capture_output=True, text=True).stdout == "b\n"


def test_subprocess_run_keywords(lab):
    assert lab.exec("a", ["cat"], input="hello", capture_output=True, text=True).stdout == "hello"
    assert lab.exec("a", ["sh", "-c", "exit 3"]).returncode == 3
    with pytest.raises(subprocess.CalledProcessError) as raised:
        lab.exec("a", ["sh", "-c", "echo out; exit 4"], check=True, capture_output=True, text=True)
    assert raised.value.returncode == 4 and raised.value.stdout == "out\n"
    with pytest.raises(subprocess.TimeoutExpired):
        lab.exec("a", ["sleep", "5"], timeout=0.2)
    with pytest.raises(FileNotFoundError):
        lab.exec("a", ["no-such-command-here"])
    env = lab.exec("a", ["sh", "-c", "echo $X"], env={"PATH": os.environ["PATH"], "X": "y"}, capture_output=True)
    assert env.stdout == b"y\n"
    cwd = lab.exec("a", ["pwd"], cwd="/tmp", stdout=subprocess.PIPE, text=True)
    assert cwd.stdout == "/tmp\n"


def test_exec_options_user_workdir_env(lab):
    target = resolve("api/a")
    options = ExecOptions(user="nobody", workdir="/", env={"GREETING": "hi"})
    result = run_in_target(target, ["sh", "-c", "id -u; pwd; echo $GREETING $USER; hostname"], options,
                           capture_output=True, text=True)
    assert result.stdout.split() == ["65534", "/", "hi", "nobody", "a"]
    with pytest.raises(TargetError, match="no user 'no-such-user'"):
        run_in_target(target, ["true"], ExecOptions(user="no-such-user"))
    assert os.getuid() == 0


def test_exec_after_down_and_unknown_hosts(lab):
    with pytest.raises(TargetError, match="has no host 'zz'"):
        lab.exec("zz", ["true"])
    lab.exec("a", ["true"])
    lab.down()
    with pytest.raises(TargetError, match="no lab 'api' is up"):
        lab.exec("a", ["true"])
    lab.up()
    assert lab.exec("a", ["hostname"], capture_output=True, text=True).stdout == "a\n"


def test_run_semantics_env_and_shell_strings(lab):
    assert lab.exec("a", "echo $((6*7))", shell=True, capture_output=True, text=True).stdout == "42\n"
    empty = lab.exec("a", ["/usr/bin/env"], env={}, capture_output=True, text=True)
    assert empty.stdout == ""  # env={} means an empty environment, as with subprocess.run
    result = lab.exec("a", ["true"])
    assert result.args == ["true"]
