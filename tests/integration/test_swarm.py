"""Docker Swarm as the engine (nslab.tools.swarm): three machines, each with its own dockerd, form a swarm
(sandbox.Swarm); ``nslab image build`` puts the nslab image on each; ``nslab up --engine swarm`` from the manager
(machine a) runs each machine's part as a service whose namespaces show on that machine; ``exec``, ``status`` and
``down`` work from the manager; a node without the image is named before any service exists."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from labs import NSLAB, wait_for
from nslab.tools.sandbox import Machines, Swarm

ONE_PART = """\
name: sw
networks:
  lan: {}
hosts:
  h1: {networks: [lan]}
  h2:
    networks: [lan]
    run: echo hello-from-h2; exec sleep 1001
"""

#: The lab over the three machines, against the contract of `machines:` / `up --machine` (issue 25 items 1-2).
THREE_PARTS = """\
name: sw3
machines:
  a: {address: 198.18.0.1, node: a}
  b: {address: 198.18.0.2, labels: {rack: r2}}
  c: {address: 198.18.0.3, node: c}
networks:
  lan: {}
  back: {internal: true}
hosts:
  ha: {machine: a, networks: [lan]}
  hb: {machine: b, networks: [lan, back]}
  hc:
    machine: c
    networks: [lan, back]
    run: echo hello-from-hc; exec sleep 1001
"""


def _needs_docker() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("docker.io is not installed (dev/setup.sh installs it)")


@pytest.fixture
def swarm(host):
    _needs_docker()
    machines = Machines(host).start()
    try:
        group = Swarm(host, machines).start()
        try:
            yield group
        finally:
            group.stop()
    finally:
        machines.stop()


def _nslab(swarm: Swarm, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``nslab ARGS`` on the manager (machine a), DOCKER_HOST naming its dockerd."""
    manager = swarm.manager
    return subprocess.run(manager.machine.argv([NSLAB, *args]), env=manager.env(inside=True), capture_output=True,
                          text=True, timeout=timeout)


