"""Docker containers as lab hosts (``hosts.NAME.image``), with a real dockerd (tests/docker_engine.py) and a
busybox-static image built locally: light hosts and a container reach each other by name, the container's
port is published, ``down`` leaves no container, link or rule, and a missing image fails before any change.

Every test runs in a throwaway host; the machine's resolver is a bind-mounted file naming the ``wan``
namespace (never a real resolver).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from docker_engine import HOSTS_IMAGE, IMAGE, docker
from labs import nslab, private_resolver
from sandbox import sh

pytestmark = pytest.mark.docker

LAB = f"""\
name: ctr
networks:
  net: {{subnet: 10.83.1.0/24}}
hosts:
  a: {{networks: [net]}}
  b: {{networks: [net]}}
  web:
    image: {HOSTS_IMAGE}
    command: [httpd, -f, -p, "80", -h, /www]
    hostname: webbox
    env: {{GREETING: hello}}
    networks: [net]
    publish: ["8080:80"]
"""


@pytest.fixture
def lab_dir(docker_engine, host, tmp_path):
    private_resolver(tmp_path)  # the machine's resolver: never the real one
    yield tmp_path
    nslab("down", "ctr", check=False)
    for cid in docker("ps", "-aq", "--filter", "label=nslab.lab=ctr", check=False).stdout.split():
        docker("rm", "-f", cid, check=False)


def nslab_links() -> list[str]:
    """nslab's links on the machine once the namespaces `down` unpinned are dismantled (light hosts' veths go
    a little later, asynchronously, as after `ip netns del`)."""
    deadline = time.monotonic() + 10
    while True:
        names = sh("ip -br link show group 7238508").stdout.split("\n")
        names = [n.split("@")[0] for n in names if n.strip()]
        if not names or time.monotonic() > deadline:
            return names
        time.sleep(0.02)


def lab_containers() -> list[str]:
    return docker("ps", "-aq", "--filter", "label=nslab.lab=ctr").stdout.split()


def test_light_hosts_and_a_container_reach_each_other_by_name(lab_dir):
    path = lab_dir / "nslab.yaml"
    path.write_text(LAB)
    nslab("up", "-f", str(path))
    assert len(lab_containers()) == 1
    inspect = json.loads(docker("inspect", "ctr-web").stdout)[0]
    assert inspect["Config"]["Labels"] == {"nslab.lab": "ctr", "nslab.host": "web"}
    assert inspect["HostConfig"]["NetworkMode"] == "none"
    # the container is wired like a light host: eth0 with its address, its namespace named like a host's
    assert "10.83.1." in sh("ip -n ctr-web -br addr show eth0").stdout
    assert nslab("exec", "ctr/web", "--", "hostname").stdout.strip() == "webbox"
    assert "GREETING=hello" in nslab("exec", "ctr/web", "--", "cat", "/proc/1/environ").stdout  # its init's
    assert nslab("exec", "ctr/web", "--", "sh", "-c", "echo $GREETING").stdout.strip() == "hello"  # docker exec's
    from nslab import Lab  # the Python API: the same

    api = Lab.load(path).exec("web", ["sh", "-c", "hostname; echo $GREETING"], capture_output=True, text=True)
    assert api.stdout.split() == ["webbox", "hello"]
    # by name, every way round (the container's lookups use its own /etc/hosts, written by nslab)
    for src, dst in (("a", "web"), ("b", "web"), ("web", "a"), ("web", "b"), ("a", "b")):
        ping = ["ping"] if src == "web" else ["busybox", "ping"]  # a light host has the machine's tools
        nslab("exec", f"ctr/{src}", "--", *ping, "-c1", "-W2", dst)
    # a command the container does not have runs with the machine's tools, in the container's network and
    # hostname, with the lab's /etc/hosts
    probe = "import socket; print(socket.gethostbyname('a'), socket.gethostname())"
    a_address = sh("ip -n ctr-a -4 -o addr show eth0").stdout.split()[3].split("/")[0]
    assert nslab("exec", "ctr/web", "--", sys.executable, "-c", probe).stdout.split() == [a_address, "webbox"]
    # the container's own filesystem: its www page, served to a light host by name
    nslab("exec", "ctr/web", "--", "sh", "-c", "echo served-by-web > /www/index.html")
    got = nslab("exec", "ctr/a", "--", "busybox", "wget", "-qO-", "http://web/").stdout
    assert got.strip() == "served-by-web"
    # published: the machine's port 8080 reaches the container's httpd
    with socket.create_connection(("198.51.100.2", 8080), timeout=3) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    assert b"served-by-web" in answer
    doc = json.loads(nslab("status", "ctr", "--json").stdout)["labs"][0]
    assert doc["containers"]["hosts"]["web"]["state"] == "running"

    nslab("down", "ctr")
    assert lab_containers() == []
    assert nslab_links() == []
    assert "ctr" not in sh("nft list ruleset").stdout
    assert sh("ls /run/netns").stdout.split() == ["wan"]


def test_a_missing_image_fails_before_any_change(lab_dir):
    path = lab_dir / "nslab.yaml"
    path.write_text(LAB.replace(HOSTS_IMAGE, "nslab-test/none-such:9"))
    links = sh("ip -br link").stdout
    result = nslab("up", "-f", str(path), check=False)
    assert result.returncode == 2, result
    assert "nslab-test/none-such:9" in result.stderr and "hosts.web.image" in result.stderr
    assert "Traceback" not in result.stderr
    assert sh("ip -br link").stdout == links
    assert sh("ls /run/netns").stdout.split() == ["wan"]
    assert lab_containers() == []


def test_docker_not_running_names_the_socket(host, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nobody.sock")
    path = tmp_path / "nslab.yaml"
    path.write_text(LAB.replace(HOSTS_IMAGE, IMAGE))
    result = nslab("up", "-f", str(path), check=False)
    assert result.returncode == 2, result
    assert f"{tmp_path}/nobody.sock" in result.stderr and "Docker is not running" in result.stderr
    assert "Traceback" not in result.stderr
    assert sh("ls /run/netns").stdout.split() == ["wan"]


def test_converge_recreates_only_the_changed_container(lab_dir):
    path = lab_dir / "nslab.yaml"
    two = LAB + f"""\
  idle:
    image: {HOSTS_IMAGE}
    command: [sleep, "600"]
    networks: [net]
