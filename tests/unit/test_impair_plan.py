"""Impairments over the fakes (no root): the lab-file form and its problems, what is planned for each direction
with and without netem, converges that touch only what changed, rollback, the Python API and teardown."""

from __future__ import annotations

import pytest

from nslab.core.features import impair
from nslab.core.spec import ImpairSpec, parse
from nslab.drivers.fake import FakeShaper, fake_drivers
from nslab.errors import EnvironmentProblem, NslabError, SpecError, UserError
from nslab.lab import Lab

LAB = """\
name: imp
networks:
  front: {subnet: 10.82.1.0/24}
hosts:
  a:
    networks: [front]
    impair: {eth0: {loss: 30%, rate: 10mbit, delay: 20ms, jitter: 2ms, direction: both}}
  b: {networks: [front]}
links:
  - [a, b]
"""


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path / "state"))


def test_impair_values_are_normalised():
    spec = ImpairSpec.model_validate({"loss": "30%", "rate": "10mbit", "delay": "0.05s", "jitter": 5})
    assert (spec.loss, spec.rate, spec.delay, spec.jitter, spec.direction) == (30.0, 10_000_000, 50.0, 5.0, "out")
    assert ImpairSpec.model_validate({"rate": "512kbit", "delay": "500us"}).rate == 512_000


@pytest.mark.parametrize(("text", "message"), [
    ("loss: 150%", "hosts.a.impair.eth0.loss"),
    ("rate: fast", "not a number with a unit"),
    ("delay: 2h", "not a number with a unit"),
    ("direction: sideways", "hosts.a.impair.eth0.direction"),
    ("lose: 5%", "unknown key 'lose'"),
])
def test_bad_impairments_are_located(text, message):
    with pytest.raises(SpecError) as err:
        parse(f"name: x\nhosts:\n  a:\n    impair: {{eth0: {{{text}}}}}\n", "lab.yaml")
    assert message in "\n".join(err.value.lines())
    assert "lab.yaml:4" in "\n".join(err.value.lines())


def test_an_unknown_interface_is_a_problem_before_anything_changes():
    d = fake_drivers()
    with pytest.raises(NslabError) as err:
        Lab.from_text(LAB.replace("impair: {eth0:", "impair: {eth7:"), "lab.yaml", drivers=d).up()
    assert "hosts.a.impair.eth7: host 'a' has no interface 'eth7' (it has: eth0, eth1)" in "\n".join(err.value.lines())
    assert d.shaper.calls == []


def test_no_netem_and_no_nfqueue_names_what_is_missing():
    d = fake_drivers(shaper=FakeShaper(modules=()))
    with pytest.raises(NslabError) as err:
        Lab.from_text(LAB, "lab.yaml", drivers=d).up()
    assert "CONFIG_NET_SCH_NETEM" in str(err.value) and "CONFIG_NETFILTER_XT_TARGET_NFQUEUE" in str(err.value)


def test_up_plans_loss_rate_and_the_delayer_for_both_directions():
    d = fake_drivers()
    lab = Lab.from_text(LAB, drivers=d)
    lab.up()
    shaper = d.shaper
    assert isinstance(shaper, FakeShaper)
    (table,) = shaper.tables["imp-a"]
    assert 'iifname "eth0" numgen random mod 1000 < 300 drop comment "nslab:imp:impair:a:eth0"' in table
    assert 'oifname "eth0" numgen random mod 1000 < 300 drop comment "nslab:imp:impair:a:eth0"' in table
    ends = {(ns, line.split()[3]) for ns, line in shaper.tc_lines}
    assert ends == {("imp-a", "eth0"), (None, lab.resolve().hosts["a"].interfaces[0].host_veth)}
    assert all("tbf rate 10000000bit" in line for _, line in shaper.tc_lines)
    assert shaper.queue_rules["imp-a"] == [("in", "eth0", 1, "nslab:imp:impair:a:eth0"),
                                           ("out", "eth0", 0, "nslab:imp:impair:a:eth0")]
    assert [(q["queue"], q["delay"], q["jitter"]) for q in shaper.delayer["imp"]["queues"]] == [(1, 20.0, 2.0),
                                                                                                 (0, 20.0, 2.0)]
    status = lab.status()["labs"][0]["faults"]
    assert status["impairments"][0]["loss"] == 30.0 and status["delayer"] == {"running": True}
    assert lab.up().applied is False  # unchanged: nothing planned


def test_with_netem_delay_is_a_qdisc_and_no_delayer_runs():
    d = fake_drivers(shaper=FakeShaper(modules=("sch_netem",)))
    Lab.from_text(LAB, drivers=d).up()
    assert d.shaper.delayer == {} and d.shaper.queue_rules == {}
    assert all("netem delay 20ms 2ms rate 10000000bit" in line for _, line in d.shaper.tc_lines)


