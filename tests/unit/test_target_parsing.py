"""Target parsing, the Docker API client (against a fake engine on a unix socket), exec argument splitting,
the throwaway-run lab document and mountinfo parsing. No root, no kernel changes."""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from nslab.cli.targets import _env_pairs, _split_exec_args
from nslab.errors import TargetError, UserError
from nslab.ns import discover, targets
from nslab.tools.throwaway import RUN_NAME, lab_document


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("web1", ("host", "web1")),
        ("demo/web1", ("host", "demo/web1")),
        ("netns:blue", ("netns", "blue")),
        ("pid:42", ("pid", "42")),
        ("container:app", ("container", "app")),
        ("path:/proc/1/ns/net", ("path", "/proc/1/ns/net")),
    ],
)
def test_parse(text, parsed):
    assert targets.parse(text) == parsed


@pytest.mark.parametrize(
    "text, words",
    [
        ("bogus:x", "unknown target kind 'bogus:'"),
        ("pid:", "nothing after 'pid:'"),
        ("pid:abc", "not a process id"),
        ("pid:0", "not a process id"),
        ("netns:a/b", "not a namespace name"),
        ("a/b/c", "is not a target"),
    ],
)
def test_bad_targets(text, words):
    with pytest.raises(TargetError, match=words):
        targets.resolve(text)


def test_pid_target_paths():
    t = targets.Target("pid:7", "pid 7", "/proc/7/ns/net", pid=7)
    assert t.ns_path("mnt") == "/proc/7/ns/mnt" and t.ns_path("uts") == "/proc/7/ns/uts"
    named = targets.Target("netns:x", "netns x", "/run/netns/x", netns_name="x")
    with pytest.raises(TargetError, match="only a network namespace"):
        named.ns_path("mnt")


class _FakeDocker(BaseHTTPRequestHandler):
    containers = {
        "app": {"Name": "/app", "State": {"Running": True, "Pid": 4242, "Status": "running"}},
        "gone": {"Name": "/gone", "State": {"Running": False, "Pid": 0, "Status": "exited"}},
    }

    def do_GET(self) -> None:  # (http.server's name)
        parts = self.path.strip("/").split("/")
        if parts == ["containers", "json"]:
            body, status = [{"Id": "app"}], 200
        elif len(parts) == 3 and parts[0] == "containers" and parts[1] in self.containers:
            body, status = self.containers[parts[1]], 200
        else:
            body, status = {"message": "No such container"}, 404
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass

    def address_string(self) -> str:
        return "docker"


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    path = str(tmp_path / "docker.sock")
    server = socketserver.UnixStreamServer(path, _FakeDocker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    yield path
    server.shutdown()
    server.server_close()


def test_docker_container_lookup(fake_docker):
    assert targets.container("app")["State"]["Pid"] == 4242
    with pytest.raises(TargetError, match="no such Docker container"):
        targets.container("nosuch")
    with pytest.raises(TargetError, match=r"not running \(status: exited\)"):
        targets.container("gone")
    assert [c["Name"] for c in targets.running_containers()] == ["/app"]


def test_docker_not_running(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    with pytest.raises(TargetError, match="Docker is not running"):
        targets.container("app")
    assert targets.running_containers() == []


def test_exec_arguments_after_the_target():
    values = {"uts": False, "detach": False, "env": (), "mount_from": None, "user": None}
    argv = _split_exec_args(
        ("--uts", "-e", "A=1", "--env=B=2", "--mount-from", "container:b", "--", "ls", "-e"), values
    )
    assert argv == ["ls", "-e"]
    assert values["uts"] and values["env"] == ("A=1", "B=2") and values["mount_from"] == "container:b"
    values = {"uts": False, "detach": False, "env": ()}
    assert _split_exec_args(("ip", "-br", "--uts"), values) == ["ip", "-br", "--uts"]
    assert not values["uts"]
    assert _env_pairs(("A=1", "B=x=y", "C=")) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(UserError):
        _env_pairs(("NOVALUE",))


def test_run_lab_document():
    doc = lab_document("run-42", "internal", ["8080:80"], ["192.0.2.53"])
    assert doc == {
        "name": "run-42",
        "networks": {"net": {"internal": True}},
        "hosts": {"main": {"networks": ["net"], "publish": ["8080:80"], "dns": ["192.0.2.53"]}},
    }
    assert RUN_NAME.match("run-4194304") and RUN_NAME.match("run-12a")
    assert not RUN_NAME.match("runner") and not RUN_NAME.match("run-12-main")


def test_nsfs_mounts_parsing(tmp_path, monkeypatch):
    info = tmp_path / "mountinfo"
    info.write_text(
        "25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw\n"
        "91 27 0:4 net:[4026532253] /run/docker/netns/dc79 rw - nsfs nsfs rw\n"
        "92 27 0:4 uts:[4026532254] /run/nslab/demo/uts/web1 rw - nsfs nsfs rw\n"
        "93 27 0:4 net:[4026532300] /run/my\\040ns rw shared:5 - nsfs nsfs rw\n"
    )
    real_open = open
    monkeypatch.setattr(
        "builtins.open",
        lambda p, *a, **k: real_open(info if p == "/proc/self/mountinfo" else p, *a, **k),
    )
    assert discover.nsfs_mounts() == [(4026532253, "/run/docker/netns/dc79"), (4026532300, "/run/my ns")]
