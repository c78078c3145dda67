"""Faults, in throwaway hosts: `up` killed (SIGKILL) or stopped (SIGTERM/SIGHUP) at its first kernel changes,
a damaged or unwritable state, gc's proof of orphanhood, and who may read the state."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import labs
from labs import NSLAB, nslab
from sandbox import sh


def lab_text(name: str = "k", hosts: int = 30) -> str:
    lines = [f"name: {name}", "networks:", "  a: {}", "  b: {internal: true}", "hosts:"]
    for i in range(hosts):
        lines += [f"  h{i}:", f"    networks: [{'a' if i % 2 else 'b'}]"]
    lines += ["  web:", "    networks: [a]", '    publish: ["6000:80"]']
    return "\n".join(lines) + "\n"


def machine() -> dict[str, list[str]]:
    """What a lab can leave: namespaces, nslab links, nft tables, /etc/netns entries, lab state."""
    links = [line.split(":")[1].strip().split("@")[0] for line in sh("ip -o link").stdout.splitlines()]
    return {
        "netns": sorted(os.listdir("/run/netns")),
        "links": sorted(name for name in links if name.startswith(("nsl", "nsv"))),
        "tables": sorted(sh("nft list tables").stdout.split("\n")),
        "etc_netns": sorted(os.listdir("/etc/netns")),
        "state": sorted(e for e in os.listdir("/run/nslab") if not e.startswith(".")),
    }


def settled(timeout: float = 10.0) -> dict[str, list[str]]:
    """The machine once namespaces unpinned by `down` are dismantled (their veths go asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        now = machine()
        if not now["links"] or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Watched closely enough to catch an `up` between two of its kernel changes."""
    return labs.settled(predicate, bool, timeout, interval=0.0005)


def first_bridge() -> bool:
    return "nsl" in Path("/proc/net/dev").read_text()


def first_namespace() -> bool:
    return any(n.startswith("k-") for n in os.listdir("/run/netns"))


def tenth_namespace() -> bool:
    return sum(n.startswith("k-") for n in os.listdir("/run/netns")) >= 10


def first_veth() -> bool:
    return "nsv" in Path("/proc/net/dev").read_text()


MOMENTS = [first_bridge, first_namespace, tenth_namespace, first_veth]


def interrupted_up(tmp_path: Path, moment, sig: int) -> subprocess.Popen[str]:
    path = tmp_path / "lab.yaml"
    path.write_text(lab_text())
    proc = subprocess.Popen([NSLAB, "up", "-f", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert wait_for(moment), f"{moment.__name__} never happened"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc


@pytest.mark.parametrize("moment", MOMENTS, ids=lambda m: m.__name__)
def test_kill_9_during_up_then_down_leaves_nothing(host, tmp_path, moment):
    before = machine()
    interrupted_up(tmp_path, moment, signal.SIGKILL)
    nslab("down", "k")
    assert settled() == before


@pytest.mark.parametrize("moment", [first_bridge, tenth_namespace], ids=lambda m: m.__name__)
def test_kill_9_during_up_then_the_next_up_succeeds(host, tmp_path, moment):
    before = machine()
    interrupted_up(tmp_path, moment, signal.SIGKILL)
    nslab("up", "-f", str(tmp_path / "lab.yaml"))
    assert len([n for n in os.listdir("/run/netns") if n.startswith("k-")]) == 31
    nslab("down", "k")
    assert settled() == before


@pytest.mark.parametrize("moment", MOMENTS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_sigterm_and_sighup_roll_back_like_ctrl_c(host, tmp_path, moment, sig):
    before = machine()
    proc = interrupted_up(tmp_path, moment, sig)
    assert proc.returncode in (128 + sig, 0), proc.stderr  # 0: it had finished already
    if proc.returncode == 0:
        nslab("down", "k")
    assert "Traceback" not in proc.stderr
    assert settled() == before


def test_gc_finishes_what_a_killed_up_left(host, tmp_path):
    before = machine()
    interrupted_up(tmp_path, tenth_namespace, signal.SIGKILL)
    dry = nslab("gc", "--dry-run").stdout
    assert "would remove lab k (its 'nslab up' was killed)" in dry
    assert machine() != before  # the dry run changed nothing
    assert "removed lab k" in nslab("gc").stdout
    assert settled() == before


def test_a_damaged_state_gives_one_line_and_down_still_works(host, tmp_path):
    (tmp_path / "k.yaml").write_text(lab_text(hosts=3))
    (tmp_path / "other.yaml").write_text(lab_text("other", hosts=2).replace('"6000:80"', '"6001:80"'))
    nslab("up", "-f", str(tmp_path / "k.yaml"))
    before_other = machine()
    for garbage in (b"", b'{"version": 1, "lab": {"name": "k"', b'{"lab": []}', b"\xff\xfe\x00garbage"):
        Path("/run/nslab/k/state.json").write_bytes(garbage)
        for args in (["status"], ["status", "k"], ["down", "k", "--help"]):
            result = nslab(*args, check=False)
            assert "Traceback" not in result.stderr, result.stderr
        status = nslab("status", check=False)
        assert status.returncode == 1 and "/run/nslab/k/state.json is damaged" in status.stderr
        assert len([line for line in status.stderr.splitlines() if "damaged" in line]) == 1
    # another lab comes up and goes down undisturbed
    nslab("up", "-f", str(tmp_path / "other.yaml"))
    nslab("down", "other")
    nslab("down", "k")
    after = settled()
    assert after["netns"] == ["wan"] and after["state"] == [] and after["etc_netns"] == []
    assert before_other["netns"] != after["netns"]


def test_a_full_state_directory_fails_cleanly_before_any_change(host, tmp_path):
    (tmp_path / "lab.yaml").write_text(lab_text(hosts=3))
    before = machine()
    sh("mount -o remount,size=4k /run/nslab")
    filler = Path("/run/nslab/filler")
    try:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the tmpfs up
        try:
            while True:
                os.write(fd, b"x" * 512)
        except OSError:
            pass
        finally:
            os.close(fd)
        result = nslab("up", "-f", str(tmp_path / "lab.yaml"), check=False)
    finally:
        filler.unlink()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "No space left" in result.stderr
    assert settled() == before


def test_gc_needs_proof_a_lab_named_like_a_run_is_left_alone(host, tmp_path):
    (tmp_path / "lab.yaml").write_text(lab_text("run-99999", hosts=2).replace('"6000:80"', '"6002:80"'))
    nslab("up", "-f", str(tmp_path / "lab.yaml"))
    try:
        assert "nothing to clean up" in nslab("gc").stdout
        assert "run-99999-h0" in os.listdir("/run/netns")
    finally:
        nslab("down", "run-99999")


def test_state_services_and_logs_are_root_only(host, tmp_path):
    text = "name: priv\nnetworks: {a: {}}\nhosts:\n  h: {networks: [a], run: exec sleep 1000}\n"
    (tmp_path / "lab.yaml").write_text(text)
    nslab("up", "-f", str(tmp_path / "lab.yaml"))
    try:
        lab_dir = Path("/run/nslab/priv")
        assert stat.S_IMODE(lab_dir.stat().st_mode) == 0o700
        for path in (lab_dir / "state.json", lab_dir / "services.json", lab_dir / "logs" / "h.1.log"):
            assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE((lab_dir / "logs").stat().st_mode) == 0o700
        doc = json.loads(nslab("status", "priv", "--json").stdout)
        assert doc["labs"][0]["name"] == "priv"
    finally:
        nslab("down", "priv")


@pytest.mark.parametrize("delay", [0.02, 0.06, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["KILL", "TERM", "INT"])
def test_up_stopped_at_a_timed_point_then_one_down_leaves_nothing(host, tmp_path, delay, sig):
    before = machine()
    path = tmp_path / "lab.yaml"
    path.write_text(lab_text())
    proc = subprocess.Popen([NSLAB, "up", "-f", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    nslab("down", "k")
    assert settled() == before


@pytest.mark.parametrize("moment", ["first_namespace_gone", "half_gone"])
def test_kill_9_during_down_then_down_again_leaves_nothing(host, tmp_path, moment):
    before = machine()
    path = tmp_path / "lab.yaml"
    path.write_text(lab_text())
    nslab("up", "-f", str(path))
    proc = subprocess.Popen([NSLAB, "down", "k"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    want = 30 if moment == "first_namespace_gone" else 15
    assert wait_for(lambda: sum(n.startswith("k-") for n in os.listdir("/run/netns")) <= want)
    proc.kill()
    proc.wait()
    nslab("down", "k")
    assert settled() == before
