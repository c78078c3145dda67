"""The Swarm engine's pure parts (nslab.tools.swarm, nslab.tools.image): where each machine's part goes, the
service spec a part and a job get, how the machines' statuses merge, and which distributions the image holds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nslab.drivers.docker import LiveDocker
from nslab.errors import NslabError, UserError
from nslab.tools import image, swarm

LAB = """\
name: sw3
machines:
  a: {address: 198.18.0.1, node: node-a}
  b: {address: 198.18.0.2, labels: {rack: r2, zone: z1}}
placement: spread
hosts:
  ha: {machine: a}
  hx: {}
"""


class CannedDocker(LiveDocker):
    """Answers the few requests the spec needs, and records the rest."""

    def __init__(self) -> None:
        super().__init__("/nonexistent")
        self.asked: list[tuple[str, str]] = []

    def request(self, method: str, path: str, body: Any = None, stream: bool = False,
                upload: tuple[Any, int, str] | None = None) -> tuple[int, Any]:
        self.asked.append((method, path))
        if path.startswith("/networks"):
            return 200, [{"Name": "host", "Id": "hostnet"}]
        return 404, {"message": "no"}


def test_each_machine_is_pinned_by_node_or_labels() -> None:
    lab = swarm.read_lab(LAB, "manager-id")
    assert lab.name == "sw3"
    assert [(p.machine, p.constraints) for p in lab.parts] == [
        ("a", ("node.hostname==node-a",)),
        ("b", ("node.labels.rack==r2", "node.labels.zone==z1")),
    ]
    assert lab.hosts["ha"] == "a" and lab.hosts["hx"] in ("a", "b")  # placed by the spread, as every part places it


def test_a_lab_without_machines_is_one_part_on_the_manager() -> None:
    lab = swarm.read_lab("name: one\nhosts: {h1: {}}\n", "manager-id")
    assert [(p.machine, p.constraints, p.label) for p in lab.parts] == [(None, ("node.id==manager-id",), "local")]


def test_a_machine_that_cannot_be_placed_is_refused() -> None:
    with pytest.raises(UserError, match="machines.b: the swarm engine needs node: or labels:"):
        swarm.read_lab("name: x\nmachines: {a: {address: 198.18.0.1, node: n}, b: {address: 198.18.0.2}}\n", "m")


def test_a_bad_file_is_refused_before_the_swarm_is_asked() -> None:
    with pytest.raises(UserError, match="nowhere"):
        swarm.read_lab("name: x\nmachines: {a: {address: 198.18.0.1, node: n}}\nhosts: {h: {machine: nowhere}}\n", "m")


def test_the_part_service_spec() -> None:
    docker = CannedDocker()
    part = swarm.Part("b", ("node.labels.rack==r2",))
    spec = swarm.Swarm(docker).spec("sw3", part, "sha256:abc", ["nslab", "machine", "run"], "part", ("cid", "cfg"))
    assert spec["Name"] == "nslab-sw3-b"
    assert spec["Labels"] == {"nslab.lab": "sw3", "nslab.machine": "b", "nslab.role": "part"}
    task = spec["TaskTemplate"]
    container = task["ContainerSpec"]
    assert task["Placement"] == {"Constraints": ["node.labels.rack==r2"]}
    assert task["Networks"] == [{"Target": "hostnet"}]
    assert container["CapabilityAdd"] == ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
    assert container["Init"] is True and container["Env"] == []
    binds = {m["Source"]: m.get("BindOptions", {}).get("Propagation") for m in container["Mounts"]}
    assert binds == {"/run/netns": "rshared", "/run/nslab": "rshared", "/etc/netns": None, "/var/lib/nslab": None}
    assert container["Configs"][0]["File"]["Name"] == "/lab.yaml"
    assert container["Configs"][0]["ConfigID"] == "cid"
    assert spec["Mode"] == {"Replicated": {"Replicas": 1}}


def test_a_job_runs_once_and_is_marked_as_a_job() -> None:
    part = swarm.Part("a", ("node.hostname==node-a",))
    spec = swarm.Swarm(CannedDocker()).spec("sw3", part, "img", ["nslab", "status"], "job", None)
    assert spec["Name"].startswith("nslab-sw3-a-job-")
    assert spec["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    assert spec["TaskTemplate"]["ContainerSpec"]["Env"] == ["NSLAB_ENGINE_JOB=1"]
    assert "Configs" not in spec["TaskTemplate"]["ContainerSpec"]


def test_status_merges_the_machines_and_names_each_that_differs_from_the_file(monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    """The expected digest is the manager's, from the config's text: when the first machine to answer is the
    one that differs, it alone is named (not every other)."""
    expected = swarm.read_lab(LAB, "m").digest
    assert len(expected) == 64
    answers = [("a", 0, '{"labs": [{"name": "sw3", "digest": "other"}]}', ""),
               ("b", 0, json.dumps({"labs": [{"name": "sw3", "digest": expected}]}), ""),
               ("c", 1, "", "nslab: no lab 'sw3' is up\n")]
    monkeypatch.setattr(swarm, "on_machines", lambda lab, argv, swarm=None: iter(answers))
    monkeypatch.setattr(swarm, "_lab_parts", lambda _swarm, _lab: (swarm.read_lab(LAB, "m"), "img"))
    doc = swarm.status("sw3", swarm.Swarm(CannedDocker()))
    assert sorted(doc["machines"]) == ["a", "b"]
    assert (doc["digest"], doc["differs"]) == (expected, ["a"])
    assert doc["failed"] == {"c": "nslab: no lab 'sw3' is up"}


class DownDocker(CannedDocker):
    """One part's service, its task ended with the runner's exit status ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    def request(self, method: str, path: str, body: Any = None, stream: bool = False,
                upload: tuple[Any, int, str] | None = None) -> tuple[int, Any]:
        self.asked.append((method, path))
        if path.startswith("/services?"):
            return 200, [{"ID": "s1", "Spec": {"Labels": {"nslab.machine": "b"}}}]
        if path.startswith("/tasks?"):
            return 200, [{"ServiceID": "s1", "CreatedAt": "2", "Status": {"State": "shutdown",
                                                                          "ContainerStatus": {"ExitCode": self.code}}},
                         {"ServiceID": "s1", "CreatedAt": "1", "Status": {"State": "failed",
                                                                          "ContainerStatus": {"ExitCode": 1}}}]
        if path.startswith("/configs?"):
            return 200, [{"ID": "c1"}]
        return 200, {}


