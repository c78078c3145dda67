"""The peers' rows of the benchmark (issue 15), each measured inside its own fresh throwaway host.

    python -m bench.peer_rows updown '{"peer": "cni", "n": 100, "repeat": 3}'
    python -m bench.peer_rows exec '{"peers": ["docker", "mininet"], "calls": 50}'

Same protocol as bench/rows.py (one ``BENCH-RESULT {json}`` line on stdout; raw samples, medians computed by
the caller). The peers build the topology of row 1 (N hosts on one NAT bridge: an address on the bridge, a
default route via it, masquerade to the outside), each its own way:

* ``docker``: a dockerd started here (in the throwaway host's network namespace, with its data-root,
  exec-root and socket on a tmpfs that only this process's mount namespace sees, ``--bridge none``, its
  containers' cgroups under one parent removed afterwards), an image imported from busybox-static (no
  registry), then bench/peer_docker.sh;
* ``cni``: bench/peer_cni.sh (the reference bridge plugin with host-local IPAM and ipMasq);
* ``netavark``: bench/peer_netavark.sh;
* ``mininet``: bench/peer_mininet.py, run by /usr/bin/python3.

Every peer row also brings row 1's nslab lab up and down in the same loop, alternating with the peer, so
that "× nslab" is a ratio measured side by side (the machine is shared, its speed drifts between rows).

The exec row interleaves, in one loop, ``ip netns exec``, ``nslab exec`` (CLI) and ``Lab.exec`` (API) on a
10-host nslab lab with ``docker exec`` and Mininet's ``node.cmd("true")`` and ``node.cmd("/bin/true")`` (timed
inside the Mininet process; ``true`` is a builtin of the host's bash, ``/bin/true`` is a new process).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.labfile import LAB, lab_text, namespace
from bench.rows import (
    NSLAB,
    RESULT_MARK,
    BenchError,
    check_up,
    rotate,
    run,
    settle,
    timed,
    timed_call,
    write_lab,
)
from nslab import linux
from nslab.tools.sandbox import ThrowawayHost

BENCH = Path(__file__).resolve().parent
DOCKER = "/usr/bin/docker"  # Debian's docker.io client, the same version as its dockerd
DOCKERD = "/usr/sbin/dockerd"
BUSYBOX = "/bin/busybox"
SYSTEM_PYTHON = "/usr/bin/python3"
IMAGE = "nslab-bench/busybox:1"
CGROUP_PARENT = "nslab-bench-docker"
CGROUP_ROOT = "/sys/fs/cgroup"


@contextlib.contextmanager
def private_tmpfs(*paths: str) -> Iterator[None]:
    """A tmpfs over each existing PATH, seen by this process and its children only (the throwaway host's
    private mount namespace): what a peer writes there never reaches the machine."""
    mounted = []
    try:
        for path in paths:
            if os.path.isdir(path):
                linux.mount("tmpfs", path, "tmpfs", 0, "mode=755")
                mounted.append(path)
        yield
    finally:
        for path in reversed(mounted):
            linux.umount(path)


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[str]:
    """An empty directory on the machine with a private tmpfs over it; removed (empty) afterwards."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        with private_tmpfs(path):
            yield path
    finally:
        os.rmdir(path)


# ------------------------------------------------------------------------------------------------
# Docker
# ------------------------------------------------------------------------------------------------


def docker(*args: str, timeout: float = 600) -> str:
    return run([DOCKER, *args], timeout=timeout).stdout


def import_image() -> None:
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(f"{root}/bin")
        shutil.copy(BUSYBOX, f"{root}/bin/busybox")
        for applet in ("sh", "sleep", "true"):
            os.symlink("busybox", f"{root}/bin/{applet}")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        done = subprocess.run([DOCKER, "import", "-", IMAGE], stdin=tar.stdout, capture_output=True, text=True)
        tar.wait()
        if done.returncode != 0:
            raise BenchError(f"docker import: {done.stderr.strip()}")


def docker_cgroups() -> list[str]:
    return [p for c in os.listdir(CGROUP_ROOT) if os.path.isdir(p := os.path.join(CGROUP_ROOT, c, CGROUP_PARENT))]


def remove_docker_cgroups() -> None:
    for top in docker_cgroups():
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


