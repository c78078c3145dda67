"""Issue 5 with a real Docker engine: the tutorials' debugging half, through `container:` targets.

The session fixture uses a Docker engine that already answers, or starts its own `dockerd` (stopped at the
end): in its *own network namespace* (so docker0, its veths and its iptables/nft rules never touch the real
machine's network), with its own data-root, exec-root and API socket under a temporary directory (passed to
docker and nslab as DOCKER_HOST). The test image is built locally from busybox-static (no registry).
Every test runs inside a throwaway host (`host` fixture): "the machine" is the test's own namespace, names
made by `attach` land in its private /run/netns, and every container a test starts is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from docker_engine import IMAGE, TOOLS_IMAGE, docker
from labs import NSLAB, nslab
from sandbox import sh

CONNECT = "import socket,sys; socket.create_connection(('127.0.0.1', 44444), timeout=2); print('connected')"

pytestmark = pytest.mark.docker


def container_ip(name: str) -> str:
    return docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()


def test_reach_a_server_on_the_containers_own_loopback(containers):
    app = containers(IMAGE, "httpd", "-f", "-p", "127.0.0.1:44444", "-h", "/www")
    time.sleep(0.3)
    # from the machine: nothing listens on 127.0.0.1:44444
    assert subprocess.run([sys.executable, "-c", CONNECT], capture_output=True).returncode != 0
    # inside the container's network, with the machine's own python3 (the image has none)
    result = nslab("exec", f"container:{app}", "--", sys.executable, "-c", CONNECT)
    assert result.stdout.strip() == "connected"
    # ip of the machine, interfaces of the container
    assert container_ip(app) in nslab("exec", f"container:{app}", "--", "ip", "-br", "addr").stdout
    # and the Python API: this thread only
    import socket

    import nslab as api

    with api.enter(f"container:{app}"):
        socket.create_connection(("127.0.0.1", 44444), timeout=2).close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 44444), timeout=2)


def test_net_of_a_with_the_tools_of_b(containers):
    app = containers(IMAGE, "sleep", "600")
    tools = containers(TOOLS_IMAGE, "sleep", "600")
    assert shutil.which("btool") is None
    result = nslab("exec", f"container:{app}", "--mount-from", f"container:{tools}", "--", "btool")
    assert "B-TOOL" in result.stdout
    assert container_ip(app) in result.stdout and container_ip(tools) not in result.stdout
    # their filesystem, their users: --user resolves in B's /etc/passwd
    b_tools = ("--mount-from", f"container:{tools}")
    as_nobody = nslab("exec", f"container:{app}", *b_tools, "-u", "nobody", "--", "id", "-u")
    assert as_nobody.stdout.strip() == "65534"
    # the machine's tools are not there
    missing = nslab("exec", f"container:{app}", "--mount-from", f"container:{tools}", "--", "python3", check=False)
    assert missing.returncode == 127 and "command not found" in missing.stderr
    # --uts: the container's hostname
    hostname = docker("inspect", "-f", "{{.Config.Hostname}}", app).stdout.strip()
    assert nslab("exec", "--uts", f"container:{app}", "--", "hostname").stdout.strip() == hostname
    assert nslab("exec", f"container:{app}", "--", "hostname").stdout.strip() != hostname


def test_ls_shows_containers_and_attach_detach(containers):
    app = containers(IMAGE, "httpd", "-f", "-p", "127.0.0.1:44444", "-h", "/www")
    tools = containers(TOOLS_IMAGE, "sleep", "600")
    before = sorted(os.listdir("/run/netns"))
    doc = json.loads(nslab("ls", "--json").stdout)
    by_container = {c: ns for ns in doc["namespaces"] for c in ns["containers"]}
    assert app in by_container and tools in by_container
    assert by_container[app]["inode"] != by_container[tools]["inode"]
    addresses = [a for i in by_container[app]["interfaces"] for a in i["addresses"]]
    assert f"{container_ip(app)}/16" in addresses
    assert any(p["command"].startswith("httpd") for p in by_container[app]["processes"])
    inodes = [ns["inode"] for ns in doc["namespaces"]]
    assert len(inodes) == len(set(inodes))  # each namespace once
    assert sorted(os.listdir("/run/netns")) == before  # listing created nothing
    assert app in nslab("ls").stdout

    nslab("attach", "appnet", f"container:{app}")
    assert "appnet" in sh("ip netns list").stdout
    assert container_ip(app) in sh("ip netns exec appnet ip addr show eth0").stdout
    assert nslab("exec", "netns:appnet", "--", sys.executable, "-c", CONNECT).stdout.strip() == "connected"
    clash = nslab("attach", "appnet", f"container:{tools}", check=False)
    assert clash.returncode == 2 and "exists already" in clash.stderr
    nslab("detach", "appnet")
    assert "appnet" not in sh("ip netns list").stdout
    assert docker("inspect", "-f", "{{.State.Running}}", app).stdout.strip() == "true"
    assert nslab("exec", f"container:{app}", "--", sys.executable, "-c", CONNECT).stdout.strip() == "connected"


def test_stopped_and_unknown_containers_give_one_line(containers):
    app = containers(IMAGE, "sleep", "600")
    docker("stop", "-t", "0", app)
    for target, words in (
        (f"container:{app}", "not running"),
        ("container:nslab-test-nosuch", "no such Docker container"),
    ):
        result = nslab("exec", target, "--", "true", check=False)
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr


def test_docker_not_running_is_one_clear_line(host, tmp_path):
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/nothing.sock")
    result = subprocess.run([NSLAB, "exec", "container:x", "--", "true"], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"nslab: Docker is not running (nothing answers on {tmp_path}/nothing.sock: No such file or directory); "
        "start dockerd, or point DOCKER_HOST at its socket"
    ]
