"""Converging `up` on the real kernel: only the services whose definition changed restart (the others keep
their process), a host recreated by the wiring restarts its own services, and the dry-run says which."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from labfiles import lab_text
from labs import NSLAB, lab_leftovers, lab_status, private_resolver, settled, wait_for
from labs import nslab as run_nslab
from nslab import paths
from nslab.drivers import procfs
from sandbox import UPLINK_ADDRESS, nslab_cgroups, sh
from traffic import fetch

ENV = {**os.environ, "NSLAB_STOP_TIMEOUT": "1"}

LAB = lab_text(
    "conv", {"front": "10.82.1.0/24", "back": "10.82.2.0/24"}, hosts={
        "steady": "networks: [front], run: exec sleep 1001", "edited": "networks: [front], run: exec sleep 1002",
        "moved": "networks: [back], run: exec sleep 1003",
    },
)


def nslab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_nslab(*args, check=check, env=ENV)


def running_pids(name: str) -> dict[str, int]:
    """service id -> pid, once every service runs."""

    def running() -> dict[str, int]:
        services = lab_status(name, env=ENV)["hostsetup"]["services"]
        return {s["id"]: s["pid"] for s in services if s["state"] == "running"}

    return settled(running, lambda found: len(found) == 3, interval=0.05)


def test_only_changed_services_restart(host, tmp_path):
    private_resolver(tmp_path)  # the machine's resolver: never the real one
    path = tmp_path / "nslab.yaml"
    path.write_text(LAB)
    nslab("up", "-f", str(path))
    try:
        first = running_pids("conv")
        assert set(first) == {"steady", "edited", "moved"}

        # `edited` gets a new command, `moved` a new network (its host is recreated), `steady` nothing
        path.write_text(LAB.replace("sleep 1002", "sleep 2002").replace("networks: [back]", "networks: [front]"))
        script = nslab("up", "--dry-run", "-f", str(path)).stdout
        reload_line = next(line for line in script.splitlines() if line.startswith("kill -HUP"))
        assert "steady" not in reload_line and "edited" in reload_line and "moved" in script, script
        nslab("up", "-f", str(path))
        second = running_pids("conv")
        assert second["steady"] == first["steady"]  # untouched
        assert second["edited"] != first["edited"] and second["moved"] != first["moved"]
        ps = subprocess.run(["ps", "-o", "args=", "-p", str(second["edited"])], capture_output=True, text=True)
        assert "sleep 2002" in ps.stdout
        # and an unchanged up touches nothing at all
        assert "nothing to do" in nslab("up", "--dry-run", "-f", str(path)).stdout
        nslab("up", "-f", str(path))
        assert running_pids("conv") == second
    finally:
        nslab("down", "conv", check=False)


# --- processes follow their host; nothing left by a failed up (issue 22) ------------------------------------
WEB = """\
name: cv
networks:
  front: {subnet: 10.66.1.0/24}
hosts:
  web:
    networks: [front]
    publish: ["7001:8000"]
    run: exec python3 -m http.server 8000
"""


def service_pid(name: str, service: str) -> int:
    def pid() -> int | None:
        found = [s["pid"] for s in lab_status(name, env=ENV)["hostsetup"]["services"]
                 if s["id"] == service and s["state"] == "running"]
        return found[0] if found else None

    return wait_for(pid)


def net_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def lab_processes(name: str) -> list[str]:
    """Processes of lab ``name`` on the machine (by the mark its services carry) and its cgroups."""
    pids = [p for p in procfs.pids() if procfs.environ_has(p, "NSLAB_LAB", name)]
    return [procfs.describe(p) for p in pids] + [c for c in nslab_cgroups() if f"/nslab/{name}-" in c]


@pytest.fixture
def web(host, tmp_path):
    """The lab of :data:`WEB` brought up; its file's path. Taken down after the test."""
    private_resolver(tmp_path)
    path = tmp_path / "nslab.yaml"
    path.write_text(WEB)
    nslab("up", "-f", str(path))
    yield path
    nslab("down", "cv", check=False)