@contextlib.contextmanager
def docker_engine(host: ThrowawayHost) -> Iterator[None]:
    """A dockerd of our own in the throwaway host; DOCKER_HOST points at it while inside."""
    with (
        scratch_dir("nslab-bench-docker-") as work,
        private_tmpfs("/run/docker", "/run/containerd", "/etc/docker", "/var/lib/docker"),
    ):
        sock = f"{work}/docker.sock"
        argv = [DOCKERD, "--data-root", f"{work}/root", "--exec-root", f"{work}/exec"]
        argv += ["--pidfile", f"{work}/docker.pid", "-H", f"unix://{sock}", "--bridge", "none"]
        argv += ["--cgroup-parent", f"/{CGROUP_PARENT}"]
        with open(f"{work}/dockerd.log", "w") as log:
            daemon = host.popen(argv, stdout=log, stderr=subprocess.STDOUT)
        os.environ["DOCKER_HOST"] = f"unix://{sock}"
        try:
            deadline = time.monotonic() + 60
            while run([DOCKER, "version"], check=False, timeout=30).returncode != 0:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"dockerd did not start: {Path(work, 'dockerd.log').read_text()[-400:]}")
                time.sleep(0.3)
            import_image()
            yield
        finally:
            left = run([DOCKER, "ps", "-aq"], check=False, timeout=60).stdout.split()
            if left:
                run([DOCKER, "rm", "-f", *left], check=False, timeout=600)
            del os.environ["DOCKER_HOST"]
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()
            host._kill_stragglers()  # containerd and its shims, before their mounts go
            for point in reversed(mounts_under(work)):
                with contextlib.suppress(OSError):
                    linux.umount(point)


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted(p for p in points if p.startswith(path + "/"))


def docker_containers() -> int:
    return len(docker("ps", "-q").split())


# ------------------------------------------------------------------------------------------------
# Row 1: up / down of N hosts
# ------------------------------------------------------------------------------------------------


Cycle = Callable[[], tuple[float, float]]  # one up + check + down: (up seconds, down seconds)


def script_cycle(up: list[str], down: list[str], check: Callable[[], None]) -> Cycle:
    def cycle() -> tuple[float, float]:
        took = timed(up)
        check()
        return took, timed(down)

    return cycle


def updown_loop(repeat: int, peer: Cycle, nslab: Cycle) -> dict[str, list[float]]:
    """The peer and nslab (row 1's lab) in one loop, in rotating order, so that the ratio between them is
    measured side by side; the kernel's dismantling after each down is waited for, not timed."""
    times: dict[str, list[float]] = {k: [] for k in ("up", "down", "nslab_up", "nslab_down", "settle_after_down")}
    ways = {"": peer, "nslab_": nslab}
    for r in range(repeat):
        for prefix in rotate(list(ways), r):
            settle()
            up, down = ways[prefix]()
            times[f"{prefix}up"].append(up)
            times[f"{prefix}down"].append(down)
            if not prefix:
                times["settle_after_down"].append(settle())
    return times


def nslab_cycle(n: int) -> Cycle:
    return script_cycle([NSLAB, "up", "-f", write_lab(n)], [NSLAB, "down", LAB], lambda: check_up(f"{LAB}-h", n))


def updown_docker(host: ThrowawayHost, n: int, repeat: int) -> dict[str, list[float]]:
    script = str(BENCH / "peer_docker.sh")

    def check() -> None:
        if docker_containers() != n:
            raise BenchError(f"docker: expected {n} running containers, found {docker_containers()}")

    os.environ["DOCKER"] = DOCKER
    try:
        with docker_engine(host):
            cycle = script_cycle([script, "up", str(n), IMAGE], [script, "down", str(n), IMAGE], check)
            return updown_loop(repeat, cycle, nslab_cycle(n))
    finally:
        remove_docker_cgroups()


def updown_script(peer: str, n: int, repeat: int, prefix: str) -> dict[str, list[float]]:
    script = str(BENCH / f"peer_{peer}.sh")
    with scratch_dir(f"nslab-bench-{peer}-") as data:
        cycle = script_cycle([script, "up", str(n), data], [script, "down", str(n), data], lambda: check_up(prefix, n))
        return updown_loop(repeat, cycle, nslab_cycle(n))


