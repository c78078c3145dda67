"""Issue 13, safety and least surprise: detach only removes names attach made; read-only commands and exec
as non-root say why root is needed; run forwards SIGINT/SIGTERM/SIGHUP to CMD in every network mode and
speaks of its options, never of a lab file or down (real kernel, throwaway host)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from labs import NSLAB, nslab
from sandbox import sh


def test_detach_refuses_names_attach_did_not_make(host):
    sh("ip netns add scratch")
    try:
        refused = nslab("detach", "scratch", check=False)
        assert refused.returncode == 2 and "not made by nslab attach" in refused.stderr
        assert "--force" in refused.stderr and "only lo" in refused.stderr
        assert "scratch" in sh("ip netns list").stdout
        forced = nslab("detach", "--force", "scratch")
        assert "removing the name /run/netns/scratch" in forced.stderr
        assert "scratch" not in sh("ip netns list").stdout
    finally:
        sh("ip netns del scratch", check=False)


def test_detach_removes_what_attach_made(host):
    sleeper = subprocess.Popen(["unshare", "-n", "sleep", "60"])
    host.started.append(sleeper)
    time.sleep(0.2)
    try:
        nslab("attach", "mine", f"pid:{sleeper.pid}")
        nslab("detach", "mine")
        assert "mine" not in sh("ip netns list").stdout
    finally:
        sleeper.kill()
        sleeper.wait()


def _as_nobody(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", NSLAB, *args],
                          capture_output=True, text=True)


def test_non_root_messages_say_why(host, tmp_path):
    sh("ip netns add nr")
    try:
        ex = _as_nobody("exec", "netns:nr", "--", "true")
        assert ex.returncode == 1 and "sudo" in ex.stderr and "Traceback" not in ex.stderr
        ls = _as_nobody("ls")  # the names can be seen by anyone (more in tests/integration/test_unprivileged.py)
        assert ls.returncode == 0 and "nr" in ls.stdout.split() and "sudo nslab ls" in ls.stderr
        status = _as_nobody("status")  # no lab up: nothing needs root to say so
        assert status.returncode == 0 and "no labs are up" in status.stdout, status.stderr
    finally:
        sh("ip netns del nr")


@pytest.mark.parametrize("network", ["none", "nat"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_run_forwards_signals_in_every_mode(host, tmp_path, network, sig):
    marker = tmp_path / "got"
    script = f"trap 'echo {sig.name} > {marker}; exit 7' {sig.name[3:]}; echo ready; while :; do sleep 0.1; done"
    proc = subprocess.Popen([NSLAB, "run", "--network", network, "--", "sh", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    proc.wait(timeout=20)
    assert marker.read_text().strip() == sig.name
    assert proc.returncode == 7


def test_run_speaks_of_its_options_not_of_a_lab_file(host):
    bad = nslab("run", "--network", "nat", "-p", "99999:80", "--", "true", check=False)
    assert bad.returncode == 2 and "-p 99999:80" in bad.stderr, bad.stderr
    assert "hosts." not in bad.stderr and "down" not in bad.stderr and "<nslab run" not in bad.stderr
    resolv = nslab("run", "--network", "nat", "--dns", "198.51.100.1", "--", "cat", "/etc/resolv.conf").stdout
    assert "nslab down" not in resolv and "lab file" not in resolv and "removed when the run ends" in resolv
    assert not os.listdir("/run/netns") or os.listdir("/run/netns") == ["wan"]
