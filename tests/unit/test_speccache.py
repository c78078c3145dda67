"""The kept form (core/kept.py, through core/load.py): a lab file kept by content gives the same lab and the same
plan as reading it the full way, holds the resolved lab only, and any change of what it depends on (the file, a
${VAR}, the machine's networks) or any problem is a miss."""

from __future__ import annotations

import ipaddress
import json
import os

import pytest

from nslab.core import kept as kept_form
from nslab.core import lifecycle, load
from nslab.drivers.fake import fake_drivers
from nslab.errors import NslabError, StaleKeptForm
from nslab.lab import Lab, down

LAB = """\
name: kept
x-note: dropped before the schema
networks:
  front: {subnet: 10.82.1.0/24}
  back: {}
hosts:
  web:
    networks: [front]
    hostname: www
    publish: ["${WEB_PORT:-6000}:8080"]
    run: exec python3 -m http.server 8080
    impair: {eth0: {loss: 5%}}
  db:
    networks: {back: {mtu: 1400}}
    run: [exec sleep 1000]
    sysctls: {net.ipv4.ip_forward: 1}
  node:
    count: 2
    networks: [front]
links:
  - [web, db]
partitions:
  - [node1, db]
"""


@pytest.fixture
def lab_file(tmp_path):
    path = tmp_path / "nslab.yaml"
    path.write_text(LAB)
    return str(path)


def test_kept_lab_plans_exactly_what_the_full_read_plans(lab_file):
    full = Lab.load(lab_file, drivers=fake_drivers(), check=False)
    assert full.file.entry is None and full.file.parsed is not None
    planned = full.up(dry_run=True)  # every check passed: kept
    kept = load.kept_file(lab_file)
    assert kept is not None and kept.entry is not None and kept.parsed is None
    again = lifecycle.up(kept, fake_drivers(), dry_run=True)
    assert again.lab == planned.lab
    host = again.lab.hosts["web"]  # what the features plan from came back typed, not as the file
    assert [s.command for s in host.services] == ["exec python3 -m http.server 8080"]
    assert [p.text for p in host.publish] == ["6000:8080"] and host.impair[0].loss == 5
    assert again.lab.partitions == (("node1", "db"),)
    assert again.commands() == planned.commands()
    assert again.warnings == planned.warnings


def test_the_kept_form_holds_the_resolved_lab_only(lab_file):
    Lab.load(lab_file, drivers=fake_drivers(), check=False).up(dry_run=True)
    (name,) = os.listdir(kept_form.cache_dir())
    with open(os.path.join(kept_form.cache_dir(), name)) as fh:
        data = json.load(fh)
    assert set(data) == {"format", "name", "wants_ula", "lines", "variants"}
    assert all(set(v) == {"inputs", "lab"} for v in data["variants"])


def test_kept_lab_goes_up_and_converges_like_the_full_read(lab_file, monkeypatch):
    drivers = fake_drivers()
    ways = []
    monkeypatch.setattr(lifecycle, "plan", _recording(lifecycle.plan, ways))
    first = lifecycle.up_file(lab_file, drivers)
    assert ways == ["full"] and first.applied  # not kept yet: read the full way
    second = lifecycle.up_file(lab_file, drivers)
    assert ways[1:] == ["kept"] and not second.applied  # kept (with the lab's own allocations): nothing to do
    down("kept", drivers)
    third = lifecycle.up_file(lab_file, drivers)
    assert ways[2:] == ["kept"] and third.applied and third.lab == first.lab


def _recording(plan, ways):
    def recorded(lab_file, drivers, recorded, subset=None, machine=None):
        ways.append("kept" if lab_file.entry is not None else "full")
        return plan(lab_file, drivers, recorded, subset, machine)
    return recorded


def test_what_the_file_depends_on_is_in_the_key(lab_file, monkeypatch):
    Lab.load(lab_file, drivers=fake_drivers(), check=False).up(dry_run=True)
    assert load.kept_file(lab_file) is not None
    monkeypatch.setenv("WEB_PORT", "6100")  # a ${VAR} the file names
    assert load.kept_file(lab_file) is None
    monkeypatch.delenv("WEB_PORT")
    monkeypatch.setenv("UNRELATED", "1")  # one it does not
    assert load.kept_file(lab_file) is not None
    with open(lab_file, "a") as fh:
        fh.write("# an edit\n")
    assert load.kept_file(lab_file) is None


def test_other_resolve_inputs_read_the_file_the_full_way(lab_file):
    Lab.load(lab_file, drivers=fake_drivers(), check=False).up(dry_run=True)
    drivers = fake_drivers()
    drivers.kernel.machine_networks = lambda: [(ipaddress.IPv4Network("10.99.0.0/16"), "route on eth1")]
    kept = load.kept_file(lab_file)
    assert kept is not None
    with pytest.raises(StaleKeptForm):
        lifecycle.up(kept, drivers, dry_run=True)
    assert lifecycle.up_file(lab_file, drivers, dry_run=True).commands()  # the full way answers


def test_a_problem_on_the_kept_way_is_reported_by_the_full_read(lab_file, tmp_path):
    Lab.load(lab_file, drivers=fake_drivers(), check=False).up(dry_run=True)
    drivers = fake_drivers()
    other = tmp_path / "other.yaml"
    other.write_text("name: other\nnetworks: {n: {}}\nhosts:\n  a:\n    networks: [n]\n    publish: ['6000:80']\n")
    Lab.load(str(other), drivers=drivers, check=False).up()  # takes port 6000 first
    with pytest.raises(NslabError) as full:
        Lab.load(lab_file, drivers=drivers, check=False).up()
    assert load.kept_file(lab_file) is not None
    with pytest.raises(NslabError) as kept:
        lifecycle.up_file(lab_file, drivers)
    assert kept.value.lines() == full.value.lines()
    assert any(f"{lab_file}:" in line and "publish[0]" in line for line in kept.value.lines())


def test_an_unreadable_entry_is_a_miss(lab_file):
    Lab.load(lab_file, drivers=fake_drivers(), check=False).up(dry_run=True)
    for name in os.listdir(kept_form.cache_dir()):
        with open(os.path.join(kept_form.cache_dir(), name), "w") as fh:
            fh.write("{not json")
    assert load.kept_file(lab_file) is None
    result = lifecycle.up_file(lab_file, fake_drivers(), dry_run=True)
    assert result.commands()