"""
    path.write_text(two)
    nslab("up", "-f", str(path))
    ids = {n: docker("inspect", "-f", "{{.Id}}", f"ctr-{n}").stdout.strip() for n in ("web", "idle")}
    again = nslab("up", "-f", str(path))
    assert "ctr-" not in again.stdout or "start" not in again.stdout
    path.write_text(two.replace('[sleep, "600"]', '[sleep, "700"]'))
    nslab("up", "-f", str(path))
    assert docker("inspect", "-f", "{{.Id}}", "ctr-web").stdout.strip() == ids["web"]
    assert docker("inspect", "-f", "{{.Id}}", "ctr-idle").stdout.strip() != ids["idle"]
    assert docker("inspect", "-f", "{{.Config.Cmd}}", "ctr-idle").stdout.strip() == "[sleep 700]"
    nslab("exec", "ctr/idle", "--", "ping", "-c1", "-W2", "web")
    nslab("exec", "ctr/a", "--", "busybox", "ping", "-c1", "-W2", "idle")
    # a container removed behind nslab's back is drift: status names it, up makes it again
    docker("rm", "-f", "ctr-idle")
    doc = json.loads(nslab("status", "ctr", "--json", check=False).stdout)["labs"][0]
    assert "host idle: container ctr-idle is gone" in doc["drift"]
    nslab("up", "-f", str(path))
    nslab("exec", "ctr/a", "--", "busybox", "ping", "-c1", "-W2", "idle")
    # the lab file is gone: down still removes every container of the lab
    path.unlink()
    nslab("down", "ctr")
    assert lab_containers() == []


@pytest.fixture
def other(lab_dir):
    """Lab ``ctr`` up, and a running container of no lab (its name), to connect."""
    path = lab_dir / "nslab.yaml"
    path.write_text(LAB)
    nslab("up", "-f", str(path))
    name = "nslab-test-connect"
    docker("run", "-d", "--label", "nslab-test", "--name", name, HOSTS_IMAGE, "sleep", "600")
    try:
        yield name
    finally:
        docker("rm", "-f", name, check=False)


def test_connect_and_disconnect_an_existing_container(other):
    out = nslab("connect", "ctr/net", f"container:{other}").stdout
    assert "eth1" in out and "10.83.1.254" in out  # docker's eth0 stays; the top of the subnet
    inside = nslab("exec", f"container:{other}", "--", "ip", "-br", "addr").stdout
    assert "10.83.1.254/24" in inside
    nslab("exec", "ctr/a", "--", "busybox", "ping", "-c1", "-W2", "10.83.1.254")
    again = nslab("connect", "ctr/net", f"container:{other}", check=False)
    assert again.returncode == 2 and "already" in again.stderr
    doc = json.loads(nslab("status", "ctr", "--json").stdout)["labs"][0]
    assert [c["container"] for c in doc["containers"]["connected"]] == [other]
    nslab("disconnect", "ctr/net", f"container:{other}")
    assert "eth1" not in nslab("exec", f"container:{other}", "--", "ip", "-br", "addr").stdout
    nslab("connect", "ctr/net", f"container:{other}")
    nslab("down", "ctr")
    # down removed the interface it added, not the container
    assert docker("inspect", "-f", "{{.State.Running}}", other).stdout.strip() == "true"
    assert "eth1" not in nslab("exec", f"container:{other}", "--", "ip", "-br", "addr").stdout
    assert nslab_links() == []


def test_connect_dry_run_is_a_script_that_does_what_connect_does(other):
    """``connect --dry-run`` changes nothing; its commands, run by sh, give the container the interface, address
    and bridge port (with nslab's marks) that ``nslab connect`` gives it; a failure midway leaves nothing."""
    script = nslab("connect", "ctr/net", f"container:{other}", "--dry-run").stdout
    assert "eth1" not in nslab("exec", f"container:{other}", "--", "ip", "-br", "addr").stdout
    assert json.loads(nslab("status", "ctr", "--json").stdout)["labs"][0]["containers"]["connected"] == []
    sh(script)
    assert "10.83.1.254/24" in nslab("exec", f"container:{other}", "--", "ip", "-br", "addr").stdout
    nslab("exec", "ctr/a", "--", "busybox", "ping", "-c1", "-W2", "10.83.1.254")
    veth = script.split("peer name ")[1].split()[0]
    assert f"alias nslab:ctr:host:+{other}:eth1" in sh(f"ip -d link show {veth}").stdout
    assert veth in sh("ip -br link show group 7238508").stdout  # nslab's link group, as connect makes it
    sh(f"ip link del {veth}")
    # the bridge port fails (its bridge is gone): the veth made before it is rolled back
    bridge = script.split(" master ")[1].split()[0]
    sh(f"ip link set {bridge} name nslabgone")
    failed = nslab("connect", "ctr/net", f"container:{other}", check=False)
    sh(f"ip link set nslabgone name {bridge}")
    assert failed.returncode == 1 and "rolled back" in failed.stderr, failed.stderr
    assert "eth1" not in nslab("exec", f"container:{other}", "--", "ip", "-br", "addr").stdout
    assert veth not in sh("ip -br link show").stdout
    assert json.loads(nslab("status", "ctr", "--json").stdout)["labs"][0]["containers"]["connected"] == []


def test_an_image_with_nothing_but_bin_busybox(lab_dir):
    """The image of shared/TESTING.md: a folder with bin/busybox and applet links, no /etc at all."""
    import os
    import shutil

    root = lab_dir / "bare"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "sleep", "ping", "cat", "hostname"):
        os.symlink("busybox", root / "bin" / applet)
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-", "nslab-test/bare:1"], stdin=tar.stdout, check=True,
                   capture_output=True)
    tar.wait()
    path = lab_dir / "nslab.yaml"
    # no command: the image has none either (docker import), so the host runs a shell kept open (-it)
    path.write_text(LAB.replace(HOSTS_IMAGE, "nslab-test/bare:1").replace(
        "    command: [httpd, -f, -p, \"80\", -h, /www]\n", ""))
    path.write_text(path.read_text() + """\
  talker:
    image: nslab-test/bare:1
    command: [sh, -c, "echo hello-from-talker; exec sleep 600"]
""")
    nslab("up", "-f", str(path))
    assert nslab("exec", "ctr/web", "--", "hostname").stdout.strip() == "webbox"
    nslab("exec", "ctr/web", "--", "ping", "-c1", "-W2", "a")
    assert "hello-from-talker" in nslab("logs", "ctr/talker").stdout  # from Docker
    nslab("exec", "ctr/a", "--", "busybox", "ping", "-c1", "-W2", "web")
    nslab("down", "ctr")
    assert lab_containers() == []


