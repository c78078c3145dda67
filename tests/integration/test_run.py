"""`nslab run` (a namespace for one command) and `nslab gc`, inside a throwaway host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nslab as api
from labs import NSLAB, nslab, wait_for
from sandbox import WAN_ADDRESS, sh

LAB = "name: demo\nnetworks: {front: {}}\nhosts: {web1: {networks: [front]}, web2: {networks: [front]}}\n"
FETCH = f"import sys, urllib.request; print(urllib.request.urlopen('http://{WAN_ADDRESS}:8080/', timeout=3).status)"


def leftovers() -> dict[str, list[str]]:
    netns = sorted(n for n in os.listdir("/run/netns") if n != "wan")
    deadline = time.monotonic() + 10
    while True:  # with no namespace left, wait for the kernel to dismantle the unpinned ones (their veths go last)
        links = sorted(sh("ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//'").stdout.split())
        if netns or not any(n.startswith("nsv") for n in links) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return {
        "netns": netns,
        "state": sorted(e for e in os.listdir("/run/nslab") if not e.startswith(".")),
        "links": links,
    }


def clean(links: list[str]) -> dict[str, list[str]]:
    return {"netns": [], "state": [], "links": links}


def test_none_gives_loopback_only(host):
    before = leftovers()
    out = nslab("run", "--", "ip", "-j", "addr").stdout
    interfaces = json.loads(out)
    assert [i["ifname"] for i in interfaces] == ["lo"]
    assert "UP" in interfaces[0]["flags"]
    assert nslab("run", "--network", "none", "--", "sh", "-c", "exit 4", check=False).returncode == 4
    assert nslab("run", "--", "ping", "-c1", "-W1", WAN_ADDRESS, check=False).returncode != 0
    assert leftovers() == before
    result = api.run(["ip", "-br", "link"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.split()[0] == "lo" and len(result.stdout.splitlines()) == 1


def test_nat_reaches_the_wan_server_and_leaves_nothing(host):
    server = host.popen(host.in_wan([sys.executable, "-m", "http.server", "8080", "--bind", WAN_ADDRESS]))
    wait_for(lambda: sh(f"ip netns exec wan ss -ltn | grep -q {WAN_ADDRESS}:8080", check=False).returncode == 0)
    before = leftovers()
    out = nslab("run", "--network", "nat", "--", "ip", "-br", "addr").stdout
    assert "eth0" in out and "lo" in out
    assert leftovers() == before
    result = nslab("run", "--network", "nat", "--", sys.executable, "-c", FETCH, check=False)
    assert leftovers() == before
    assert result.returncode == 0 and result.stdout.strip() == "200", result.stderr
    internal = nslab("run", "--network", "internal", "--", sys.executable, "-c", FETCH, check=False)
    assert internal.returncode != 0
    assert leftovers() == before
    api_result = api.run([sys.executable, "-c", FETCH], network="nat", capture_output=True, text=True)
    assert api_result.stdout.strip() == "200"
    assert leftovers() == before
    server.kill()


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_interrupted_run_leaves_nothing(host, how):
    before = leftovers()
    proc = subprocess.Popen(
        [NSLAB, "run", "--network", "nat", "--", "sleep", "600"], start_new_session=True, stderr=subprocess.PIPE
    )
    wait_for(lambda: any(n.startswith("run-") for n in os.listdir("/run/netns")) and _has_child(proc.pid, "sleep"))
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)  # to nslab only: it forwards to the command
    else:
        os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole foreground group
    assert proc.wait(timeout=20) == 128 + (signal.SIGTERM if how == "sigterm" else signal.SIGINT)
    assert leftovers() == before


def test_interrupted_run_stops_the_commands_children_too(host):
    """SIGTERM reaches the command (sh), not what sh started: down stops what is left inside the namespace."""
    before = leftovers()
    proc = subprocess.Popen(
        [NSLAB, "run", "--network", "nat", "--", "sh", "-c", "sleep 600; echo done"],
        start_new_session=True,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: any(n.startswith("run-") for n in os.listdir("/run/netns")) and _has_child(proc.pid, "sh"))
    inside = f"/run/netns/run-{proc.pid}-main"
    wait_for(lambda: any(os.path.basename(os.readlink(f"/proc/{p}/exe")) == "sleep" for p in _pids_in(inside)))
    grandchildren = _pids_in(inside)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert leftovers() == before
    assert grandchildren and not [p for p in grandchildren if _running(p)]


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _pids_in(netns_path: str) -> list[int]:
    try:
        inode = os.stat(netns_path).st_ino
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _has_child(pid: int, comm: str) -> bool:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return any(Path(f"/proc/{c}/comm").read_text().strip() == comm for c in children)
    except FileNotFoundError:
        return False


def test_gc_after_a_killed_run(host):
    before = leftovers()
    proc = subprocess.Popen([NSLAB, "run", "--network", "nat", "--", "sleep", "600"], start_new_session=True)
    wait_for(lambda: _has_child(proc.pid, "sleep"))
    os.killpg(proc.pid, signal.SIGKILL)  # nslab and the command die without cleaning up
    proc.wait()
    assert leftovers() != before
    out = nslab("gc").stdout
    assert f"run-{proc.pid}" in out
    assert leftovers() == before
    assert "nothing to clean up" in nslab("gc").stdout


def test_gc_leaves_live_runs_and_labs_alone(host, tmp_path):
    lab_file = tmp_path / "nslab.yaml"
    lab_file.write_text(LAB)
    nslab("up", "-f", str(lab_file))
    proc = subprocess.Popen([NSLAB, "run", "--network", "nat", "--", "sleep", "600"], start_new_session=True)
    try:
        wait_for(lambda: _has_child(proc.pid, "sleep"))
        assert "nothing to clean up" in nslab("gc").stdout
        assert os.path.exists("/run/netns/demo-web1") and os.path.exists(f"/run/netns/run-{proc.pid}-main")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        nslab("down", "demo")


def test_gc_state_without_namespaces_and_links_without_state(host, tmp_path):
    before = leftovers()
    lab_file = tmp_path / "nslab.yaml"
    lab_file.write_text(LAB)
    # a lab whose namespaces were deleted by hand: its state (and bridge) go
    nslab("up", "-f", str(lab_file))
    sh("ip netns del demo-web1; ip netns del demo-web2")
    assert "removed lab demo (its namespaces are gone)" in nslab("gc").stdout
    assert leftovers() == before
    # a lab whose state was lost: its marked links and namespaces go
    nslab("up", "-f", str(lab_file))
    sh("for f in /run/nslab/demo/uts/*; do umount $f; done; rm -rf /run/nslab/demo", check=False)
    assert "removed lab demo (its links outlived its state)" in nslab("gc").stdout
    assert leftovers() == before


def test_gc_removes_a_veth_whose_unnamed_namespace_a_process_keeps(host, tmp_path):
    before = leftovers()
    lab_file = tmp_path / "nslab.yaml"
    lab_file.write_text(LAB)
    nslab("up", "-f", str(lab_file))
    keeper = subprocess.Popen(["ip", "netns", "exec", "demo-web1", "sleep", "600"])
    try:
        wait_for(lambda: _pids_in("/run/netns/demo-web1"))
        # the name and the state go (by hand), the namespace lives on in `sleep`, and so would its veth
        sh("ip netns del demo-web1; ip netns del demo-web2")
        sh("for f in /run/nslab/demo/uts/*; do umount $f; done; umount /run/nslab/demo/uts; rm -rf /run/nslab/demo",
           check=False)
        assert "removed lab demo (its links outlived its state)" in nslab("gc").stdout
        assert leftovers() == before
        assert "nothing to clean up" in nslab("gc").stdout
    finally:
        keeper.kill()
        keeper.wait()
