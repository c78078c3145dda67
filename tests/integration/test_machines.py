"""The several-machines harness (nslab.tools.sandbox.Machines): each machine has its own namespaces and private
directories, the machines reach each other over the underlay, only ``a`` reaches ``wan``, and stopping them
kills what ran in them."""

from __future__ import annotations

import os

import pytest

from labs import wait_for
from nslab.tools.sandbox import WAN_ADDRESS, Machines


@pytest.fixture
def machines(host):
    group = Machines(host).start()
    try:
        yield group
    finally:
        group.stop()


def test_machines_are_apart_and_joined(machines: Machines) -> None:
    a, b, c = machines["a"], machines["b"], machines["c"]
    assert {m.run(["hostname"]).stdout.strip() for m in machines} == {"a", "b", "c"}
    b.sh("ip netns add only-on-b")
    assert os.listdir(b.path("/run/netns")) == ["only-on-b"]
    assert os.listdir(a.path("/run/netns")) == []
    assert "only-on-b" not in os.listdir("/run/netns")
    for m in (a, c):
        assert m.run(["ping", "-c1", "-W2", b.address]).returncode == 0
        assert m.run(["ping", "-6", "-c1", "-W2", b.address6]).returncode == 0
    assert a.run(["ping", "-c1", "-W2", WAN_ADDRESS]).returncode == 0
    assert b.run(["ping", "-c1", "-W1", WAN_ADDRESS]).returncode != 0


def test_stop_kills_what_ran_inside(host) -> None:
    group = Machines(host, names=("a",)).start()
    a = group["a"]
    a.sh("ip netns add h; ip netns exec h sleep 1000 >/dev/null 2>&1 &", check=True)
    sleepers = wait_for(lambda: [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == "sleep 1000"])
    group.stop()
    assert not [p for p in sleepers if _cmdline(p)]  # a process killed but not yet reaped has no command line


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
