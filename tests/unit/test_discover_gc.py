"""Pieces of `nslab ls` and `nslab gc` that need no root: the JSON shape of an interface, where a container's
namespace is opened from, and how gc decides that the owner of a `nslab run` is gone."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess

import pytest

from nslab.drivers import procfs
from nslab.drivers.rtnl import LinkInfo
from nslab.ns import discover
from nslab.tools import throwaway


def test_interfaces_keep_the_ls_json_shape():
    links = [
        LinkInfo(
            2,
            "eth0",
            "veth",
            "",
            0,
            True,
            (ipaddress.ip_interface("10.0.0.2/24"), ipaddress.ip_interface("2001:db8::2/64")),
        ),
        LinkInfo(1, "lo", "", "", 0, False),
    ]
    assert discover._interfaces(links) == [
        {"name": "lo", "index": 1, "up": False, "addresses": []},
        {"name": "eth0", "index": 2, "up": True, "addresses": ["10.0.0.2/24", "2001:db8::2/64"]},
    ]


def test_container_namespace_from_its_pid_else_its_sandbox(tmp_path):
    me = os.getpid()
    own = (os.stat(f"/proc/{me}/ns/net").st_ino, f"/proc/{me}/ns/net")
    assert discover._container_namespace({"State": {"Pid": me}}) == own
    sandbox = tmp_path / "sandbox"
    sandbox.touch()
    found = discover._container_namespace({"State": {"Pid": 0}, "NetworkSettings": {"SandboxKey": str(sandbox)}})
    assert found == (os.stat(sandbox).st_ino, str(sandbox))  # never /proc/0/ns/net (or /proc/None/...)
    assert discover._container_namespace({"State": {}, "NetworkSettings": {"SandboxKey": ""}}) is None


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path))
    return tmp_path


def _owner(state_dir, name: str, owner: object) -> None:
    (state_dir / name).mkdir()
    (state_dir / name / throwaway.OWNER_FILE).write_text(json.dumps(owner))


def test_run_owner_alive(state_dir):
    me, started = os.getpid(), procfs.start_time(os.getpid())
    _owner(state_dir, "run-1a", {"pid": me, "start": started})
    _owner(state_dir, "run-2a", {"pid": me, "start": str(started)})  # as older versions recorded it
    _owner(state_dir, "run-3a", {"pid": me, "start": started + 1})  # the pid was reused
    assert throwaway._run_owner_alive("run-1a") and throwaway._run_owner_alive("run-2a")
    assert not throwaway._run_owner_alive("run-3a")
    assert throwaway._run_owner_alive("demo")  # not a run: never gc's to judge
    # no record, or an unreadable one, is no proof that a run's owner is gone, whatever the name says: a
    # user's lab may well be called run-99999
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert throwaway._run_owner_alive(f"run-{gone.pid}")
    _owner(state_dir, f"run-{gone.pid}b", ["not", "a", "record"])
    assert throwaway._run_owner_alive(f"run-{gone.pid}b")
    _owner(state_dir, f"run-{gone.pid}c", {"pid": gone.pid, "start": None})
    assert not throwaway._run_owner_alive(f"run-{gone.pid}c")
