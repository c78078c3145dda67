"""Drift over the fake drivers: what `status` names, what `up` plans to repair it (and says), and that an
interface put down with `nslab link` is intended, not drift."""

from __future__ import annotations

import ipaddress

import pytest
from fakelab import up_over_fakes

from labfiles import lab_text
from nslab.core import state
from nslab.core.drift import lab_drift
from nslab.core.features.firewall import LoadRuleset
from nslab.core.features.links import set_link
from nslab.core.kinds.veth import AddLinks, RemoveLinks
from nslab.core.wiring import AddHosts, SetLinkState
from nslab.lab import Lab, status
from nslab.values import replace

LAB = lab_text(
    "d", {"front": "10.81.1.0/24", "secure": "10.81.2.0/24"}, internal=["secure"], hosts={
        "web": "networks: [front]", "db": "networks: [secure]",
    },
    more="links:\n  - {endpoints: [web, db], subnet: 10.90.0.0/30}\n",
)


@pytest.fixture
def drivers(tmp_path, monkeypatch):
    return up_over_fakes(LAB, tmp_path, monkeypatch)


def drift(d) -> list[str]:
    st = state.LabState.load("d")
    assert st is not None
    return [x.text for x in lab_drift(st, d)]


def port(host: str = "web") -> str:
    st = state.LabState.load("d")
    assert st is not None
    veth = st.lab.hosts[host].interfaces[0].host_veth
    assert veth is not None
    return veth


def repair(d) -> tuple[list[str], list]:
    result = Lab.from_text(LAB, drivers=d).up()
    return result.repairs, list(result.plan)


def test_fresh_lab_has_no_drift_and_up_is_a_no_op(drivers):
    assert drift(drivers) == []
    assert status("d", drivers)["labs"][0]["drift"] == []
    repairs, plan = repair(drivers)
    assert repairs == [] and plan == []


def test_port_down_by_hand_is_named_and_set_up_again(drivers):
    drivers.kernel.down.add(("", port()))
    assert drift(drivers) == [f"host web: bridge port {port()} (eth0) is down"]
    repairs, plan = repair(drivers)
    assert repairs == [f"host web: bridge port {port()} (eth0) is down"]
    assert [type(a) for a in plan] == [SetLinkState] and plan[0].ends == (("", port()),) and plan[0].up
    assert plan[0].commands() == [f"ip link set {port()} up"]
    assert drift(drivers) == []


def test_interface_down_inside_restores_its_route(drivers):
    drivers.kernel.set_link_state([("d-web", "eth0")], False)  # IPv4 drops the default route with it
    assert drift(drivers) == ["host web: interface eth0 is down", "host web: default route via 10.81.1.1 is missing"]
    _repairs, plan = repair(drivers)
    assert plan[0].commands() == ["ip -n d-web link set eth0 up",
                                  "ip -n d-web route replace default via 10.81.1.1 proto static"]
    assert drift(drivers) == []


def test_missing_namespace_recreates_the_host_and_its_link(drivers):
    drivers.kernel.remove_namespaces(["d-db"])
    assert "host db: namespace d-db is missing" in drift(drivers)
    _repairs, plan = repair(drivers)
    kinds = [type(a) for a in plan]
    assert AddHosts in kinds and AddLinks in kinds
    assert drift(drivers) == []


def test_flushed_address_recreates_the_host(drivers):
    drivers.kernel.ifaces["d-web"]["eth0"] = ipaddress.IPv4Interface("10.99.0.9/24")
    assert drift(drivers)[0] == "host web: interface eth0 lacks its address 10.81.1.2/24"
    _repairs, plan = repair(drivers)
    assert any(isinstance(a, AddHosts) and [h.name for h in a.hosts] == ["web"] for a in plan)


def test_link_end_gone_recreates_the_link(drivers):
    drivers.kernel.remove_link_ends([("d-web", "eth1")])
    assert set(drift(drivers)) == {"host web: interface eth1 is missing", "host db: interface eth1 is missing"}
    _repairs, plan = repair(drivers)
    assert [type(a) for a in plan] == [RemoveLinks, AddLinks]
    assert drift(drivers) == []


def test_port_detached_from_its_bridge(drivers):
    drivers.kernel.ports[port()] = "elsewhere"
    assert drift(drivers) == [f"host web: bridge port {port()} (eth0) is not attached to bridge "
                              f"{next(iter(drivers.kernel.bridges))}"]
    _repairs, plan = repair(drivers)
    assert any(isinstance(a, AddHosts) for a in plan)


def test_missing_chain_reloads_the_ruleset(drivers):
    table = drivers.nft.table
    drivers.nft.table = table.replace("\tchain lab.d.into.secure {", "\tchain renamed {")
    assert drift(drivers) == ["firewall: chain lab.d.into.secure of table inet nslab is missing"]
    _repairs, plan = repair(drivers)
    assert [type(a) for a in plan] == [LoadRuleset]
    assert drift(drivers) == []


