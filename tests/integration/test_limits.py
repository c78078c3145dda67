"""Issue 24 item 5: ``resources:`` written to each service's cgroup (v2 files, or the v1 controllers these
machines mount); an OOM kill shows in ``status``. Real kernel, throwaway hosts."""

from __future__ import annotations

import os

from labs import SERVICES_ENV, lab_status, wait_for
from nslab.drivers import process

LAB = """\
name: lim
networks: {n: {}}
hosts:
  hog:
    networks: [n]
    resources: {memory: 64M, cpus: 0.5, pids: 200}
    run: "python3 -c 'b = bytearray(100 * 1024 * 1024); import time; time.sleep(600)'"
    restart: no
  again:
    networks: [n]
    resources: {memory: 32M}
    run: "python3 -c 'b = bytearray(100 * 1024 * 1024)'"
    restart: on-failure
  calm:
    networks: [n]
    resources: {cpus: 0.25, pids: 50}
    run: exec sleep 600
"""


def services(name: str) -> dict[str, dict]:
    return {s["id"]: s for s in lab_status(name, env=SERVICES_ENV)["hostsetup"]["services"]}


def _limit_file(cgroup: str, v2: str, v1_controller: str, v1: str) -> str:
    """The value of a limit where the machine keeps it: the v2 file, or the v1 mirror's."""
    if os.path.exists(os.path.join(cgroup, v2)):
        with open(os.path.join(cgroup, v2)) as fh:
            return fh.read().strip()
    mount = process.v1_mounts()[v1_controller]
    relative = os.path.relpath(cgroup, process.cgroup2_mount() or "/")
    with open(os.path.join(mount, relative, v1)) as fh:
        return fh.read().strip()


def test_memory_limit_kills_a_hog_and_status_says_oom_killed(lab):
    name = lab(LAB)
    hog = wait_for(lambda: (s := services(name)["hog"]) and s["state"] == "exited" and s, timeout=15)
    assert hog["oom_killed"] is True
    # The restart policy applies, and the OOM kill stays said through the restarts.
    again = wait_for(lambda: (s := services(name)["again"]) and s["restarts"] >= 1 and s, timeout=15)
    assert again["oom_killed"] is True
    calm = services(name)["calm"]
    assert calm["state"] == "running" and calm["oom_killed"] is False
    from labs import nslab

    table = nslab("status", name, env=SERVICES_ENV).stdout
    assert "oom-killed" in table, table
    # The calm host's limits are where the kernel reads them.
    cgroup = lab_status(name, env=SERVICES_ENV)["hostsetup"]["supervisor"]["cgroup"] + "/calm.1"
    assert _limit_file(cgroup, "pids.max", "pids", "pids.max") == "50"
    cpu = _limit_file(cgroup, "cpu.max", "cpu", "cpu.cfs_quota_us")
    assert cpu in ("25000 100000", "25000")
