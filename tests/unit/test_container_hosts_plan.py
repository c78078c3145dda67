"""Container hosts (features/containers.py) over the fake drivers: validation before any change, the plan's
order (a container starts before its namespace is wired, goes after its name is dropped), converge recreating
only the changed container, rollback, down by label, and the spec's container fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from labfiles import lab_text
from nslab.core import state
from nslab.core.features.containers import (
    RemoveContainers,
    ResumeContainers,
    StartContainers,
    WriteContainerFiles,
    container_config,
)
from nslab.core.wiring import AddHosts, RemoveHosts
from nslab.drivers.fake import FakeDocker, FakeKernel, fake_drivers
from nslab.errors import NslabError, ResolveError, SpecError
from nslab.lab import Lab, down

IMAGE = "nslab-test/busybox:1"
LAB = lab_text("mix", {"net": "10.84.1.0/24"}, hosts={
    "a": "networks: [net]",
    "web": f'image: {IMAGE}, command: [httpd, -f, -p, "80"], env: {{MODE: test}}, volumes: ["/srv:/data:ro"], '
           "networks: [net]",
    "idle": f"image: {IMAGE}, command: sleep 600, networks: [net]",
})


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")


def drivers_with(images: tuple[str, ...] = (IMAGE,), **kwargs: object):
    return fake_drivers(docker=FakeDocker(images=images, **kwargs))


def test_up_starts_containers_before_wiring_them_and_down_removes_them():
    drivers = drivers_with()
    result = Lab.from_text(LAB, drivers=drivers).up()
    actions = list(result.plan)
    start = next(i for i, a in enumerate(actions) if isinstance(a, StartContainers))
    wire = next(i for i, a in enumerate(actions) if isinstance(a, AddHosts))
    assert start < wire
    assert {h.name for h in actions[start].hosts} == {"web", "idle"}
    docker = drivers.docker
    assert isinstance(docker, FakeDocker)
    assert set(docker.containers) == {"mix-web", "mix-idle"}
    web = docker.containers["mix-web"]
    assert web["Labels"] == {"nslab.lab": "mix", "nslab.host": "web"}
    assert web["Config"]["HostConfig"]["NetworkMode"] == "none"
    assert web["Config"]["Env"] == ["MODE=test"] and web["Config"]["HostConfig"]["Binds"] == ["/srv:/data:ro"]
    assert docker.containers["mix-idle"]["Config"]["Cmd"] == ["sleep", "600"]  # a string: split as sh does
    # the lab's /etc/hosts reaches the containers (they resolve the light host by name)
    assert "a" in docker.containers["mix-web"]["files"]["/etc/hosts"].split()
    assert "mix-web" in drivers.kernel.namespaces
    # the dry-run says it with docker's and ip's words
    commands = "\n".join(result.commands())
    assert "docker create -it --name mix-web --network none" in commands and "ip netns attach mix-web" in commands
    assert "ip netns add mix-web" not in commands and "ip netns add mix-a" in commands
    assert not Lab.from_text(LAB, drivers=drivers).up().plan  # nothing changed: nothing to do
    drivers.processes.inside = {"mix-a", "mix-web"}  # processes running inside
    down("mix", drivers)
    assert drivers.processes.inside == {"mix-web"}  # Docker stops a container's
    assert docker.containers == {}
    assert not drivers.kernel.namespaces


def test_a_changed_command_recreates_only_that_container():
    drivers = drivers_with()
    Lab.from_text(LAB, drivers=drivers).up()
    docker = drivers.docker
    assert isinstance(docker, FakeDocker)
    ids = {n: c["Id"] for n, c in docker.containers.items()}
    result = Lab.from_text(LAB.replace("sleep 600", "sleep 700"), drivers=drivers).up()
    assert docker.containers["mix-web"]["Id"] == ids["mix-web"]
    assert docker.containers["mix-idle"]["Id"] != ids["mix-idle"]
    removed = result.plan.of_type(RemoveContainers)
    assert [h.name for a in removed for h in a.hosts] == ["idle"]
    assert [h.name for a in result.plan.of_type(AddHosts) for h in a.hosts] == ["idle"]
    assert [ns for a in result.plan.of_type(RemoveHosts) for ns in a.namespaces] == ["mix-idle"]
    assert "changed host idle" in result.changes()


def test_a_missing_image_is_a_problem_before_any_change():
    drivers = drivers_with(images=())
    with pytest.raises(ResolveError) as caught:
        Lab.from_text(LAB, path="lab.yaml", drivers=drivers).up()
    text = "\n".join(caught.value.lines())
    assert "hosts.web.image" in text and f"no image {IMAGE}" in text and caught.value.exit_code == 2
    assert drivers.docker.containers == {}
    assert not drivers.kernel.namespaces
    # pull: true pulls it instead
    Lab.from_text(LAB.replace("image: ", "pull: true, image: "), drivers=drivers).up()
    assert drivers.docker.pulled == [IMAGE]  # once: then it is there


def test_docker_not_running_is_one_problem_naming_the_socket():
    drivers = drivers_with(running=False)
    drivers.docker.socket = "/run/elsewhere/docker.sock"
    with pytest.raises(ResolveError) as caught:
        Lab.from_text(LAB, drivers=drivers).up()
    assert "/run/elsewhere/docker.sock" in str(caught.value) and "hosts.web.image" in str(caught.value)


def test_a_foreign_container_with_the_name_is_a_problem():
    drivers = drivers_with()
    drivers.docker.create("mix-web", {"Image": IMAGE, "Labels": {}})
    with pytest.raises(ResolveError, match="mix-web exists and is not this lab's"):
        Lab.from_text(LAB, drivers=drivers).up()


def test_a_failure_after_the_containers_started_removes_them():
    drivers = fake_drivers(docker=FakeDocker(images=(IMAGE,)), kernel=FakeKernel(fail_on="add_hosts"))
    with pytest.raises(NslabError):
        Lab.from_text(LAB, drivers=drivers).up()
    assert drivers.docker.containers == {}
    assert not drivers.kernel.namespaces
    assert state.LabState.load("mix") is None


def test_down_without_state_removes_the_containers_labelled_with_the_lab(monkeypatch: pytest.MonkeyPatch):
    drivers = drivers_with()
    Lab.from_text(LAB, drivers=drivers).up()
    docker = drivers.docker
    assert isinstance(docker, FakeDocker)
    docker.create("other", {"Image": IMAGE, "Labels": {"nslab.lab": "else"}})
    state.remove("mix")  # the record is gone (and the lab file with it)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{__file__}")  # a socket is there: Docker is asked by label
    down("mix", drivers)
    assert set(docker.containers) == {"other"}


def test_container_fields_need_an_image_and_run_is_refused():
    text = """\