def _build_image(swarm: Swarm, *names: str) -> None:
    for name in names:
        done = subprocess.run([NSLAB, "image", "build"], env=swarm[name].env(), capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("image nslab:"), done.stdout


def _sleepers() -> list[str]:
    """The processes of h2's service (``sleep 1001``), wherever they run."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if fh.read() == b"sleep\x001001\x00":
                    found.append(pid)
        except OSError:
            continue
    return found


def _netns(swarm: Swarm, name: str) -> set[str]:
    return set(os.listdir(swarm[name].machine.path("/run/netns")))


def test_one_part_up_exec_status_down(swarm: Swarm, tmp_path) -> None:
    _build_image(swarm, "a")
    lab = tmp_path / "lab.yaml"
    lab.write_text(ONE_PART)
    started = time.monotonic()
    done = _nslab(swarm, "up", "--engine", "swarm", "-f", str(lab))
    up_seconds = time.monotonic() - started
    done_up = done
    assert done.returncode == 0, done.stderr
    assert "lab sw is up on the swarm" in done.stdout
    assert _netns(swarm, "a") == {"sw-h1", "sw-h2"}  # on the machine, as a local lab's
    assert _netns(swarm, "b") == set() and _netns(swarm, "c") == set()
    listed = swarm.manager.docker("service", "ls", "--filter", "label=nslab.lab=sw", "-q").stdout.split()
    assert len(listed) == 1

    done = _nslab(swarm, "exec", "sw/h1", "--", "hostname")
    assert (done.returncode, done.stdout.strip()) == (0, "h1"), done.stderr

    done = _nslab(swarm, "status", "sw", "--json")
    assert done.returncode == 0, done.stderr
    assert '"engine": "swarm"' in done.stdout and '"sw-h1"' in done.stdout

    done = _nslab(swarm, "check", "sw")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "h1" in done.stdout and "reach" in done.stdout

    assert wait_for(lambda: "hello-from-h2" in _nslab(swarm, "logs", "sw/h2").stdout)
    assert _sleepers()  # the service runs in the part's task

    done = _nslab(swarm, "down", "sw")
    assert done.returncode == 0, done.stderr
    assert _netns(swarm, "a") == set()
    assert swarm.manager.docker("service", "ls", "-q").stdout.strip() == ""
    assert swarm.manager.docker("config", "ls", "-q").stdout.strip() == ""
    assert not os.path.exists(swarm["a"].machine.path("/run/nslab/sw"))
    assert not _sleepers()

    done = subprocess.run([NSLAB, "image", "build", "--tag", "nslab-plus:1", "--from", "nslab:0.1.0"],
                          env=swarm["a"].env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert swarm["a"].docker("run", "--rm", "nslab-plus:1", "nslab", "--version").stdout.startswith("nslab, version")
    print(f"\nswarm up of one part: {up_seconds:.1f} s; {done_up.stdout.strip()}")


def test_node_without_the_image_is_named(swarm: Swarm, tmp_path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(ONE_PART)
    done = _nslab(swarm, "up", "--engine", "swarm", "-f", str(lab))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "node a has no image" in lines[0], done.stderr
    assert swarm.manager.docker("service", "ls", "-q").stdout.strip() == ""


def test_placement_and_a_node_without_the_image(swarm: Swarm, tmp_path) -> None:
    """Each machine's check job lands on its node (by hostname, by label); c lacks the image: one line names
    it, before any service of the lab exists."""
    _build_image(swarm, "a", "b")
    swarm.manager.docker("node", "update", "--label-add", "rack=r2", "b")
    lab = tmp_path / "lab.yaml"
    lab.write_text(THREE_PARTS)
    done = _nslab(swarm, "up", "--engine", "swarm", "-f", str(lab))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert "machine c: node c has no image sha256:" in done.stderr, done.stderr
    assert "machine a" not in done.stderr and "machine b" not in done.stderr
    assert swarm.manager.docker("service", "ls", "-q").stdout.strip() == ""
    assert swarm.manager.docker("config", "ls", "-q").stdout.strip() == ""


def test_a_part_that_fails_is_named_and_nothing_stays(swarm: Swarm, tmp_path) -> None:
    """A file every part would refuse is refused by the manager before the swarm is asked (exit 2, file:line);
    what only the machine can find (here a subnet on machine a's own underlay) fails that part: it is named, and
    what the engine made is removed."""
    _build_image(swarm, "a")
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: bad\nhosts:\n  h1: {networks: [nosuch]}\n")
    done = _nslab(swarm, "up", "--engine", "swarm", "-f", str(lab))
    assert done.returncode == 2
    assert done.stderr.startswith(f"nslab: {lab}:3: hosts.h1.networks.nosuch: unknown network"), done.stderr
    lab.write_text("name: bad\nnetworks:\n  n: {subnet: 198.18.0.0/24}\nhosts:\n  h1: {networks: [n]}\n")
    done = _nslab(swarm, "up", "--engine", "swarm", "-f", str(lab))
    assert done.returncode == 1
    assert done.stderr.startswith("nslab: machine local: ") and "198.18.0.0/24" in done.stderr, done.stderr
    assert swarm.manager.docker("service", "ls", "-q").stdout.strip() == ""
    assert swarm.manager.docker("config", "ls", "-q").stdout.strip() == ""
    assert _netns(swarm, "a") == set()


def test_a_killed_task_takes_its_services_and_the_next_one_converges(swarm: Swarm, tmp_path) -> None:
    """The part's services live in its task's PID namespace: SIGKILL to the task's container ends them with it.
    Swarm starts a new task, whose up converges the part left on the machine; down then clears it."""
    _build_image(swarm, "a")
    lab = tmp_path / "lab.yaml"
    lab.write_text(ONE_PART)
    done = _nslab(swarm, "up", "--engine", "swarm", "-f", str(lab))
    assert done.returncode == 0, done.stderr
    assert wait_for(_sleepers)
    first = swarm["a"].docker("ps", "-q", "--filter", "label=com.docker.swarm.service.name=nslab-sw").stdout.split()
    assert len(first) == 1
    swarm["a"].docker("kill", first[0])
    assert wait_for(lambda: not _sleepers())
    assert _netns(swarm, "a") == {"sw-h1", "sw-h2"}  # the part stays on the machine without its runner

    def restarted() -> bool:
        running = swarm["a"].docker("ps", "-q", "--filter", "label=com.docker.swarm.service.name=nslab-sw")
        return bool(running.stdout.split()) and running.stdout.split() != first and bool(_sleepers())

    assert wait_for(restarted, timeout=60)
    done = _nslab(swarm, "status", "sw", "--json")
    assert done.returncode == 0, done.stdout + done.stderr  # no drift: the new runner's up converged
    done = _nslab(swarm, "down", "sw")
    assert done.returncode == 0, done.stderr
    assert _netns(swarm, "a") == set() and not _sleepers()


def _part_up() -> int | None:
    """The pid of a part runner's ``up`` (``python -m nslab up -f …`` in the task), if one runs."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"\x00-m\x00nslab\x00up\x00-f\x00" in fh.read():
                    return int(pid)
        except OSError:
            continue
    return None


def _sigterm_pending_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
    except OSError:
        return True
    pending = int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)
    return fields["State"].strip().startswith("Z") or bool(pending & 1 << (signal.SIGTERM - 1))


def test_a_part_removed_while_its_up_runs_leaves_nothing(swarm: Swarm, tmp_path) -> None:
    """The service is removed while its runner is inside ``up``: the runner sends up SIGTERM, up rolls back what
    it made, the runner runs down, and the machine is as before. To stop inside up deterministically, the test
    lets the part's up run in 5 ms steps (SIGCONT/SIGSTOP) until its first namespace exists, keeps it stopped
    while the service goes, then lets it go on."""
    _build_image(swarm, "a")
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: sw\nnetworks:\n  lan: {}\nhosts:\n  h:\n    networks: [lan]\n    count: 40\n")
    machine = swarm["a"].machine
    tables_before = machine.run(["nft", "list", "tables"]).stdout
    links_before = machine.run(["ip", "-o", "link"]).stdout.count("\n")
    manager = subprocess.Popen(machine.argv([NSLAB, "up", "--engine", "swarm", "-f", str(lab)]),
                               env=swarm.manager.env(inside=True), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        pid = None
        deadline = time.monotonic() + 120
        while pid is None and time.monotonic() < deadline and manager.poll() is None:
            pid = _part_up()
        assert pid is not None, "the part's up never started: " + (manager.communicate()[1]
                                                                  if manager.poll() is not None else "")
        os.kill(pid, signal.SIGSTOP)
        while not _netns(swarm, "a"):
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.005)
            os.kill(pid, signal.SIGSTOP)
        made = len(_netns(swarm, "a"))
        assert 0 < made < 40, made  # stopped inside up: some of the part made, not all
        service = swarm.manager.docker("service", "ls", "-q", "--filter", "label=nslab.lab=sw").stdout.split()
        assert len(service) == 1
        swarm.manager.docker("service", "rm", service[0])
        # The runner got its SIGTERM once it passes it on: SIGTERM pending on the stopped up (or up is gone,
        # as when a runner SIGKILLs it: then nothing rolls it back and what it made stays, which fails below).
        assert wait_for(lambda: _sigterm_pending_or_gone(pid), timeout=60)
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        manager.communicate(timeout=300)
    finally:
        if manager.poll() is None:
            manager.kill()
            manager.communicate()

    def gone() -> bool:
        found = swarm["a"].docker("ps", "-aq", "--filter", "label=com.docker.swarm.service.name=nslab-sw")
        return not found.stdout.strip()

    assert wait_for(gone, timeout=120)
    assert _netns(swarm, "a") == set()
    assert not os.path.exists(machine.path("/run/nslab/sw"))
    assert machine.run(["nft", "list", "tables"]).stdout == tables_before
    assert machine.run(["ip", "-o", "link"]).stdout.count("\n") == links_before
    assert swarm.manager.docker("service", "ls", "-q").stdout.strip() == ""
    assert swarm.manager.docker("config", "ls", "-q").stdout.strip() == ""


def test_a_stale_engine_mark(swarm: Swarm, tmp_path) -> None:
    """A part whose runner is gone and whose service went with it (``docker service rm`` of a dead task): on a
    worker, down says where to run it; on the manager, which runs no such lab, the mark goes and down does it."""
    lab = tmp_path / "lab.yaml"
    lab.write_text(ONE_PART.replace("exec sleep 1001", "exec sleep 1002"))
    os.chmod(tmp_path, 0o755)
    for name in ("a", "b"):
        machine = swarm[name].machine
        assert machine.run([NSLAB, "up", "-q", "-f", str(lab)]).returncode == 0
        machine.sh("mkdir -p /run/nslab/.engine && echo swarm > /run/nslab/.engine/sw")
    on_b = subprocess.run(swarm["b"].machine.argv([NSLAB, "down", "sw"]), env=swarm["b"].env(inside=True),
                          capture_output=True, text=True)
    assert on_b.returncode == 2 and "on a swarm manager" in on_b.stderr, on_b.stderr
    assert _netns(swarm, "b") == {"sw-h1", "sw-h2"}
    swarm["b"].machine.sh("rm /run/nslab/.engine/sw")
    assert swarm["b"].machine.run([NSLAB, "down", "sw"]).returncode == 0
    done = _nslab(swarm, "down", "sw")
    assert done.returncode == 0 and "lab sw is down" in done.stdout, done.stderr
    assert _netns(swarm, "a") == set() and _netns(swarm, "b") == set()
    assert not os.path.exists(swarm["a"].machine.path("/run/nslab/.engine/sw"))


def test_three_machines(swarm: Swarm, tmp_path) -> None:
    _build_image(swarm, "a", "b", "c")
    swarm.manager.docker("node", "update", "--label-add", "rack=r2", "b")
    lab = tmp_path / "lab.yaml"
    lab.write_text(THREE_PARTS)
    done = _nslab(swarm, "up", "--engine", "swarm", "-f", str(lab))
    assert done.returncode == 0, done.stderr
    print(f"\n{done.stdout.strip()}")
    for name in "abc":  # each machine's part, on that machine
        assert f"sw3-h{name}" in _netns(swarm, name)
        assert not {f"sw3-h{other}" for other in "abc" if other != name} & _netns(swarm, name)
    services = swarm.manager.docker("service", "ls", "--filter", "label=nslab.lab=sw3", "--format",
                                    "{{.Name}}").stdout.split()
    assert sorted(services) == ["nslab-sw3-a", "nslab-sw3-b", "nslab-sw3-c"]

    started = time.monotonic()
    done = _nslab(swarm, "exec", "sw3/hb", "--", "hostname")  # a host on machine b, from the manager
    assert (done.returncode, done.stdout.strip()) == (0, "hb"), done.stderr
    print(f"exec into a host on machine b from the manager: {time.monotonic() - started:.1f} s")
    done = _nslab(swarm, "logs", "sw3/hc")
    assert "hello-from-hc" in done.stdout, done.stderr

    done = _nslab(swarm, "status", "sw3", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert sorted(doc["machines"]) == ["a", "b", "c"] and doc["differs"] == [] and doc["failed"] == {}

    done = _nslab(swarm, "check", "sw3")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("h")]
    assert done.stdout.count("reachability") == 1 and rows == ["ha", "hb", "hc"], done.stdout  # one matrix

    started = time.monotonic()
    done = _nslab(swarm, "down", "sw3")
    assert done.returncode == 0, done.stderr
    print(f"down from the manager: {time.monotonic() - started:.1f} s")
    for name in "abc":
        assert _netns(swarm, name) == set()
        assert not os.path.exists(swarm[name].machine.path("/run/nslab/sw3"))
    assert swarm.manager.docker("service", "ls", "-q").stdout.strip() == ""
    assert swarm.manager.docker("config", "ls", "-q").stdout.strip() == ""
    assert not _sleepers()


def test_the_lab_across_machines_under_swarm(swarm: Swarm, host, tmp_path) -> None:
    """The static mode's lab across three machines (integration/test_machines_lab.py), brought up by Swarm from
    the manager: the same checks on the machines (names, NAT through a, isolation, MTU, the published port),
    check and status from the manager, and down leaves every machine as it was."""
    import test_machines_lab as static

    from machines_lab import LAB, left

    _build_image(swarm, "a", "b", "c")
    lab = tmp_path / "multi.yaml"
    text = LAB.replace(sys.executable, os.path.realpath(sys.executable))  # the image's python
    for index, name in enumerate("abc", start=1):
        address = f"address: 198.18.0.{index}"
        text = text.replace(f"{name}: {{{address}}}", f"{name}: {{{address}, node: {name}}}")
    lab.write_text(text)
    os.chmod(tmp_path, 0o755)
    done = _nslab(swarm, "up", "--engine", "swarm", "-f", str(lab))
    assert done.returncode == 0, done.stderr
    print(f"\n{done.stdout.strip()}")
    static._works_across(swarm.machines, host)
    done = _nslab(swarm, "check", "multi")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(_nslab(swarm, "status", "multi", "--json").stdout)
    assert sorted(doc["machines"]) == ["a", "b", "c"] and doc["differs"] == []
    done = _nslab(swarm, "down", "multi")
    assert done.returncode == 0, done.stderr
    for machine in swarm.machines:
        assert left(machine) == [], machine.name
