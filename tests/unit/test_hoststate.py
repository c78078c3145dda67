"""Issue 24 items 3 and 4 over the fakes: `nslab stop|start|restart` (services of the others untouched,
interfaces down at both ends, intended not drift, kept by `up`) and `up --only`/`--profile` subsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakelab import up_over_fakes

from labfiles import lab_text
from nslab import paths
from nslab.core import lifecycle, load, state
from nslab.core.drift import lab_drift
from nslab.core.features import hoststate
from nslab.core.wiring import AddHosts
from nslab.drivers.fake import FakeKernel, FakeProcesses, fake_drivers
from nslab.errors import TargetError
from nslab.lab import Lab

LAB = lab_text(
    "hs", {"front": "10.82.1.0/24", "back": "10.82.2.0/24"}, hosts={
        "web": "networks: [front], run: exec sleep 1000",
        "api": "networks: [front], run: exec sleep 1001",
        "db": "networks: [back], run: exec sleep 1002",
        "probe": "networks: [front], profiles: [debug]",
    },
    more="links:\n  - [web, db]\npartitions:\n  - [api, db]\n",
)


def service_hosts(processes: FakeProcesses) -> set[str]:
    return {s["host"] for s in processes.running["hs"]["services"]}


def test_stop_then_start_one_host(tmp_path, monkeypatch):
    d = up_over_fakes(LAB, tmp_path, monkeypatch)
    kernel, processes = d.kernel, d.processes
    assert isinstance(kernel, FakeKernel) and isinstance(processes, FakeProcesses)
    assert service_hosts(processes) == {"web", "api", "db"}
    hoststate.change("hs", ["web"], "stop", d)
    assert service_hosts(processes) == {"api", "db"}
    assert {("hs-web", "eth0"), ("hs-web", "eth1"), ("hs-db", "eth1")} <= kernel.down  # the link's far end too
    st = state.LabState.load("hs")
    assert st is not None and lab_drift(st, d) == []  # intended
    assert hoststate.stopped(st.extra[hoststate.KEY]) == {"web"}
    again = Lab.from_text(LAB, drivers=d).up()  # up keeps it stopped: nothing to do
    assert not again.applied and service_hosts(processes) == {"api", "db"}

    hoststate.change("hs", ["web"], "start", d)
    assert service_hosts(processes) == {"web", "api", "db"}
    assert not {e for e in kernel.down if e[0] in ("hs-web", "hs-db")}
    st = state.LabState.load("hs")
    assert st is not None and lab_drift(st, d) == [] and hoststate.stopped(st.extra[hoststate.KEY]) == set()
    events = [json.loads(line) for line in Path(paths.events_file("hs")).read_text().splitlines()]
    assert [(e["type"], e["host"]) for e in events] == [("stop", "web"), ("start", "web")]


def test_start_leaves_what_nslab_link_put_down(tmp_path, monkeypatch):
    from nslab.core.features.links import set_link

    d = up_over_fakes(LAB, tmp_path, monkeypatch)
    assert isinstance(d.kernel, FakeKernel)
    set_link("hs", "web", "eth1", False, d)
    hoststate.change("hs", ["web"], "stop", d)
    hoststate.change("hs", ["web"], "start", d)
    assert ("hs-web", "eth1") in d.kernel.down and ("hs-web", "eth0") not in d.kernel.down


def test_unknown_host_is_refused(tmp_path, monkeypatch):
    d = up_over_fakes(LAB, tmp_path, monkeypatch)
    with pytest.raises(TargetError, match="no host 'nobody'"):
        hoststate.change("hs", ["nobody"], "stop", d)


def test_only_keeps_the_hosts_their_networks_and_the_links_between_them():
    lab = load.resolved(load.from_text(LAB), None)
    part, left = hoststate.select(lab, None, ["web", "api"], ())
    assert set(part.hosts) == {"web", "api"} and left == {"db", "probe"}
    assert set(part.networks) == {"front"} and part.links == () and part.partitions == ()
    assert [i.name for i in part.hosts["web"].interfaces] == ["eth0"]  # its link to db waits for db
    both, _ = hoststate.select(lab, None, ["web", "db"], ())
    assert len(both.links) == 1 and both.hosts["web"].interfaces[1].link == 0
    assert hoststate.select(lab, None, ["api", "db"], ())[0].partitions == (("api", "db"),)


def test_profiles_and_hosts_up_already():
    lab = load.resolved(load.from_text(LAB), None)
    plain, left = hoststate.select(lab, None, None, ())
    assert left == {"probe"}
    debug, left = hoststate.select(lab, None, None, ["debug"])
    assert left == frozenset() and debug == lab
    _, left = hoststate.select(lab, debug, None, ())  # a plain up keeps what a profile brought up
    assert left == frozenset()
    _, left = hoststate.select(lab, plain, ["db"], ())
    assert left == {"probe"}
    with pytest.raises(TargetError, match="no host 'nobody'"):
        hoststate.select(lab, None, ["nobody"], ())


def test_up_only_then_the_rest_keeps_what_is_up(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path / "state"))
    d = fake_drivers()
    assert isinstance(d.kernel, FakeKernel)
    lifecycle.up(load.from_text(LAB), d, subset=lifecycle.Subset(("web", "api")))
    assert d.kernel.namespaces == {"hs-web", "hs-api"}
    st = state.LabState.load("hs")
    assert st is not None and st.extra[hoststate.KEY]["not_started"] == ["db", "probe"]
    rest = lifecycle.up(load.from_text(LAB), d)
    assert d.kernel.namespaces == {"hs-web", "hs-api", "hs-db"}
    remade = {h.name for a in rest.plan.of_type(AddHosts) for h in a.hosts}
    assert remade == {"db"}  # web only gains its link to db


def test_the_api_restarts_and_brings_up_part(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path / "state"))
    d = fake_drivers()
    assert isinstance(d.kernel, FakeKernel) and isinstance(d.processes, FakeProcesses)
    lab = Lab.from_text(LAB, drivers=d)
    lab.up(only=["api"])
    assert d.kernel.namespaces == {"hs-api"}
    lab.up(profiles=["debug"])
    assert d.kernel.namespaces == {"hs-web", "hs-api", "hs-db", "hs-probe"}
    lab.stop("db")
    lab.restart("db", "api")  # a stopped host starts
    assert service_hosts(d.processes) == {"web", "api", "db"}
    st = state.LabState.load("hs")
    assert st is not None and hoststate.stopped(st.extra[hoststate.KEY]) == set() and lab_drift(st, d) == []