def test_a_command_that_cannot_start_rolls_back_with_dockers_reason(lab_dir):
    path = lab_dir / "nslab.yaml"
    path.write_text(LAB.replace("[httpd, -f, -p, \"80\", -h, /www]", "[/bin/no-such-program]"))
    result = nslab("up", "-f", str(path), check=False)
    assert result.returncode == 1, result
    assert "ctr-web" in result.stderr and "no-such-program" in result.stderr
    assert "Traceback" not in result.stderr
    assert lab_containers() == []
    assert sh("ls /run/netns").stdout.split() == ["wan"]
    assert nslab_links() == []


DUAL = f"""\
name: ctr
networks:
  net: {{subnet: 10.83.2.0/24, subnet6: "fd00:83::/64"}}
hosts:
  a: {{networks: [net]}}
  web:
    image: {HOSTS_IMAGE}
    command: [httpd, -f, -p, "80", -h, /www]
    networks: [net]
"""


def test_a_container_on_a_dual_stack_network_is_wired_like_a_light_host(lab_dir):
    path = lab_dir / "nslab.yaml"
    path.write_text(DUAL)
    nslab("up", "-f", str(path))
    inside = sh("ip -n ctr-web -6 addr show dev eth0").stdout
    assert "fd00:83::" in inside and "scope link" in inside  # its global address and a link-local one
    assert "default via fd00:83::1" in sh("ip -n ctr-web -6 route").stdout
    # the namespace got a light host's IPv6 defaults before its interfaces: addresses kept on down, no DAD
    keep = sh("ip netns exec ctr-web cat /proc/sys/net/ipv6/conf/eth0/keep_addr_on_down").stdout.strip()
    assert keep == "1"
    # by name over IPv6, both ways: the light host with the machine's ping, the container with busybox's
    assert nslab("exec", "ctr/a", "--", "ping", "-6", "-c1", "-W2", "web", check=False).returncode == 0
    assert nslab("exec", "ctr/web", "--", "ping", "-6", "-c1", "-W2", "a", check=False).returncode == 0
    nslab("down", "ctr")
    assert lab_containers() == [] and nslab_links() == []