def updown_mininet(n: int, repeat: int) -> dict[str, list[float]]:
    def cycle() -> tuple[float, float]:  # a new Mininet process per cycle (its start and import not timed)
        out = run([SYSTEM_PYTHON, str(BENCH / "peer_mininet.py"), "updown", str(n), "1"]).stdout
        times = json.loads(out.strip().splitlines()[-1])
        return times["up"][0], times["down"][0]

    # Mininet's NAT node appends "iface nat0-eth0 inet manual" to /etc/network/interfaces (and restarts
    # network-manager if it had to): a private tmpfs over /etc/network holding that line already
    with private_tmpfs("/etc/network"):
        Path("/etc/network/interfaces").write_text("\niface nat0-eth0 inet manual\n")
        return updown_loop(repeat, cycle, nslab_cycle(n))


def row_updown(host: ThrowawayHost, peer: str, n: int, repeat: int) -> dict:
    if peer == "docker":
        times = updown_docker(host, n, repeat)
    elif peer == "cni":
        times = updown_script("cni", n, repeat, "cni-h")
    elif peer == "netavark":
        times = updown_script("netavark", n, repeat, "nv-h")
    elif peer == "mininet":
        times = updown_mininet(n, repeat)
    else:
        raise BenchError(f"unknown peer {peer}")
    return {"peer": peer, "n": n, "repeat": repeat, **times}


# ------------------------------------------------------------------------------------------------
# Row 2: exec latency
# ------------------------------------------------------------------------------------------------


class MininetShell:
    """bench/peer_mininet.py serve: a 2-host Mininet whose h1.cmd("true") is timed in its own process."""

    def __init__(self, host: ThrowawayHost) -> None:
        self.proc = host.popen(
            [SYSTEM_PYTHON, str(BENCH / "peer_mininet.py"), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def cmd(self, command: str) -> float:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"cmd {command}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError("mininet: the serving process ended")
        return float(line)

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


def row_exec(host: ThrowawayHost, peers: list[str], calls: int, hosts: int = 10) -> dict:
    with contextlib.ExitStack() as stack:
        run([NSLAB, "up", "-f", write_lab(hosts)])
        stack.callback(run, [NSLAB, "down", LAB], check=False)
        from nslab.lab import Lab  # imported before timing: a live Python process

        lab = Lab.from_text(lab_text(hosts))
        measures: dict[str, Callable[[], float]] = {
            "ip_netns_exec": lambda: timed(["ip", "netns", "exec", namespace(1), "true"], timeout=60),
            "nslab_cli": lambda: timed([NSLAB, "exec", "h1", "true"], timeout=60),
            "api_lab_exec": lambda: timed_call(lambda: lab.exec("h1", ["true"])),
        }
        if "docker" in peers:
            stack.callback(remove_docker_cgroups)
            stack.enter_context(docker_engine(host))
            docker("run", "-d", "--name", "dk-h1", IMAGE, "sleep", "1000000")
            measures["docker_exec"] = lambda: timed([DOCKER, "exec", "dk-h1", "true"], timeout=60)
        if "mininet" in peers:
            stack.enter_context(private_tmpfs("/etc/network"))
            Path("/etc/network/interfaces").write_text("\niface nat0-eth0 inet manual\n")
            shell = MininetShell(host)
            stack.callback(shell.close)
            # `true` is a bash builtin: node.cmd("true") starts no process; "/bin/true" does, as every other way
            measures["mininet_cmd"] = lambda: shell.cmd("true")
            measures["mininet_cmd_bin"] = lambda: shell.cmd("/bin/true")
        samples: dict[str, list[float]] = {k: [] for k in measures}
        for m in measures.values():  # warm up
            m()
        for i in range(calls):
            for k in rotate(list(measures), i):
                samples[k].append(measures[k]())
    return {"calls": calls, "samples": samples}


# ------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    row, args = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    host = ThrowawayHost().enter()
    try:
        if row == "updown":
            result = row_updown(host, **args)
        elif row == "exec":
            result = row_exec(host, **args)
        else:
            raise SystemExit(f"unknown row {row}")
    except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
        result = {"error": str(exc)}
    finally:
        host.leave()
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