def test_dead_supervisor_is_drift(tmp_path, monkeypatch):
    text = LAB.replace("web: {networks: [front]}", "web: {networks: [front], run: exec sleep 1000}")
    d = up_over_fakes(text, tmp_path, monkeypatch)
    d.processes.running.clear()
    assert any(line.startswith("services: the lab's supervisor") for line in drift(d))
    result = Lab.from_text(text, drivers=d).up()
    assert result.applied and drift(d) == []


def test_link_put_down_is_intended_and_kept(drivers):
    assert set_link("d", "web", "eth0", False, drivers) == ["web:eth0"]
    assert drivers.kernel.down >= {("d-web", "eth0"), ("", port())}
    assert drift(drivers) == []
    assert status("d", drivers)["labs"][0]["link_state"] == {"down": ["web:eth0"]}
    repairs, plan = repair(drivers)
    assert repairs == [] and plan == []  # not "repaired"
    drivers.kernel.set_link_state([("d-web", "eth0")], True)  # brought up by hand: that is drift
    assert drift(drivers) == ["host web: interface eth0 is up (it was put down with nslab link)"]
    _repairs, plan = repair(drivers)
    assert plan[0].commands() == ["ip -n d-web link set eth0 down"]
    set_link("d", "web", "eth0", True, drivers)
    assert drivers.kernel.defaults["d-web"] == ipaddress.IPv4Address("10.81.1.1")  # the default route is back
    assert drift(drivers) == [] and status("d", drivers)["labs"][0]["link_state"] == {"down": []}


def test_recreated_host_keeps_its_link_down(drivers):
    set_link("d", "web", "eth1", False, drivers)  # the point-to-point link: both ends
    assert drivers.kernel.down >= {("d-web", "eth1"), ("d-db", "eth1")}
    drivers.kernel.remove_namespaces(["d-db"])
    _repairs, plan = repair(drivers)
    assert isinstance(plan[-1], SetLinkState) and not plan[-1].up
    assert drivers.kernel.down >= {("d-web", "eth1"), ("d-db", "eth1")}
    assert drift(drivers) == []


def test_each_feature_with_drift_answers_its_own(tmp_path, monkeypatch):
    from nslab.core import features

    assert [m.KEY for m in features.modules() if hasattr(m, "drift")] == [
        "dns", "containers", "hostnames", "external", "macvlan", "firewall", "services"]
    text = LAB.replace("web: {networks: [front]}", "web: {networks: [front], run: exec sleep 1000}")
    d = up_over_fakes(text, tmp_path, monkeypatch)
    d.processes.running.clear()
    d.nft.table = d.nft.table.replace("\tchain lab.d.into.secure {", "\tchain renamed {")
    st = state.LabState.load("d")
    assert st is not None
    found = [(x.text, x.repair) for x in lab_drift(st, d)]
    assert found[0] == ("firewall: chain lab.d.into.secure of table inet nslab is missing", "ruleset")
    assert found[1][1] == "services" and found[1][0].endswith("is not running") and len(found) == 2


# --- what else nslab writes (issue 21): lo, static routes, sysctls, /etc/netns files, hostnames, the machine's
# sysctls, each chain's rules -------------------------------------------------------------------------------

ROUTED = LAB.replace("db: {networks: [secure]}",
                     "db: {networks: [secure], routes: [{to: 10.99.0.0/16, via: 10.81.2.1}], "
                     "sysctls: {net.ipv4.ip_forward: 1, net.ipv4.ip_local_port_range: 20000 30000}}")


@pytest.fixture
def routed(tmp_path, monkeypatch):
    return up_over_fakes(ROUTED, tmp_path, monkeypatch)


def repaired(d, text: str = LAB) -> list[str]:
    """``up``'s repairs, applied; afterwards nothing drifts."""
    result = Lab.from_text(text, drivers=d).up()
    assert result.applied and drift(d) == [], drift(d)
    return result.repairs


def test_lo_down_is_set_up_again(drivers):
    drivers.kernel.set_link_state([("d-db", "lo")], False)
    assert drift(drivers) == ["host db: loopback lo is down"]
    result = Lab.from_text(LAB, drivers=drivers).up()
    assert [a.commands() for a in result.plan] == [["ip -n d-db link set lo up"]]
    assert result.repairs == ["host db: loopback lo is down"] and drift(drivers) == []


