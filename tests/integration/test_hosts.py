"""Issue 24 items 3 and 4 on the real kernel: `nslab stop|start|restart` of one host (the others' services keep
their PIDs; `check`'s model and probes agree the stopped host is cut off; no drift), and `up --only` /
`--profile` bringing up part of a lab that a later `up` completes without touching what is up."""

from __future__ import annotations

import json

from labs import SERVICES_ENV, lab_status, nslab, wait_for
from sandbox import sh

DEMO = """\
name: demo
networks:
  front: {}
hosts:
  web1: {networks: [front], run: "exec sleep 711"}
  web2: {networks: [front], run: "exec sleep 712"}
  db: {networks: [front], run: "exec sleep 713"}
"""

PART = """\
name: part
networks:
  front: {}
  back: {}
hosts:
  web1: {networks: [front], run: "exec sleep 721"}
  web2: {networks: [front], run: "exec sleep 722"}
  db: {networks: [back, front], run: "exec sleep 723"}
  debug: {networks: [front], profiles: [debug], run: "exec sleep 724"}
"""


def pids(name: str) -> dict[str, int]:
    return {s["host"]: s["pid"] for s in lab_status(name, env=SERVICES_ENV)["hostsetup"]["services"]
            if s["state"] == "running"}


def running(name: str, count: int) -> dict[str, int]:
    """The services' PIDs once ``count`` of them run."""
    return wait_for(lambda: found if len(found := pids(name)) == count else None)


def check(name: str) -> dict[tuple[str, str], dict]:
    r = nslab("check", name, "--json", "--timeout", "3", env=SERVICES_ENV)  # exit 0: every cell as the model says
    return {(c["source"], c["target"]): c for c in json.loads(r.stdout)["cells"]}


def up_flags(namespace: str) -> list[bool]:
    return ["UP" in lk["flags"] for lk in json.loads(sh(f"ip -n {namespace} -j link show").stdout)
            if lk["ifname"] != "lo"]


def test_stop_start_restart_one_host(lab, tmp_path):
    name = lab(DEMO)
    before = running(name, 3)
    assert nslab("stop", "demo/web1", env=SERVICES_ENV).stdout.strip() == "demo/web1: stopped"
    assert pids(name) == {"web2": before["web2"], "db": before["db"]}  # the others keep their PIDs
    assert up_flags("demo-web1") == [False]
    cells = check(name)
    assert not cells[("web2", "web1")]["reachable"] and not cells[("web2", "web1")]["expected"]
    assert not cells[("web1", "outside")]["reachable"] and cells[("web2", "db")]["reachable"]
    doc = lab_status(name, env=SERVICES_ENV)  # exit 0: no drift
    assert doc["drift"] == [] and doc["host_state"]["stopped"] == ["web1"]
    assert {h["name"]: h["state"] for h in doc["hosts"]}["web1"] == "stopped"
    table = nslab("status", name, env=SERVICES_ENV).stdout
    assert "web1 (stopped)" in table and "eth0 (down: stopped)" in table and "no drift" in table
    nslab("up", "-f", str(tmp_path / "nslab.yaml"), env=SERVICES_ENV)  # up keeps it stopped
    assert up_flags("demo-web1") == [False] and "web1" not in pids(name)

    nslab("start", "demo/web1", env=SERVICES_ENV)
    assert up_flags("demo-web1") == [True] and "default via" in sh("ip -n demo-web1 route").stdout
    after = running(name, 3)
    assert after["web2"] == before["web2"] and after["web1"] != before["web1"]
    assert check(name)[("web2", "web1")]["reachable"]
    assert lab_status(name, env=SERVICES_ENV)["drift"] == []

    nslab("restart", "demo/web2,db", env=SERVICES_ENV)
    again = running(name, 3)
    assert again["web1"] == after["web1"] and again["web2"] != after["web2"] and again["db"] != after["db"]
    assert nslab("stop", "demo/nobody", check=False, env=SERVICES_ENV).returncode == 2


def namespaces(prefix: str) -> set[str]:
    return {line.split()[0] for line in sh("ip netns list").stdout.splitlines() if line.startswith(prefix)}


def addresses(name: str) -> dict[str, list[str]]:
    return {h["name"]: [a for i in h["interfaces"] for a in i["addresses"]]
            for h in lab_status(name, env=SERVICES_ENV)["hosts"]}


def test_up_only_then_the_rest(lab, labs):
    env = SERVICES_ENV  # (the lab fixture gave the machine a private resolver)
    path = labs.write(PART)
    nslab("up", "-f", str(path), "--only", "web1,db", env=env)
    assert namespaces("part-") == {"part-web1", "part-db"}
    doc = lab_status("part", env=env)
    assert {h["name"]: h["state"] for h in doc["hosts"]} == {"web1": "running", "db": "running",
                                                            "web2": "not started", "debug": "not started"}
    assert doc["drift"] == []
    assert sorted(line.split()[:3] for line in nslab("status", "part", env=env).stdout.splitlines()
                  if "not started" in line) == [["debug", "part-debug", "not"], ["web2", "part-web2", "not"]]
    assert {k[0] for k in check("part")} == {"web1", "db"}  # check skips what is not up
    first = running("part", 2)
    where = {h: a for h, a in addresses("part").items() if h in first}

    nslab("up", "-f", str(path), env=env)  # the rest, but not the host of a profile
    assert namespaces("part-") == {"part-web1", "part-db", "part-web2"}
    later = running("part", 3)
    assert {h: later[h] for h in first} == first
    assert {h: addresses("part")[h] for h in where} == where
    nslab("up", "-f", str(path), "--profile", "debug", env=env)
    assert "part-debug" in namespaces("part-")
    nslab("up", "-f", str(path), env=env)  # a plain up leaves it up
    assert "part-debug" in namespaces("part-") and lab_status("part", env=env)["drift"] == []


def test_exec_on_many_hosts(lab):
    name = lab(DEMO)
    script = "hostname; echo err >&2; [ $(hostname) = web1 ] && exit 3; exit 5"
    r = nslab("exec", f"{name}/web*", "--", "sh", "-c", script, check=False, env=SERVICES_ENV)
    assert sorted(r.stdout.splitlines()) == ["web1 | web1", "web2 | web2"]
    assert sorted(r.stderr.splitlines()) == ["web1 | err", "web2 | err"]
    assert r.returncode == 5  # the highest status
    r = nslab("exec", "--all", name, "--", "sh", "-c", 'test "$(hostname)" != db', check=False, env=SERVICES_ENV)
    assert r.returncode == 1 and r.stdout == ""
    assert nslab("exec", f"{name}/nothing*", "--", "true", check=False, env=SERVICES_ENV).returncode == 2
