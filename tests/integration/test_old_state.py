"""A lab brought up by the release before issue 20 (commit 5369676: state format 1, written by hand) converges and
goes down with today's code (state format 2, from records.py). Real kernel, in a throwaway host.

tests/fixtures/state-5369676.json is the state file that release wrote for tests/fixtures/state-5369676.yaml (two
networks, one internal and one dual-stack, a link, a published port, a service, a sysctl, a route) in a throwaway
host like this one, with /etc/resolv.conf naming the ``wan`` resolver as here. The test brings the same file up
with today's code (the kernel objects of the lab), swaps that record in for today's, and runs ``up`` (which
changes nothing on the machine — the old record reads as the lab's wiring — and records the lab anew in format 2,
with the features' typed parts format 1 lacked), ``status`` and ``down`` (nothing may be left).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from labs import alive
from nslab import linux
from sandbox import WAN_ADDRESS, sh

NSLAB = str(Path(sys.executable).parent / "nslab")
FIXTURES = Path(__file__).parent.parent / "fixtures"
LAB_FILE = FIXTURES / "state-5369676.yaml"
STATE = "/run/nslab/rec/state.json"
#: What identifies the supervisor process the record names (the one today's `up` started, not the one the
#: recording ran): its pid and start time, and the cgroup and tokens named by its random tag.
PROCESS_KEYS = ("pid", "start", "tag", "cgroup")
SERVICE_PROCESS_KEYS = ("token", "cgroup")


def nslab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NSLAB, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200",
                                                                             "NSLAB_STOP_TIMEOUT": "1"})


def old_record() -> dict:
    """The recorded state, with what must name this machine's objects taken from today's (nothing else):
    the lab file's path (the recording's checkout is not this one) and the supervisor's process identity."""
    old = json.loads((FIXTURES / "state-5369676.json").read_text())
    with open(STATE) as fh:
        today = json.load(fh)
    old["lab"]["source"] = str(LAB_FILE)
    old_sup, new_sup = old["services"]["supervisor"], today["services"]["supervisor"]
    old_sup.update({k: new_sup[k] for k in PROCESS_KEYS})
    for old_service, new_service in zip(old_sup["services"], new_sup["services"], strict=True):
        assert old_service["id"] == new_service["id"]
        old_service.update({k: new_service[k] for k in SERVICE_PROCESS_KEYS})
    return old


def test_a_lab_brought_up_by_the_release_before_converges_and_goes_down(host, tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {WAN_ADDRESS}\n")  # as when the fixture was recorded; never the real one
    linux.mount(str(resolv), "/etc/resolv.conf", None, linux.MS_BIND)
    up = nslab("up", "-f", str(LAB_FILE))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        record = old_record()
        with open(STATE, "w") as fh:
            json.dump(record, fh)
        assert "version" in json.loads(Path(STATE).read_text())  # the old format is what is read now

        again = nslab("up", "-f", str(LAB_FILE))
        assert again.returncode == 0 and not again.stderr, again.stdout + again.stderr
        assert "already up to date" in again.stdout, again.stdout  # the old record understood: nothing to redo
        rewritten = json.loads(Path(STATE).read_text())  # format 1 lacked the features' typed parts: recorded anew
        assert rewritten["format"] == 2 and "version" not in rewritten
        for key, old in record.items():  # the features' records as they were (fields added since: defaults)
            if key not in ("version", "lab"):
                new = rewritten[key]
                assert new == old or isinstance(old, dict) and {k: new.get(k) for k in old} == old, key
        status = nslab("status", "rec")
        assert status.returncode == 0 and "no drift" in status.stdout, status.stdout + status.stderr
        assert nslab("exec", "rec/db", "--", "ip", "route", "show", "10.89.1.0/24").stdout.startswith(
            "10.89.1.0/24 via 10.89.2.10")
        setup = json.loads(nslab("status", "rec", "--json").stdout)["labs"][0]["hostsetup"]
        pids = [record["services"]["supervisor"]["pid"], *(s["pid"] for s in setup["services"])]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)  # the supervisor and the service
    finally:
        down = nslab("down", "rec")
    assert down.returncode == 0 and not down.stderr, down.stdout + down.stderr
    assert [line.split()[0] for line in sh("ip netns list").stdout.splitlines()] == ["wan"]
    assert {link["ifname"] for link in json.loads(sh("ip -j link show").stdout)} == {"lo", "eth0"}
    assert "nslab" not in sh("nft list tables").stdout
    assert not os.path.exists("/run/nslab/rec") and not os.listdir("/etc/netns")
    assert not [pid for pid in pids if alive(pid)]