def test_static_route_and_sysctl_are_set_again(routed):
    routed.kernel.routes["d-db"].clear()
    routed.kernel.host_sysctls["d-db"]["net.ipv4.ip_forward"] = "0"
    routed.kernel.host_sysctls["d-db"]["net.ipv4.ip_local_port_range"] = "20000\t30000"  # as the kernel prints it
    assert drift(routed) == ["host db: route to 10.99.0.0/16 via 10.81.2.1 is missing",
                             "host db: sysctl net.ipv4.ip_forward is 0, not 1"]
    result = Lab.from_text(ROUTED, drivers=routed).up()
    assert [a.commands() for a in result.plan] == [["ip netns exec d-db sysctl -qw net.ipv4.ip_forward=1",
                                                    "ip -n d-db route add 10.99.0.0/16 via 10.81.2.1 proto static"]]
    assert len(result.repairs) == 2 and drift(routed) == []


def test_route_through_an_interface_put_down_is_not_drift(routed):
    set_link("d", "db", "eth0", False, routed)
    routed.kernel.routes["d-db"].clear()  # (the kernel drops it with its interface)
    assert drift(routed) == []


def test_edited_and_removed_netns_files_are_written_again(drivers):
    resolv = "/etc/netns/d-web/resolv.conf"
    drivers.files.files[resolv] = "nameserver 192.0.2.53\n"
    del drivers.files.files["/etc/netns/d-db/hosts"]
    assert drift(drivers) == [f"host web: {resolv} differs from what nslab writes",
                              "host db: /etc/netns/d-db/hosts is missing"]
    assert len(repaired(drivers)) == 2
    assert "192.0.2.53" not in drivers.files.files[resolv]


def test_changed_hostname_and_lost_pin_are_pinned_again(drivers):
    pins = drivers.uts.pins
    web, db = (next(p for p in pins if p.endswith(f"/{h}")) for h in ("web", "db"))
    pins[web] = "elsewhere"
    del pins[db]
    assert drift(drivers) == ["host web: hostname is elsewhere, not web",
                              f"host db: its hostname namespace {db} is missing"]
    assert len(repaired(drivers)) == 2
    assert pins[web] == "web" and pins[db] == "db"


def test_forwarding_turned_off_is_turned_on_again(drivers):
    drivers.sysctl.values["net.ipv4.ip_forward"] = "0"
    assert drift(drivers) == ["firewall: sysctl net.ipv4.ip_forward is 0, the lab needs 1"]
    assert len(repaired(drivers)) == 1 and drivers.sysctl.values["net.ipv4.ip_forward"] == "1"


def test_rule_deleted_from_a_chain_reloads_the_ruleset(drivers):
    lines = drivers.nft.table.splitlines(keepends=True)
    drivers.nft.table = "".join(line for line in lines if ":egress" not in line)
    assert [x for x in drift(drivers)] == ["firewall: chain lab.d.snat of table inet nslab has rules changed by hand"]
    assert len(repaired(drivers)) == 1


def test_address_added_by_hand_recreates_the_host(drivers):
    drivers.kernel.host_view = lambda ns, view=drivers.kernel.host_view: _with_extra(view(ns), ns)
    assert drift(drivers) == ["host web: interface eth0 has an address nslab did not give it: 10.99.0.9/24"]
    _repairs, plan = repair(drivers)
    assert any(isinstance(a, AddHosts) and [h.name for h in a.hosts] == ["web"] for a in plan)


def _with_extra(view, namespace):
    if namespace != "d-web":
        return view
    links, routes = view
    extra = ipaddress.IPv4Interface("10.99.0.9/24")
    return [replace(lk, addresses=(*lk.addresses, extra)) if lk.name == "eth0" else lk for lk in links], routes


def test_mtu_changed_by_hand_recreates_the_host(tmp_path, monkeypatch):
    text = LAB.replace("web: {networks: [front]}", "web: {networks: [front], mtu: 1450}")
    d = up_over_fakes(text, tmp_path, monkeypatch)
    assert drift(d) == []  # (the fake shows no MTU: none compared)
    d.kernel.host_view = lambda ns, view=d.kernel.host_view: _with_mtu(view(ns), ns)
    assert drift(d) == ["host web: interface eth0 has MTU 1400, not 1450"]
    plan = list(Lab.from_text(text, drivers=d).up().plan)
    assert any(isinstance(a, AddHosts) and [h.name for h in a.hosts] == ["web"] for a in plan)


def _with_mtu(view, namespace):
    if namespace != "d-web":
        return view
    links, routes = view
    return [replace(lk, mtu=1400) if lk.name == "eth0" else lk for lk in links], routes


