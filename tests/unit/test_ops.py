"""Issue 24 items 5, 7, 8 without the kernel: ``resources:`` as written and as the supervisor and Docker get
them; the events file written and followed; the services' config of a limited host."""

from __future__ import annotations

import os

import pytest

from nslab import paths
from nslab.core import events, load
from nslab.core.features import limits, services
from nslab.errors import SpecError
from nslab.model import Resources

LAB = """\
name: ops
networks: {n: {}}
hosts:
  a: {networks: [n], run: exec sleep 100, resources: {cpus: 0.5, memory: 64M, pids: 200}}
  b: {networks: [n], run: exec sleep 100}
"""


def test_resources_are_resolved_and_given_to_the_supervisor_and_docker():
    checked = load.validate(load.from_text(LAB), None)
    assert checked.problems == []
    a = checked.lab.hosts["a"]
    assert a.resources == Resources(cpus=0.5, memory=64 << 20, pids=200)
    config = {s["host"]: s for s in services.desired_services(checked.lab)}
    assert config["a"]["resources"] == {"cpus": 0.5, "memory": 64 << 20, "pids": 200}
    assert "resources" not in config["b"]  # a lab without limits keeps its config as it was
    assert limits.docker_host_config(a.resources) == {"NanoCpus": 500_000_000, "Memory": 64 << 20, "PidsLimit": 200}
    assert limits.commands(config["a"]["resources"], "/cg") == [
        "echo '50000 100000' > /cg/cpu.max", f"echo {64 << 20} > /cg/memory.max", "echo 200 > /cg/pids.max"]


def test_bad_resources_are_problems_at_their_line():
    text = LAB.replace("cpus: 0.5, memory: 64M", "cpus: 0, memory: 12parsecs")
    lines = SpecError(load.validate(load.from_text(text), None).problems).lines()
    assert any("<string>:4: hosts.a.resources.cpus" in line for line in lines), lines
    assert any("<string>:4: hosts.a.resources.memory" in line for line in lines), lines


def test_events_are_appended_and_followed_from_now_on():
    os.makedirs(paths.lab_dir("ops"))
    events.emit("ops", "service-start", "a", service="a", pid=1)  # before the follower: not shown
    follower = events.Follower("ops")
    try:
        events.emit("ops", "link-down", "a", interface="eth0")
        got = follower.wait(1.0)
        assert [(e["type"], e["host"], e["interface"]) for e in got] == [("link-down", "a", "eth0")]
        assert got[0]["time"].endswith("Z") and got[0]["lab"] == "ops"
        assert events.line(got[0]).endswith(" ops/a link-down interface=eth0")
        # The lab goes down and comes up again: its new file is read from its start.
        os.unlink(paths.events_file("ops"))
        os.rmdir(paths.lab_dir("ops"))
        os.makedirs(paths.lab_dir("ops"))
        events.emit("ops", "service-exit", "b", service="b", exit_code=3, oom_killed=False)
        assert [e["type"] for e in follower.wait(1.0)] == ["service-exit"]
    finally:
        follower.close()
    with pytest.raises(ValueError):
        events.emit("ops", "no-such-type")


def test_an_event_without_a_lab_directory_is_dropped():
    events.emit("gone", "drift", text="x")  # no exception, nothing made
    assert not os.path.exists(paths.lab_dir("gone"))