def test_a_recreated_host_takes_its_service_along(web):
    """The subnet edit: the host is made again, its service with it (in the same plan, said by the dry-run)."""
    first = service_pid("cv", "web")
    web.write_text(WEB.replace("10.66.1.0", "10.66.9.0"))
    dry = nslab("up", "--dry-run", "-f", str(web)).stdout
    assert any(line.startswith("kill -HUP") and "stops web" in line for line in dry.splitlines()), dry
    nslab("up", "-f", str(web))
    assert settled(lambda: fetch(UPLINK_ADDRESS, 7001, timeout=1), bool, timeout=2)  # (answered within 2 s)
    pid = service_pid("cv", "web")
    assert pid != first and net_of(pid) == os.stat("/run/netns/cv-web").st_ino
    assert "no drift" in nslab("status", "cv").stdout


def test_a_service_outside_its_host_is_drift_and_up_repairs_it(host, tmp_path):
    """A process that left its host's network namespace (as the service of the subnet edit did before processes
    followed their host): `status` names it, `up` starts it again inside and says so."""
    private_resolver(tmp_path)
    path = tmp_path / "nslab.yaml"
    path.write_text(WEB.replace("exec python3 -m http.server 8000", "exec unshare -n sleep 1000"))
    nslab("up", "-f", str(path))
    try:
        first = service_pid("cv", "web")
        wait_for(lambda: net_of(first) != os.stat("/run/netns/cv-web").st_ino)
        status = settled(lambda: nslab("status", "cv", check=False), lambda r: r.returncode == 1)
        assert status.returncode == 1, status.stdout
        assert f"services: web (pid {first}) runs outside host web's network namespace" in status.stdout
        repaired = nslab("up", "-f", str(path)).stdout
        assert f"repaired: services: web (pid {first}) runs outside" in repaired, repaired
        assert service_pid("cv", "web") != first
    finally:
        nslab("down", "cv", check=False)


def test_down_works_with_the_state_directory_full(host, tmp_path):
    private_resolver(tmp_path)
    path = tmp_path / "nslab.yaml"
    path.write_text(WEB.replace("name: cv", "name: full"))
    sh("mount -t tmpfs -o size=64k tmpfs /run/nslab")
    try:
        nslab("up", "-f", str(path))
        sh("dd if=/dev/zero of=/run/nslab/filler bs=1k count=64", check=False)  # (until it is full)
        nslab("down", "full")
        assert lab_processes("full") == [] and lab_leftovers("full") == []
    finally:
        nslab("down", "full", check=False)
        sh("umount /run/nslab")


@pytest.mark.parametrize("free", [8, 12, 20, 28])  # fails at: hosts, firewall, services, the state
def test_a_full_state_directory_leaves_no_process(host, tmp_path, free):
    """The state directory fills up at some step of `up` (how far it gets depends on ``free`` KiB): one line,
    exit 1, and no process or cgroup of the lab afterwards; `down` then leaves nothing either."""
    private_resolver(tmp_path)
    path = tmp_path / "nslab.yaml"
    path.write_text(WEB.replace("name: cv", "name: full"))
    sh("mount -t tmpfs -o size=64k tmpfs /run/nslab")
    try:
        sh(f"dd if=/dev/zero of=/run/nslab/filler bs=1k count={64 - free}")
        result = nslab("up", "-f", str(path), check=False)
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert lab_processes("full") == []
        nslab("down", "full")  # (the state directory still full)
        assert lab_processes("full") == [] and lab_leftovers("full") == []
    finally:
        nslab("down", "full", check=False)
        sh("umount /run/nslab")


def test_status_says_a_lab_is_being_changed_and_still_names_drift(host, tmp_path):
    """`status` in a loop while eight nslab processes make, change and take down labs (four `up`/`down`
    workers, four `nslab run`s): never drift for a lab being changed, always for a lab damaged by hand."""
    private_resolver(tmp_path)
    damaged = tmp_path / "damaged.yaml"
    damaged.write_text("name: dmg\nnetworks:\n  n: {subnet: 10.68.0.0/24}\nhosts:\n  h: {networks: [n]}\n")
    nslab("up", "-f", str(damaged))
    workers = []
    try:
        sh("ip -n dmg-h link set eth0 down")
        for i in range(4):
            path = tmp_path / f"w{i}.yaml"
            path.write_text(f"name: w{i}\nnetworks:\n  n: {{subnet: 10.68.{i + 1}.0/24}}\nhosts:\n"
                            f"  a: {{networks: [n], run: exec sleep 100{i}}}\n  b: {{networks: [n]}}\n")
            script = f"for k in 1 2 3; do {NSLAB} up -f {path} >/dev/null && {NSLAB} down w{i} >/dev/null; done"
            workers.append(host.popen(["sh", "-c", script], env=ENV))
            workers.append(host.popen(["sh", "-c", f"for k in 1 2 3; do {NSLAB} run --network nat -- true; done"],
                                      env=ENV))
        seen_changing = 0
        while any(w.poll() is None for w in workers):
            result = nslab("status", "--json", check=False)
            assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
            doc = json.loads(result.stdout)
            labs = {lab["name"]: lab for lab in doc["labs"]}
            assert labs["dmg"]["drift"] and "changing" not in labs["dmg"], labs["dmg"]
            assert {name: lab["drift"] for name, lab in labs.items() if name != "dmg" and lab["drift"]} == {}
            seen_changing += sum("changing" in lab for lab in labs.values()) + len(doc.get("changing", []))
        assert [w.returncode for w in workers] == [0] * 8
        assert seen_changing, "no status ran while a lab was being changed"
        assert "is being changed" not in nslab("status", check=False).stdout
    finally:
        for w in workers:
            w.kill()
            w.wait()
        nslab("down", "dmg", check=False)


