"""Lab.up / Lab.down orchestrated over fake drivers (no root): the whole plan (wiring + every feature) in one
journal, rollback when any feature's action fails, converges that touch only what changed, teardown."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from labfiles import lab_text
from nslab.core import state
from nslab.drivers import Drivers
from nslab.drivers.fake import (
    FakeFiles,
    FakeHostnamePins,
    FakeKernel,
    FakeNftables,
    FakeProcesses,
    FakeSysctls,
    fake_drivers,
)
from nslab.errors import NslabError
from nslab.lab import Lab, down

LAB = lab_text(
    "core", {"front": "10.81.1.0/24", "secure": "10.81.2.0/24"}, internal=["secure"], hosts={
        "web": 'networks: [front], hostname: www, publish: ["6000:8080"], run: exec python3 -m http.server 8080',
        "db": "networks: [secure], run: exec sleep 1000",
    },
    more="links:\n  - [web, db]\n",
)

EDITED = LAB.replace("links:", """\
  extra:
    networks: [front]
    publish: ["6001:80"]
links:
  - [extra, db]""")


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def machine(d: Drivers) -> dict[str, Any]:
    """Everything the fakes hold, to compare before and after."""
    kernel, nft, sysctl, files, uts, processes = d.kernel, d.nft, d.sysctl, d.files, d.uts, d.processes
    assert isinstance(kernel, FakeKernel) and isinstance(nft, FakeNftables) and isinstance(sysctl, FakeSysctls)
    assert isinstance(files, FakeFiles) and isinstance(uts, FakeHostnamePins) and isinstance(processes, FakeProcesses)
    return copy.deepcopy({
        "namespaces": kernel.namespaces, "bridges": kernel.bridges, "veths": kernel.veths,
        "links": kernel.link_ends, "hairpin": kernel.hairpin, "table": nft.table, "sysctls": sysctl.values,
        "files": {p: t for p, t in files.files.items() if p.startswith("/etc/netns")},
        "pins": uts.pins, "services": {lab: r["hash"] for lab, r in processes.running.items()},
    })


def test_up_applies_wiring_and_every_feature_then_down_removes_all():
    d = fake_drivers()
    empty = machine(d)
    result = Lab.from_text(LAB, drivers=d).up()
    assert result.applied
    m = machine(d)
    assert m["namespaces"] == {"core-web", "core-db"}
    assert len(m["bridges"]) == 2 and len(m["veths"]) == 2 and m["links"] == {("core-web", "eth1")}
    assert "dnat ip to 10.81.1.2:8080" in (m["table"] or "")
    assert m["sysctls"]["net.ipv4.ip_forward"] == "1"
    assert set(m["files"]) == {f"/etc/netns/core-{h}/{f}" for h in ("web", "db") for f in ("hosts", "resolv.conf")}
    assert sorted(m["pins"].values()) == ["db", "www"]
    assert list(m["services"]) == ["core"]
    features = {"dns", "containers", "hostnames", "links", "hoststate", "external", "macvlan", "firewall", "services",
                "partitions", "impair"}
    assert set(state.LabState.load("core").extra) == features

    assert down("core", d) is True
    assert machine(d) == empty
    assert state.LabState.load("core") is None


def test_unchanged_up_plans_nothing():
    d = fake_drivers()
    Lab.from_text(LAB, drivers=d).up()
    again = Lab.from_text(LAB, drivers=d).up(dry_run=True)
    assert again.commands() == [] and not again.plan and not again.applied


# One failing operation per feature (and the wiring), at the first up and at a converge.
FAULTS = [
    pytest.param("kernel", "add_links", id="wiring"),
    pytest.param("files", "write_netns_files", id="dns"),
    pytest.param("uts", "keep", id="hostnames"),
    pytest.param("sysctl", "write net.ipv4.ip_forward", id="firewall-sysctl"),
    pytest.param("nft", "run", id="firewall-ruleset"),
    pytest.param("kernel", "set_hairpin", id="firewall-hairpin"),
]
FRESH_FAULTS = [*FAULTS, pytest.param("processes", "start_supervisor", id="services")]
CONVERGE_FAULTS = [*FAULTS, pytest.param("processes", "reload_supervisor", id="services")]


def _fail(d: Drivers, driver: str, operation: str) -> None:
    part = getattr(d, driver)
    if isinstance(part, FakeNftables):
        part.fail_on = operation
    else:
        part.fail_on = {operation}


@pytest.mark.parametrize(("driver", "operation"), FRESH_FAULTS)
def test_a_failing_action_rolls_a_fresh_lab_back_to_nothing(driver, operation):
    d = fake_drivers()
    empty = machine(d)
    _fail(d, driver, operation)
    with pytest.raises(NslabError, match="injected failure"):
        Lab.from_text(LAB, drivers=d).up()
    assert machine(d) == empty
    assert state.LabState.load("core") is None


@pytest.mark.parametrize(("driver", "operation"), CONVERGE_FAULTS)
def test_a_failing_converge_leaves_the_previous_lab_as_it_was(driver, operation):
    d = fake_drivers()
    Lab.from_text(LAB, drivers=d).up()
    before = machine(d)
    recorded = state.LabState.load("core")
    assert recorded is not None
    # the edit adds a NAT host with a published port and a link, and makes the services restart
    edited = EDITED.replace("exec sleep 1000", "exec sleep 2000")
    d.sysctl.values["net.ipv4.ip_forward"] = "0"  # so that the converge sets it again (and can fail there)
    before["sysctls"]["net.ipv4.ip_forward"] = "0"
    _fail(d, driver, operation)
    with pytest.raises(NslabError, match="injected failure"):
        Lab.from_text(edited, drivers=d).up()
    assert machine(d) == before
    after = state.LabState.load("core")
    assert after is not None and after.lab == recorded.lab and after.extra == recorded.extra


def test_converge_restarts_services_only_when_they_changed():
    d = fake_drivers()
    Lab.from_text(LAB, drivers=d).up()
    processes = d.processes
    assert isinstance(processes, FakeProcesses)
    first = processes.running["core"]["pid"]
    plan = Lab.from_text(EDITED, drivers=d).up().plan
    assert processes.running["core"]["pid"] == first, plan.commands()  # a new host without services
    edited = EDITED.replace("exec sleep 1000", "exec sleep 2000")
    text = "\n".join(Lab.from_text(edited, drivers=d).up(dry_run=True).commands())
    assert f"kill -HUP {first}" in text and "stops db, starts nothing" in text and "starts db" in text, text
    assert "sleep 2000" in text and "service web" not in text
    Lab.from_text(edited, drivers=d).up()
    assert processes.running["core"]["pid"] == first and processes.restarted == ["db"]
    # a host recreated by the wiring (its network changed) restarts its services, and only those
    Lab.from_text(edited.replace("front: {subnet: 10.81.1.0/24}", "front: {subnet: 10.81.3.0/24}"), drivers=d).up()
    assert processes.restarted == ["db", "web"]


def test_dry_run_changes_nothing_and_renders_every_feature():
    d = fake_drivers()
    empty = machine(d)
    commands = Lab.from_text(LAB, drivers=d).up(dry_run=True).commands()
    assert machine(d) == empty
    text = "\n".join(commands)
    for expected in (
        "ip netns add core-web",
        "ip netns exec core-web sysctl -qw net.ipv6.conf.default.addr_gen_mode=1",
        "ip -n core-web route add default via 10.81.1.1 proto static",
        "sysctl -qw net.ipv4.ip_forward=1",
        "nft -f - <<'EOF'",
        "type bridge_slave hairpin on",
        "mkdir -p /etc/netns/core-web",
        "unshare --uts=",
        "# python -m nslab.daemons.supervise core",
    ):
        assert expected in text, expected
    # the sysctl is set before the ruleset is loaded, and both after the wiring
    assert text.index("ip netns add") < text.index("sysctl -qw net.ipv4.ip_forward") < text.index("nft -f")


def test_down_goes_on_past_failures_and_reports_them_all():
    d = fake_drivers()
    Lab.from_text(LAB, drivers=d).up()
    kernel = d.kernel
    assert isinstance(kernel, FakeKernel)

    def failing(names: list[str]) -> list[str]:
        kernel.namespaces -= set(names)
        return ["cannot unmount /run/netns/core-web: busy"]

    kernel.remove_namespaces = failing
    with pytest.raises(NslabError) as err:
        down("core", d)
    assert "busy" in str(err.value)
    assert not kernel.bridges and d.nft.table is None  # the rest went anyway


def test_status_is_assembled_from_the_recorded_lab_and_every_feature():
    d = fake_drivers()
    lab = Lab.from_text(LAB, drivers=d)
    lab.up()
    [doc] = lab.status()["labs"]
    assert [h["name"] for h in doc["hosts"]] == ["web", "db"] and all(h["present"] for h in doc["hosts"])
    assert [n["present"] for n in doc["networks"]] == [True, True]
    assert doc["firewall"]["ports"][0]["to"] == "10.81.1.2:8080"
    assert set(doc["hostsetup"]) >= {"dns", "upstream", "supervisor", "services"}
    assert doc["hostsetup"]["supervisor"]["running"] is True
    assert doc["links"][0]["endpoints"] == ["web", "db"]


def test_a_state_that_cannot_be_saved_rolls_the_up_back(monkeypatch):
    from nslab.errors import StateError

    d = fake_drivers()
    empty = machine(d)

    def full(self: state.LabState) -> None:
        raise StateError("cannot write /run/nslab/core/state.json: No space left on device")

    monkeypatch.setattr(state.LabState, "save", full)
    with pytest.raises(StateError, match="No space left"):
        Lab.from_text(LAB, drivers=d).up()
    assert machine(d) == empty


def test_an_intent_left_by_a_killed_up_is_finished_by_the_next_up():
    d = fake_drivers()
    kernel = d.kernel
    assert isinstance(kernel, FakeKernel)
    # what a run killed after its first namespace and bridge leaves: both, and its intent
    state.write_intent("core", ["core-web", "core-gone"], ["nslstale"])
    kernel.namespaces |= {"core-web", "core-gone"}
    kernel.bridges["nslstale"] = ""  # made in nslab's link group, killed before its alias was set
    Lab.from_text(LAB, drivers=d).up()
    assert "core-gone" not in kernel.namespaces and "nslstale" not in kernel.bridges
    assert state.read_intent("core") == ([], [])
    assert kernel.namespaces == {"core-web", "core-db"}


def test_up_names_the_services_it_restarts():
    d = fake_drivers()
    Lab.from_text(LAB, drivers=d).up()
    result = Lab.from_text(EDITED.replace("exec sleep 1000", "exec sleep 2000"), drivers=d).up()
    summaries = [a.summary() for a in result.plan]
    assert "services: stop db" in summaries and "services: start db" in summaries, summaries  # around the wiring