name: bad
hosts:
  light:
    command: [sleep, "1"]
  boxed:
    image: busybox
    run: sleep 1
"""
    with pytest.raises((ResolveError, SpecError)) as caught:
        Lab.from_text(text, path="bad.yaml", drivers=drivers_with(), check=True)
    text_out = "\n".join(caught.value.lines())
    assert "hosts.light.command" in text_out and "give the host an image" in text_out
    assert "hosts.boxed.run" in text_out and "command:" in text_out


def test_container_config_and_file_writes():
    lab = Lab.from_text(LAB, drivers=drivers_with()).resolve(drivers_with())
    config = container_config("mix", lab.hosts["web"])
    assert config["Hostname"] == "web" and config["Cmd"] == ["httpd", "-f", "-p", "80"]
    assert "User" not in config and "WorkingDir" not in config
    drivers = drivers_with()
    Lab.from_text(LAB, drivers=drivers).up()
    docker = drivers.docker
    assert isinstance(docker, FakeDocker)
    docker.containers["mix-web"]["files"]["/etc/hosts"] = "stale\n"
    result = Lab.from_text(LAB, drivers=drivers).up()
    writes = result.plan.of_type(WriteContainerFiles)
    assert [c for a in writes for c, _ in a.files] == ["mix-web"]
    assert docker.containers["mix-web"]["files"]["/etc/hosts"] != "stale\n"


def test_a_stopped_container_is_drift_that_up_repairs():
    drivers = drivers_with()
    Lab.from_text(LAB, drivers=drivers).up()
    docker = drivers.docker
    assert isinstance(docker, FakeDocker)
    docker.stop("mix-idle")  # by hand: `docker stop`
    from nslab.core.drift import lab_drift

    recorded = state.LabState.load("mix")
    assert recorded is not None
    assert [d.text for d in lab_drift(recorded, drivers)] == ["host idle: container mix-idle is exited"]
    ids = {name: c["Id"] for name, c in docker.containers.items()}
    result = Lab.from_text(LAB, drivers=drivers).up()
    # started again, not made again (its filesystem stays), and its host wired anew
    assert not result.plan.of_type(StartContainers)
    assert [h.name for a in result.plan.of_type(ResumeContainers) for h in a.hosts] == ["idle"]
    assert [h.name for a in result.plan.of_type(AddHosts) for h in a.hosts] == ["idle"]
    assert docker.containers["mix-idle"]["Running"]
    assert {name: c["Id"] for name, c in docker.containers.items()} == ids


@pytest.mark.parametrize(("field", "message"), [
    ("command: 'sleep \"600'", "cannot split the command"),
    ("command: []", "an empty command"),
    ("volumes: [data]", "SOURCE:/TARGET"),
    ("image: 'two words'", "not an image name"),
    ("env: [NOEQUALS]", "KEY=VALUE"),
])
def test_bad_container_fields_are_reported_with_their_line(field: str, message: str):
    text = f"name: bad\nhosts:\n  box:\n    image: busybox\n    {field}\n"
    with pytest.raises(SpecError) as caught:
        Lab.from_text(text, path="bad.yaml")
    lines = caught.value.lines()
    assert any("bad.yaml:5" in line and message in line for line in lines), lines


def test_connect_takes_a_free_address_from_the_top_of_the_subnet():
    from nslab.core.connect import _free_address
    from nslab.core.features.containers import ContainersRecord

    drivers = drivers_with()
    Lab.from_text(LAB, drivers=drivers).up()
    st = state.LabState.load("mix")
    assert st is not None
    record = ContainersRecord()
    assert str(_free_address(st.lab, "net", record)) == "10.84.1.254/24"
    record.connected.append({"container": "x", "network": "net", "address": "10.84.1.254/24"})
    assert str(_free_address(st.lab, "net", record)) == "10.84.1.253/24"


def test_an_image_without_a_command_runs_a_shell_kept_open():
    drivers = fake_drivers(docker=FakeDocker(bare=("imported:1",)))
    Lab.from_text("name: bare\nhosts:\n  box: {image: 'imported:1'}\n  given: {image: 'imported:1', "
                  "command: [sleep, '9']}\n", drivers=drivers).up()
    made = drivers.docker.containers
    assert made["bare-box"]["Config"]["Cmd"] == ["/bin/sh"] and made["bare-box"]["Config"]["Tty"] is True
    assert made["bare-given"]["Config"]["Cmd"] == ["sleep", "9"]


def test_stop_keeps_the_container_and_start_starts_it_again_wired_anew():
    from nslab.core.drift import lab_drift
    from nslab.core.features.hoststate import meant_down

    drivers = drivers_with()
    lab = Lab.from_text(LAB, drivers=drivers)
    lab.up()
    docker = drivers.docker
    assert isinstance(docker, FakeDocker)
    ids = {name: c["Id"] for name, c in docker.containers.items()}
    lab.stop("idle")
    assert not docker.containers["mix-idle"]["Running"] and "mix-idle" in drivers.kernel.namespaces
    recorded = state.LabState.load("mix")
    assert recorded is not None
    assert ("idle", "eth0") in meant_down(recorded.lab, recorded.extra["hoststate"])
    assert lab_drift(recorded, drivers) == []  # stopped on purpose: not drift
    again = lab.up()  # up keeps it stopped
    assert not again.plan.of_type(ResumeContainers) and not docker.containers["mix-idle"]["Running"]
    lab.start("idle")
    assert docker.containers["mix-idle"]["Running"]
    assert {name: c["Id"] for name, c in docker.containers.items()} == ids  # started, not made again
    recorded = state.LabState.load("mix")
    assert recorded is not None and lab_drift(recorded, drivers) == []
    assert recorded.extra["hoststate"]["stopped"] == [] and recorded.extra["containers"]["stopped"] == []
    pid = docker.containers["mix-idle"]["Pid"]
    lab.restart("idle")
    assert docker.containers["mix-idle"]["Running"] and docker.containers["mix-idle"]["Pid"] != pid