def test_down_returns_when_the_labs_links_are_gone(host, tmp_path):
    """Right after `down` of a three-host lab with services, none of its links is on the machine (the kernel
    dismantles namespaces asynchronously: `down` waits for their veths)."""
    private_resolver(tmp_path)
    path = tmp_path / "nslab.yaml"
    path.write_text("name: d3\nnetworks:\n  n: {subnet: 10.69.0.0/24}\nhosts:\n"
                    + "".join(f"  h{i}: {{networks: [n], run: exec sleep 100{i}}}\n" for i in range(3)))
    for _ in range(5):
        nslab("up", "-f", str(path))
        nslab("down", "d3")
        assert "nslab:d3:" not in sh("ip -o link").stdout


@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9, 1.2])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_a_signal_during_up_then_down_leaves_no_process(host, tmp_path, delay, sig):
    """`up` of a lab with services stopped by a signal at some point (before, while or after its supervisor
    starts): an `up` rolled back leaves no process or cgroup of the lab, nor does `down` after it."""
    private_resolver(tmp_path)
    path = tmp_path / "nslab.yaml"
    path.write_text(WEB.replace("name: cv", "name: sig"))
    proc = subprocess.Popen([NSLAB, "up", "-f", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    if sig == signal.SIGTERM and not os.path.exists(paths.state_file("sig")):  # rolled back (after the save: up)
        assert settled(lambda: lab_processes("sig"), lambda left: not left) == []
    nslab("down", "sig")
    assert settled(lambda: lab_processes("sig"), lambda left: not left) == [] and lab_leftovers("sig") == []


def test_a_lost_hostname_pin_is_drift_and_the_service_follows_the_new_one(web):
    first = service_pid("cv", "web")
    pin = paths.uts_path("cv", "web")
    sh(f"umount {pin}")
    assert "drift: host web: its hostname namespace (" in nslab("status", "cv", check=False).stdout
    assert "repaired: host web: its hostname namespace (" in nslab("up", "-f", str(web)).stdout
    pid = service_pid("cv", "web")
    assert pid != first and os.stat(f"/proc/{pid}/ns/uts").st_ino == os.stat(pin).st_ino
    assert nslab("exec", "cv/web", "--", "hostname").stdout.strip() == "web"
    assert "no drift" in nslab("status", "cv").stdout


def test_check_doctor_graph_and_status_say_a_lab_is_being_changed(host, tmp_path):
    """A lab whose intent names a live nslab process (this one, standing in for an `up` at work): each reader
    says so, exit 0, instead of examining a half-made lab."""
    from nslab.core import state

    private_resolver(tmp_path)
    state.write_intent("busy", ["busy-h"], [])
    line = f"lab busy is being changed by nslab up (pid {os.getpid()}, since "
    for args in (["status", "busy"], ["check", "busy"], ["doctor", "busy"], ["doctor"], ["graph", "busy"]):
        result = run_nslab(*args, ok=(0, 1) if args == ["doctor"] else (0,))  # (wan has no default route)
        assert line in result.stdout + result.stderr, (args, result.stdout, result.stderr)
    assert json.loads(nslab("status", "--json").stdout)["changing"][0].startswith(line)
    state.clear_intent("busy")
    os.rmdir(paths.lab_dir("busy"))