def test_down_reads_the_runners_exit_status() -> None:
    ok = DownDocker(0)
    assert swarm.down("sw3", swarm=swarm.Swarm(ok)) == ["b"]
    tasks = [path for _method, path in ok.asked if path.startswith("/tasks")]
    assert tasks and all("service" in path and "s1" in path for path in tasks)  # filtered by the service
    bad = DownDocker(1)
    with pytest.raises(NslabError, match="machine b: its runner's down exited 1"):
        swarm.down("sw3", swarm=swarm.Swarm(bad))
    assert ("DELETE", "/configs/c1") in bad.asked  # the config goes all the same


def test_the_host_network_is_asked_once() -> None:
    docker = CannedDocker()
    engine = swarm.Swarm(docker)
    for machine in ("a", "b"):
        engine.spec("sw3", swarm.Part(machine, ()), "img", ["nslab"], "part", None)
    assert len([path for _method, path in docker.asked if path.startswith("/networks")]) == 1


def test_a_missing_image_names_the_node() -> None:
    task = {"NodeID": "x1", "x-node": "c", "Status": {"State": "rejected", "Err": "No such image: sha256:0123"},
            "Spec": {"ContainerSpec": {"Image": "sha256:0123456789abcdef0123"}}}
    line = swarm._task_error(task, swarm.Part("c", ()))
    assert line.startswith("machine c: node c has no image sha256:0123456789ab ")