def test_a_container_hosts_containment_goes_to_docker(lab_dir):
    """user, cap_drop/cap_add, read_only, private_tmp on a container host: Docker's own options, seen on the
    container's process (its /proc entries)."""
    path = lab_dir / "nslab.yaml"
    path.write_text(f"""\
name: ctr
networks:
  net: {{}}
hosts:
  box:
    image: {HOSTS_IMAGE}
    command: [sleep, "600"]
    networks: [net]
    user: "65534:65534"
    cap_drop: [ALL]
    cap_add: [NET_BIND_SERVICE]
    read_only: true
    private_tmp: true
""")
    nslab("up", "-f", str(path))
    inspected = json.loads(docker("inspect", "ctr-box").stdout)[0]
    config = inspected["HostConfig"]
    assert config["CapDrop"] == ["ALL"] and config["CapAdd"] == ["NET_BIND_SERVICE"] and config["ReadonlyRootfs"]
    assert set(config["Tmpfs"]) == {"/tmp", "/run"} and config["SecurityOpt"] == ["no-new-privileges:true"]
    pid = inspected["State"]["Pid"]
    with open(f"/proc/{pid}/status") as fh:
        status = dict(line.rstrip("\n").split(":\t", 1) for line in fh if ":\t" in line)
    assert status["Uid"].split()[0] == "65534" and status["NoNewPrivs"] == "1"
    assert int(status["CapBnd"], 16) == 1 << 10  # net_bind_service alone
    with open(f"/proc/{pid}/mountinfo") as fh:
        root = next(line.split() for line in fh if line.split()[4] == "/")
    assert root[5].startswith("ro")
    with open(f"/proc/{pid}/root/etc/hosts") as fh:  # the lab's, through Docker's own file (read-only inside)
        assert "box" in fh.read().split()
    nslab("down", "ctr")
    assert lab_containers() == []


