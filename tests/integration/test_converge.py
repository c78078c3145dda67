"""Converging `up` on the real kernel: only the services whose definition changed restart (the others keep
their process), a host recreated by the wiring restarts its own services, and the dry-run says which."""

from __future__ import annotations

import os
import subprocess

from labfiles import lab_text
from labs import lab_status, private_resolver, settled
from labs import nslab as run_nslab

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