def test_the_runner_line_gives_the_part_time() -> None:
    assert swarm._part_seconds("something\nnslab machine run: up in 0.42 s\n") == 0.42
    assert swarm._part_seconds("nothing yet\n") == 0.0


def test_the_image_holds_nslab_runtime_dependencies_only() -> None:
    needed = image._requirements("nslab")
    assert {"pydantic", "pyyaml", "click", "rich"} <= {n.lower() for n in needed}
    assert "pytest" not in needed and "mypy" not in needed


def test_the_machines_check_documents_make_one_matrix() -> None:
    from nslab.cli.engine import _one_matrix

    def cell(source: str, target: str, reachable: bool = True) -> dict[str, object]:
        return {"source": source, "target": target, "address": "10.0.0.1", "reachable": reachable,
                "result": "reply", "expected": True, "path": "", "by": "model", "ok": reachable}

    a = {"probe": "icmp", "outside": "198.51.100.1",
         "cells": [cell("ha", "ha"), cell("ha", "hb"), cell("ha", "outside")]}
    b = {"probe": "icmp", "outside": None, "cells": [cell("hb", "ha"), cell("hb", "hb", reachable=False)]}
    matrix = _one_matrix("sw3", [a, b])
    assert matrix.hosts == ["ha", "hb"]
    assert matrix.columns == ["ha", "hb"]  # hb did not probe the outside: no such column
    assert matrix.outside == "198.51.100.1"
    assert not matrix.ok and [(c.source, c.target) for c in matrix.cells if not c.ok] == [("hb", "hb")]


class ImageDocker(CannedDocker):
    def __init__(self, answer: tuple[int, Any]) -> None:
        super().__init__()
        self.answer = answer

    def request(self, method: str, path: str, body: Any = None, stream: bool = False,
                upload: tuple[Any, int, str] | None = None) -> tuple[int, Any]:
        return self.answer


def test_how_tasks_name_the_image() -> None:
    local = ImageDocker((200, {"Id": "sha256:1d", "RepoDigests": []}))
    assert swarm.Swarm(local).image_id("nslab:0.1.0") == "sha256:1d"  # a local build: by id, no pull
    pushed = ImageDocker((200, {"Id": "sha256:1d", "RepoDigests": ["reg:5000/nslab@sha256:9f"]}))
    assert swarm.Swarm(pushed).image_id("reg:5000/nslab:0.1.0") == "reg:5000/nslab@sha256:9f"
    untagged = ImageDocker((200, {"Id": "sha256:1d", "RepoDigests": ["other/x@sha256:00", "reg:5000/nslab@sha256:9f"]}))
    assert swarm.Swarm(untagged).image_id("reg:5000/nslab") == "reg:5000/nslab@sha256:9f"  # the port kept
    assert swarm._repository("reg:5000/nslab") == "reg:5000/nslab"
    assert swarm._repository("reg:5000/a/nslab:1@sha256:9f") == "reg:5000/a/nslab"
    absent = ImageDocker((404, {"message": "No such image"}))
    assert swarm.Swarm(absent).image_id("reg:5000/nslab:0.1.0") == "reg:5000/nslab:0.1.0"


class GoneDocker(CannedDocker):
    """The service is removed: the filter refuses its id; the task list still holds its tasks."""

    def request(self, method: str, path: str, body: Any = None, stream: bool = False,
                upload: tuple[Any, int, str] | None = None) -> tuple[int, Any]:
        self.asked.append((method, path))
        if path.startswith("/tasks?"):
            return 404, {"message": "service s1 not found"}
        if path == "/tasks":
            return 200, [{"ServiceID": "s1", "ID": "t1"}, {"ServiceID": "s2", "ID": "t2"}]
        return 404, {"message": "no"}


def test_the_tasks_of_a_removed_service() -> None:
    assert [t["ID"] for t in swarm.Swarm(GoneDocker()).tasks("s1")] == ["t1"]