def test_the_in_direction_of_a_link_shapes_the_peer_host():
    d = fake_drivers()
    Lab.from_text(LAB.replace("impair: {eth0: {loss: 30%, rate: 10mbit, delay: 20ms, jitter: 2ms, direction: both}}",
                              "impair: {eth1: {rate: 1mbit, direction: in}}"), drivers=d).up()
    assert [(ns, line.split()[3]) for ns, line in d.shaper.tc_lines] == [("imp-b", "eth1")]


def test_cli_changes_are_recorded_kept_by_a_converge_and_cleared():
    d = fake_drivers()
    lab = Lab.from_text(LAB, drivers=d)
    lab.up()
    lab.impair("b", loss="5%", direction="out")
    listed = {(i["host"], i["source"]) for i in lab.status()["labs"][0]["faults"]["impairments"]}
    assert listed == {("a", "file"), ("b", "cli")}
    lab.up()  # a converge keeps what the command line set
    assert {i["host"] for i in lab.status()["labs"][0]["faults"]["impairments"]} == {"a", "b"}
    lab.impair("a", clear=True)
    assert d.shaper.delayer == {}  # nothing is delayed any more
    assert d.shaper.queue_rules["imp-a"] == []
    assert d.shaper.tables["imp-a"][-1].strip().endswith("delete table inet nslab-impair")
    with pytest.raises(UserError, match="say what to impair"):
        lab.impair("b")
    with pytest.raises(UserError, match="no interface 'eth9'"):
        lab.impair("b", "eth9", loss=1)


def test_cli_delay_without_support_is_refused():
    d = fake_drivers()
    lab = Lab.from_text(LAB.replace("impair: {eth0: {loss: 30%, rate: 10mbit, delay: 20ms, jitter: 2ms}}", ""),
                        drivers=d)
    lab.up()
    d.shaper.modules.clear()
    with pytest.raises(EnvironmentProblem, match="CONFIG_NETFILTER_XT_TARGET_NFQUEUE"):
        lab.impair("a", delay=50)


@pytest.mark.parametrize("operation", ["nft", "tc", "queues", "start_delayer"])
def test_a_failing_impairment_rolls_back_a_fresh_lab(operation):
    d = fake_drivers(shaper=FakeShaper(fail_on=operation))
    with pytest.raises(NslabError):
        Lab.from_text(LAB, drivers=d).up()
    assert d.kernel.named_namespaces() == frozenset()
    assert d.shaper.delayer == {}


def test_down_stops_the_delayer():
    d = fake_drivers()
    lab = Lab.from_text(LAB, drivers=d)
    lab.up()
    lab.down()
    assert d.shaper.delayer == {} and "stop_delayer" in d.shaper.calls


def test_describe():
    e = impair.entry(impair.impairment("eth0", ImpairSpec(loss=1.5, rate=2_000_000, delay=5, jitter=1, direction="in")),
                     "cli")
    (row,) = impair.rows(impair.ImpairRecord({"a": {"eth0": e}}))
    assert impair.describe(row) == "loss 1.5% rate 2mbit delay 5ms±1ms (in)"


def test_the_default_direction_is_out_as_netem_egress():
    d = fake_drivers()
    Lab.from_text(LAB.replace(", direction: both", ""), drivers=d).up()
    shaper = d.shaper
    assert isinstance(shaper, FakeShaper)
    (table,) = shaper.tables["imp-a"]
    assert 'oifname "eth0" numgen' in table and 'iifname "eth0" numgen' not in table
    assert {ns for ns, _ in shaper.tc_lines} == {"imp-a"}  # only the host's own end shapes


PLAIN = LAB.replace("    impair: {eth0: {loss: 30%, rate: 10mbit, delay: 20ms, jitter: 2ms, direction: both}}\n", "")


def listed(lab: Lab) -> list[tuple[str, str, str]]:
    return [(i["host"], i["direction"], impair.describe(i)) for i in lab.status()["labs"][0]["faults"]["impairments"]]


def test_impairments_compose_and_a_second_impair_changes_only_the_kinds_it_names():
    d = fake_drivers()
    lab = Lab.from_text(PLAIN, drivers=d)
    lab.up()
    assert lab.impair("a", loss="30%") == "imp/a:eth0 now: loss 30% (out)"
    said = lab.impair("a", delay="40ms", direction="in")
    assert said == "imp/a:eth0 now: delay 40ms (in); loss 30% (out)"
    assert lab.impair("a", loss=10) == "imp/a:eth0 now: delay 40ms (in); loss 10% (out)"
    assert 'oifname "eth0" numgen random mod 1000 < 100 drop' in d.shaper.tables["imp-a"][-1]
    assert d.shaper.queue_rules["imp-a"] == [("in", "eth0", 1, "nslab:imp:impair:a:eth0")]
    assert d.shaper.stamps["imp-a"] == {"eth0"}  # the receive timestamps of delayed packets are cleared
    assert lab.impair("a", delay=40, direction="out") == "imp/a:eth0 now: delay 40ms (in); loss 10% delay 40ms (out)"
    assert lab.impair("a", clear="delay") == "imp/a:eth0 now: loss 10% (out)"
    assert d.shaper.stamps["imp-a"] == set() and d.shaper.delayer == {}
    assert lab.impair("a", clear=True) == "imp/a:eth0 now: unimpaired"
    assert listed(lab) == []


