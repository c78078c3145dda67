"""A Docker engine for integration tests, and containers on it (a pytest plugin: tests/conftest.py loads it).

The session fixture :func:`docker_engine` uses a Docker engine that already answers, or starts its own
``dockerd`` (stopped at the end): in its *own network namespace* (so docker0, its veths and its iptables/nft
rules never touch the real machine's network), with its own data-root, exec-root and API socket under a
temporary directory (passed to docker and nslab as DOCKER_HOST). The test images are built locally from
busybox-static (no registry). Containers labelled ``nslab-test`` are removed at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from sandbox import sh

IMAGE = "nslab-test/busybox:1"
TOOLS_IMAGE = "nslab-test/busybox-tools:1"
HOSTS_IMAGE = "nslab-test/busybox-host:1"  # for container hosts: a server, a client, name lookups
BUSYBOX = "/bin/busybox"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def _answers(sock: str) -> bool:
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}")
    try:
        return subprocess.run(["docker", "version"], env=env, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _image(tag: str, applets: list[str], extra: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(f"{root}/bin")
        os.makedirs(f"{root}/www")
        os.makedirs(f"{root}/etc")
        Path(f"{root}/etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
        Path(f"{root}/etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
        shutil.copy(BUSYBOX, f"{root}/bin/busybox")
        for applet in applets:
            os.symlink("busybox", f"{root}/bin/{applet}")
        for name, text in extra.items():
            Path(f"{root}/bin/{name}").write_text(text)
            os.chmod(f"{root}/bin/{name}", 0o755)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        done = subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, capture_output=True, text=True)
        tar.wait()
        if done.returncode != 0:
            raise AssertionError(f"docker import failed: {done.stderr}")


@pytest.fixture(scope="session")
def docker_engine():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which("docker") is None or shutil.which("dockerd") is None:
        pytest.skip("docker/dockerd not installed (dev/setup.sh installs Debian's docker.io)")
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (needed to build the test image)")
    saved = os.environ.get("DOCKER_HOST")
    existing = saved[len("unix://") :] if saved and saved.startswith("unix://") else "/var/run/docker.sock"
    workdir = None
    daemon = None
    if not _answers(existing):
        workdir = tempfile.mkdtemp(prefix="nslab-dockerd-")
        sock = f"{workdir}/docker.sock"
        log = open(f"{workdir}/dockerd.log", "w")
        daemon = subprocess.Popen(
            [
                "unshare",
                "--net",
                "--",
                "sh",
                "-c",
                'ip link set lo up && exec dockerd "$@"',
                "dockerd",
                "--data-root",
                f"{workdir}/root",
                "--exec-root",
                f"{workdir}/exec",
                "--pidfile",
                f"{workdir}/docker.pid",
                "-H",
                f"unix://{sock}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not _answers(sock):
            if daemon.poll() is not None or time.monotonic() > deadline:
                _stop(daemon, workdir)
                tail = Path(f"{workdir}/dockerd.log").read_text()[-600:] if workdir else ""
                shutil.rmtree(workdir, ignore_errors=True)
                pytest.skip(f"dockerd could not start: {tail}")
            time.sleep(0.3)
        existing = sock
    os.environ["DOCKER_HOST"] = f"unix://{existing}"
    try:
        _image(IMAGE, ["sh", "httpd", "sleep"], {})
        btool = "#!/bin/sh\necho B-TOOL\nip -o addr\n"
        _image(TOOLS_IMAGE, ["sh", "sleep", "ip", "cat", "hostname", "id"], {"btool": btool})
        _image(HOSTS_IMAGE, ["sh", "httpd", "sleep", "ping", "wget", "cat", "hostname", "nc", "ip", "echo"], {})
        yield existing
    finally:
        try:
            for label in ("nslab-test", "nslab.lab"):
                for cid in docker("ps", "-aq", "--filter", f"label={label}", check=False).stdout.split():
                    docker("rm", "-f", cid, check=False)
        finally:
            if saved is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = saved
            if daemon is not None:
                _stop(daemon, workdir)
                shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def containers(docker_engine, host):
    """Start containers (labelled, removed afterwards); yields a starter: start(image, *cmd) -> name."""
    names: list[str] = []

    def start(image: str, *cmd: str) -> str:
        name = f"nslab-test-{uuid.uuid4().hex[:8]}"
        docker("run", "-d", "--label", "nslab-test", "--name", name, image, *cmd)
        names.append(name)
        return name

    try:
        yield start
    finally:
        for name in names:
            docker("rm", "-f", name, check=False)


def _stop(daemon: subprocess.Popen, workdir: str | None) -> None:
    if daemon.poll() is None:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
    if workdir:  # whatever dockerd left mounted under its directories
        out = sh(f"grep -o ' {workdir}[^ ]*' /proc/self/mountinfo | sort -r", check=False).stdout
        for point in out.split():
            sh(f"umount -l {point}", check=False)