STOPPABLE = f"""\
name: ctr
networks:
  net: {{subnet: 10.83.2.0/24}}
hosts:
  a: {{networks: [net], run: "exec sleep 731"}}
  web:
    image: {HOSTS_IMAGE}
    command: [sh, -c, "mkdir -p /www; trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]
    networks: [net]
"""


def _container(name: str) -> dict:
    state: dict = json.loads(docker("inspect", name).stdout)[0]["State"]
    return state


def _fetch(target: str) -> str:
    return nslab("exec", "ctr/a", "--", "busybox", "wget", "-qO-", f"http://{target}/").stdout.strip()


def test_stop_start_restart_a_container_host_keeps_its_filesystem(lab_dir):
    import os

    from labs import SERVICES_ENV, lab_status, wait_for

    env = dict(SERVICES_ENV, DOCKER_HOST=os.environ["DOCKER_HOST"])  # (the private dockerd's)
    path = lab_dir / "nslab.yaml"
    path.write_text(STOPPABLE)
    nslab("up", "-f", str(path), env=env)
    nslab("exec", "ctr/web", "--", "sh", "-c", "echo written-before > /www/index.html")
    address = sh("ip -n ctr-web -4 -o addr show eth0").stdout.split()[3].split("/")[0]
    assert _fetch("web") == "written-before"

    def service_pid() -> int:
        return wait_for(lambda: next((s["pid"] for s in lab_status("ctr", env=env)["hostsetup"]["services"]
                                      if s["state"] == "running"), None))

    light = service_pid()
    first = _container("ctr-web")["Pid"]

    assert nslab("stop", "ctr/web", env=env).stdout.strip() == "ctr/web: stopped"
    assert not _container("ctr-web")["Running"]
    assert "UP" not in json.loads(sh("ip -n ctr-web -j link show eth0").stdout)[0]["flags"]
    doc = lab_status("ctr", env=env)  # exit 0: stopped on purpose is no drift
    assert doc["drift"] == [] and doc["host_state"]["stopped"] == ["web"]
    assert {h["name"]: h["state"] for h in doc["hosts"]}["web"] == "stopped"
    cells = {(c["source"], c["target"]): c for c in json.loads(
        nslab("check", "ctr", "--json", "--timeout", "3", env=env).stdout)["cells"]}
    assert not cells[("a", "web")]["expected"] and not cells[("a", "web")]["reachable"]
    nslab("up", "-f", str(path), env=env)  # up keeps it stopped
    assert not _container("ctr-web")["Running"] and lab_status("ctr", env=env)["drift"] == []
    assert service_pid() == light

    assert nslab("start", "ctr/web", env=env).stdout.strip() == "ctr/web: started"
    assert _container("ctr-web")["Running"] and _container("ctr-web")["Pid"] != first
    # its filesystem kept, reached by name and by address in its new namespace
    assert _fetch("web") == "written-before" and _fetch(address) == "written-before"
    doc = lab_status("ctr", env=env)
    assert doc["drift"] == [] and doc["host_state"]["stopped"] == []
    assert service_pid() == light

    second = _container("ctr-web")["Pid"]
    nslab("restart", "ctr/web", env=env)
    assert _container("ctr-web")["Running"] and _container("ctr-web")["Pid"] != second
    assert _fetch("web") == "written-before"
    assert lab_status("ctr", env=env)["drift"] == [] and service_pid() == light
    nslab("down", "ctr")
    assert docker("ps", "-aq", "--filter", "label=nslab.lab=ctr").stdout.split() == []