def test_both_with_the_same_kinds_is_one_row_and_clear_takes_kinds():
    d = fake_drivers()
    lab = Lab.from_text(PLAIN, drivers=d)
    lab.up()
    lab.impair("a", delay=20, jitter=2, loss=5, direction="both")
    assert listed(lab) == [("a", "both", "loss 5% delay 20ms±2ms (both)")]
    lab.impair("a", clear=["jitter", "loss"], direction="in")
    assert listed(lab) == [("a", "in", "delay 20ms (in)"), ("a", "out", "loss 5% delay 20ms±2ms (out)")]
    with pytest.raises(UserError, match="not a kind of impairment"):
        lab.impair("a", clear="lag")


def test_reorder_is_emulated_and_duplicate_and_corrupt_need_netem():
    d = fake_drivers()
    lab = Lab.from_text(PLAIN, drivers=d)
    lab.up()
    with pytest.raises(UserError, match="reorder needs a delay"):
        lab.impair("a", reorder="25%")
    lab.impair("a", delay=10, reorder=25)
    assert [q["reorder"] for q in d.shaper.delayer["imp"]["queues"]] == [25.0]
    with pytest.raises(EnvironmentProblem, match="duplicate and corrupt need netem .* which this kernel lacks"):
        lab.impair("a", duplicate=1, corrupt=1)
    with_netem = fake_drivers(shaper=FakeShaper(modules=("sch_netem",)))
    Lab.from_text(LAB.replace("jitter: 2ms,", "jitter: 2ms, duplicate: 1%, corrupt: 0.1%, reorder: 5%,"),
                  drivers=with_netem).up()
    assert all("netem delay 20ms 2ms reorder 5% duplicate 1% corrupt 0.1% rate 10000000bit" in line
               for _, line in with_netem.shaper.tc_lines)


def test_a_lab_file_with_duplicate_on_this_kernel_is_refused_with_one_line():
    d = fake_drivers()
    with pytest.raises(NslabError) as err:
        text = PLAIN.replace("b: {networks: [front]}", "b: {networks: [front], impair: {eth0: {duplicate: 1}}}")
        Lab.from_text(text, "lab.yaml", drivers=d).up()
    assert err.value.lines() == ["lab.yaml:7: hosts.b.impair.eth0: duplicate needs netem (kernel: "
                                 "CONFIG_NET_SCH_NETEM), which this kernel lacks (loss, rate, delay, jitter and "
                                 "reorder work without it)"]


def test_for_sets_a_timer_in_the_delayer_and_expire_clears_only_what_is_due(monkeypatch):
    from nslab.core import faults

    d = fake_drivers()
    lab = Lab.from_text(PLAIN, drivers=d)
    lab.up()
    lab.impair("a", loss=30)
    lab.impair("a", delay="40ms", duration="2m")
    config = d.shaper.delayer["imp"]
    assert config["expire"] > 100 and [q["delay"] for q in config["queues"]] == [40.0]
    assert "s left" in listed(lab)[0][2]
    now = __import__("time").time()
    monkeypatch.setattr("time.time", lambda: now + 121)
    faults.expire("imp", d)
    assert listed(lab) == [("a", "out", "loss 30% (out)")]
    assert d.shaper.delayer == {}


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("2m", 120), ("5", 5)])
def test_durations(text, seconds):
    from nslab.core.faults import parse_duration

    assert parse_duration(text) == seconds


def test_records_of_the_old_form_are_read():
    old = impair.ImpairRecord.from_json({"hosts": {"a": {"eth0": {"loss": 5, "rate": 0, "delay": 0, "jitter": 0,
                                                                  "direction": "both", "source": "cli"}}}})
    assert old.hosts == {"a": {"eth0": {"in": {"loss": 5}, "out": {"loss": 5}, "source": "cli"}}}


def test_a_recreated_host_restarts_the_delayer_its_queues_were_bound_in():
    d = fake_drivers()
    lab = Lab.from_text(PLAIN, drivers=d)
    lab.up()
    lab.impair("a", delay=10)
    resolved = lab.resolve()
    record = impair.ImpairRecord({"a": {"eth0": {"in": {}, "out": {"delay": 10.0}, "source": "cli"}}})
    assert impair.plan_change(resolved, record, record, d) == []
    restarted = impair.plan_change(resolved, record, record, d, frozenset({"a"}))
    assert [type(a).__name__ for a in restarted] == ["SetDelayer", "SetQueues"]