def test_route_localnet_of_a_publishing_bridge_is_set_again(tmp_path, monkeypatch):
    text = LAB.replace("web: {networks: [front]}", 'web: {networks: [front], publish: ["8080:80"]}')
    d = up_over_fakes(text, tmp_path, monkeypatch)
    key = next(k for k, v in d.sysctl.values.items() if k.endswith(".route_localnet") and v == "1")
    d.sysctl.values[key] = "0"
    assert drift(d) == [f"firewall: sysctl {key} is 0, the lab needs 1"]
    assert len(repaired(d, text)) == 1 and d.sysctl.values[key] == "1"


def test_a_service_outside_its_host_is_named_and_started_again(tmp_path, monkeypatch):
    from nslab.paths import services_status

    text = LAB.replace("web: {networks: [front]}", "web: {networks: [front], run: exec sleep 1000}")
    d = up_over_fakes(text, tmp_path, monkeypatch)
    d.files.files[services_status("d")] = '{"services": [{"id": "web", "state": "running", "pid": 4242}]}'
    assert drift(d) == []
    d.processes.misplaced[4242] = ["network namespace", "cgroup"]  # e.g. its host was made again under it
    assert drift(d) == ["services: web (pid 4242) runs outside host web's network namespace and cgroup"]
    dry = Lab.from_text(text, drivers=d).up(dry_run=True)
    assert any(line.startswith("kill -HUP") and "stops web" in line for line in dry.commands())
    found = drift(d)
    result = Lab.from_text(text, drivers=d).up()
    assert result.repairs == found and d.processes.restarted == ["web"]
    d.processes.misplaced.clear()
    assert drift(d) == [] and list(Lab.from_text(text, drivers=d).up().plan) == []


def test_processes_follow_a_host_made_again(tmp_path, monkeypatch):
    """Only the subnet changes: the services' config is the same, yet the host is a new namespace."""
    text = LAB.replace("web: {networks: [front]}", "web: {networks: [front], run: exec sleep 1000}")
    d = up_over_fakes(text, tmp_path, monkeypatch)
    edited = text.replace("10.81.1.0/24", "10.81.9.0/24")
    summary = Lab.from_text(edited, drivers=d).up(dry_run=True).changes()
    assert "services: stop web" in summary and "services: start web" in summary, summary
    Lab.from_text(edited, drivers=d).up()
    assert d.processes.restarted == ["web"]
    d.uts.pins.clear()  # the hostname pins lost: pinned anew, so the services start again inside them
    found = drift(d)
    assert any(line.startswith("host web: its hostname namespace ") for line in found), found
    assert Lab.from_text(edited, drivers=d).up().repairs == found
    assert d.processes.restarted == ["web", "web"] and drift(d) == []


def test_a_lab_being_changed_is_said_so_instead_of_its_drift(drivers):
    import json
    import os
    import re

    from nslab.paths import intent_file

    drivers.kernel.remove_namespaces(["d-db"])  # what a half-made lab looks like
    assert drift(drivers) and state.changing("d") is None
    state.write_intent("d", [], [], command="down")  # as this (live) process: another nslab at work
    line = state.changing("d")
    assert line is not None and re.fullmatch(rf"lab d is being changed by nslab down \(pid {os.getpid()}, since "
                                             r"\d\d:\d\d:\d\d\)", line), line
    doc = status("d", drivers)["labs"][0]
    assert doc["drift"] == [] and doc["changing"] == line
    assert state.changing_labs() == {"d": line} and state.changing_labs("d/web") == {"d": line}
    assert state.changing_labs("other") == {}
    with open(intent_file("d")) as fh:
        intent = json.load(fh)
    intent["pid"] = 1 << 22  # its process is gone (a killed run): not being changed, the drift shows
    with open(intent_file("d"), "w") as fh:
        json.dump(intent, fh)
    assert state.changing("d") is None and status("d", drivers)["labs"][0]["drift"]


def test_a_throwaway_lab_is_changed_by_nslab_run(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path))
    state.write_intent("run-123", ["run-123-main"], [])
    line = state.changing("run-123") or ""
    assert line.startswith("lab run-123 is being changed by nslab run (pid ")
    # being made: no state yet, yet `status` of it (or of every lab) says so instead of "no lab is up"
    assert status("run-123") == status() == {"version": 1, "labs": [], "changing": [line]}


def test_a_failed_converge_gives_a_moved_service_back(tmp_path, monkeypatch):
    from nslab.errors import NslabError

    text = LAB.replace("web: {networks: [front]}", "web: {networks: [front], run: exec sleep 1000}")
    d = up_over_fakes(text, tmp_path, monkeypatch)
    before = d.processes.running["d"]
    d.nft.fail_on = "run"  # the ruleset, loaded after the wiring made the host again and the service stopped
    with pytest.raises(NslabError, match="injected failure"):
        Lab.from_text(text.replace("10.81.1.0/24", "10.81.9.0/24"), drivers=d).up()
    assert d.processes.running["d"] == before and d.processes.restarted == ["web"]
