"""Issue 4 services: `run:` starts supervised processes inside hosts at `up`, logs, restart policies, status,
and `down` leaves no process at all — also a double-forked child. Real kernel, throwaway hosts."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from labfiles import lab_text
from labs import SERVICES_ENV as ENV
from labs import alive, lab_status, wait_for
from labs import nslab as run_nslab
from nslab.drivers import process


def nslab(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_nslab(*args, check=check, env=ENV)


def services(name: str) -> dict[str, dict]:
    return {s["id"]: s for s in lab_status(name, env=ENV)["hostsetup"]["services"]}


def ns_inode(path: str) -> int:
    return os.stat(path).st_ino


def pids_in_netns(path: str) -> list[int]:
    inode = ns_inode(path)
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == inode:
                out.append(int(pid))
        except OSError:
            continue
    return out


LAB = """\
name: sv
networks:
  front: {}
hosts:
  web:
    networks: [front]
    run: "echo hello from $(hostname) on $(ip -br addr show eth0 | wc -l) if; exec sleep 600"
  app:
    networks: [front]
    hostname: application
    run:
      - "echo first; exec sleep 600"
      - "echo failing; exit 3"
    restart: on-failure
  once:
    networks: [front]
    run: "echo once; exit 3"
    restart: no
  loop:
    networks: [front]
    run: "echo tick; exit 0"
    restart: always
  idle:
    networks: [front]
"""


def test_services_start_inside_hosts_log_and_restart(lab):
    name = lab(LAB)
    # Started by `up`, still running after it returned, inside the host's network and hostname.
    web = wait_for(lambda: services(name)["web"]["state"] == "running" and services(name)["web"])
    assert web["pid"] and alive(web["pid"])
    assert ns_inode(f"/proc/{web['pid']}/ns/net") == ns_inode("/run/netns/sv-web")
    assert ns_inode(f"/proc/{web['pid']}/ns/uts") == ns_inode("/run/nslab/sv/uts/web")
    assert wait_for(lambda: "hello from web on 1 if" in nslab("logs", "web").stdout)
    # Two services on one host: `logs` prefixes each line with the service.
    app_logs = wait_for(lambda: (out := nslab("logs", "app").stdout) and "app.2 | failing" in out and out)
    assert "app.1 | first" in app_logs
    assert nslab("logs", "-n", "1", "sv/web").stdout.count("\n") == 1
    assert "exited with code 3; restarting" in app_logs
    # restart policies
    wait_for(lambda: services(name)["app.2"]["restarts"] >= 2)
    once = wait_for(lambda: services(name)["once"]["state"] == "exited" and services(name)["once"])
    assert once["exit_code"] == 3 and once["restarts"] == 0
    wait_for(lambda: services(name)["loop"]["restarts"] >= 2)
    assert services(name)["app.1"]["restarts"] == 0
    # An idle host has no process at all.
    assert pids_in_netns("/run/netns/sv-idle") == []
    # status renders the services (table output, not only JSON)
    table = nslab("status", name).stdout
    assert "app.2" in table and "restarting" in table and "exited" in table
    nslab("down", name)
    assert not os.path.exists("/run/nslab/sv")


def test_down_stops_whole_trees_also_double_forked_and_term_ignoring(lab):
    name = lab("""\
name: tr
networks:
  front: {}
hosts:
  a:
    networks: [front]
    run:
      - "(setsid sh -c 'sleep 601 & exit 0' &) ; exec sleep 602"
      - "trap '' TERM; sleep 603 & trap '' TERM; wait"
      - "setsid sh -c 'sleep 604 &' ; exit 0"
""")
    wait_for(lambda: all(s["state"] in ("running", "exited") for s in services(name).values()))

    def sleepers() -> list[int]:
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd[0] == b"sleep" and cmd[1:2] and cmd[1] in (b"601", b"602", b"603", b"604") and alive(int(pid)):
                out.append(int(pid))
        return out

    wait_for(lambda: len(sleepers()) == 4)
    pids = sleepers()
    status = json.loads(nslab("status", name, "--json").stdout)["labs"][0]["hostsetup"]
    supervisor = status["supervisor"]
    assert supervisor["running"]
    cgroup = supervisor["cgroup"]
    if supervisor["tracking"] == "cgroup":
        assert set(pids) <= set(process.cgroup_members(cgroup))
    # The double-forked child is nobody's child of ours any more, yet it is tracked.
    assert services(name)["a.3"]["state"] == "exited" and services(name)["a.3"]["processes"] >= 1
    started = time.monotonic()
    nslab("down", name)
    assert time.monotonic() - started < 10
    assert [p for p in pids if alive(p)] == []
    assert not alive(supervisor["pid"])
    if cgroup:
        assert not os.path.exists(cgroup)
    assert not os.path.exists("/run/nslab/tr")


def test_a_lab_without_services_has_no_process(lab):
    name = lab(lab_text("id", {"front": "", "priv": ""}, internal=["priv"], hosts={
        "a": "networks: [front]", "b": "networks: [front, priv]", "c": "networks: [priv]",
    }))
    for host in ("a", "b", "c"):
        assert pids_in_netns(f"/run/netns/{name}-{host}") == []
    doc = json.loads(nslab("status", name, "--json").stdout)["labs"][0]
    assert doc["hostsetup"]["supervisor"] is None and doc["hostsetup"]["services"] == []
    assert "runs no services" in nslab("logs", "a", check=False).stderr


def test_converging_keeps_services_running_and_restarts_on_change(lab, tmp_path):
    text = """\
name: cv
networks:
  front: {}
hosts:
  a:
    networks: [front]
    run: "exec sleep 605"
"""
    name = lab(text)
    first = wait_for(lambda: services(name)["a"]["pid"])
    nslab("up", "-f", str(tmp_path / "nslab.yaml"))
    assert services(name)["a"]["pid"] == first  # nothing changed: nothing restarted
    (tmp_path / "nslab.yaml").write_text(text.replace("sleep 605", "sleep 606"))
    nslab("up", "-f", str(tmp_path / "nslab.yaml"))
    second = wait_for(lambda: services(name)["a"]["pid"])
    assert second != first and not alive(first)
    assert "sleep 606" in services(name)["a"]["command"]
