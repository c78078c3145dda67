"""Convergence of the wiring (plan_up/plan_down) and the undo journal (apply), on the fake kernel."""

from __future__ import annotations

import pytest
from test_spec import ISSUE_EXAMPLE

from nslab.core import spec
from nslab.core.apply import apply, teardown
from nslab.core.kinds.veth import AddLinks, RemoveLinks
from nslab.core.resolve import resolve
from nslab.core.wiring import (
    AddBridges,
    AddHosts,
    Observed,
    RemoveHosts,
    plan_down,
    plan_up,
)
from nslab.drivers.fake import FakeKernel, fake_drivers
from nslab.errors import KernelError


def apply_up(plan, kernel: FakeKernel) -> None:
    apply(plan, fake_drivers(kernel=kernel))


def _lab(text: str, previous=None):
    lab_spec, source = spec.parse(text)
    return resolve(lab_spec, source, previous=previous)


def _observed(kernel: FakeKernel) -> Observed:
    return Observed(frozenset(kernel.namespaces), frozenset(kernel.bridges), frozenset(kernel.veths))


def test_first_up_creates_everything_in_order():
    lab = _lab(ISSUE_EXAMPLE)
    plan = plan_up(lab, None, Observed())
    assert [type(a) for a in plan.actions] == [AddBridges, AddHosts, AddLinks]
    commands = plan.commands()
    assert "ip netns add demo-web1" in commands
    assert "ip -n demo-web1 route add default via 10.80.1.1 proto static" in commands
    assert not any("demo-lonely route" in c for c in commands)


def test_second_up_is_empty_and_edit_touches_only_what_changed():
    lab = _lab(ISSUE_EXAMPLE)
    kernel = FakeKernel()
    apply_up(plan_up(lab, None, Observed()), kernel)
    assert not plan_up(lab, lab, _observed(kernel))

    edited_text = ISSUE_EXAMPLE.replace("  lonely: {}\n", "  extra:\n    networks: [front]\n")
    edited = _lab(edited_text, previous=lab.allocations())
    plan = plan_up(edited, lab, _observed(kernel))
    kinds = {type(a): a for a in plan.actions}
    assert kinds[RemoveHosts].namespaces == ("demo-lonely",)
    assert [h.name for h in kinds[AddHosts].hosts] == ["extra"]
    assert AddBridges not in kinds and AddLinks not in kinds
    apply_up(plan, kernel)
    assert kernel.namespaces == {f"demo-{h}" for h in ("web1", "web2", "db", "extra")}


def test_missing_namespace_is_recreated_with_its_links():
    lab = _lab(ISSUE_EXAMPLE)
    kernel = FakeKernel()
    apply_up(plan_up(lab, None, Observed()), kernel)
    kernel.namespaces.discard("demo-db")  # someone ran `ip netns del demo-db`
    plan = plan_up(lab, lab, _observed(kernel))
    kinds = {type(a): a for a in plan.actions}
    assert [h.name for h in kinds[AddHosts].hosts] == ["db"]
    assert len(kinds[AddLinks].links) == 2  # both links end in db


def test_changed_link_is_replaced_without_touching_hosts():
    lab = _lab(ISSUE_EXAMPLE)
    kernel = FakeKernel()
    apply_up(plan_up(lab, None, Observed()), kernel)
    edited = _lab(ISSUE_EXAMPLE.replace("10.90.0.0/30", "10.91.0.0/30"), previous=lab.allocations())
    plan = plan_up(edited, lab, _observed(kernel))
    assert [type(a) for a in plan.actions] == [RemoveLinks, AddLinks]


def test_failure_rolls_back_what_this_run_created():
    lab = _lab(ISSUE_EXAMPLE)
    kernel = FakeKernel(fail_on="add_links")
    with pytest.raises(KernelError) as err:
        apply_up(plan_up(lab, None, Observed()), kernel)
    assert "rolled back" in str(err.value)
    assert kernel.namespaces == set() and kernel.bridges == {} and kernel.veths == {}


def test_failed_converge_restores_the_lab_that_was_up():
    lab = _lab(ISSUE_EXAMPLE)
    kernel = FakeKernel()
    apply_up(plan_up(lab, None, Observed()), kernel)
    before = (set(kernel.namespaces), dict(kernel.bridges), dict(kernel.veths), set(kernel.link_ends))
    edited = _lab(ISSUE_EXAMPLE.replace("  lonely: {}\n", "  extra:\n    networks: [front]\n")
                  .replace("10.90.0.0/30", "10.91.0.0/30"), previous=lab.allocations())
    plan = plan_up(edited, lab, _observed(kernel))
    assert {type(a) for a in plan.actions} == {RemoveHosts, RemoveLinks, AddHosts, AddLinks}
    kernel.fail_on = {"add_links"}
    with pytest.raises(KernelError, match="rolled back"):
        apply(plan, fake_drivers(kernel=kernel))
    kernel.fail_on = set()
    assert (set(kernel.namespaces), dict(kernel.bridges), dict(kernel.veths), set(kernel.link_ends)) == before


def test_down_plan_covers_recorded_and_marked_objects():
    lab = _lab(ISSUE_EXAMPLE)
    plan = plan_down(lab, marked_namespaces=["demo-stray"], marked_bridges=["nslstray"])
    kernel = FakeKernel()
    kernel.namespaces = {"demo-web1", "demo-stray"}
    kernel.bridges = {"nslstray": "nslab:demo:net:stray"}
    assert teardown(plan, fake_drivers(kernel=kernel)) == []
    assert kernel.namespaces == set() and kernel.bridges == {}


def test_veths_of_dying_namespaces_are_cleared_before_hosts_are_made():
    lab = _lab(ISSUE_EXAMPLE)
    web1 = lab.hosts["web1"].interfaces[0].host_veth
    plan = plan_up(lab, None, Observed(host_veths=frozenset({web1, "nsvsomeoneelse"})))
    assert [type(a) for a in plan.actions] == [AddBridges, AddHosts, AddLinks]
    assert plan.actions[1].stale == (web1,) and f"ip link del {web1}" in plan.actions[1].commands()
    kernel = FakeKernel()
    apply_up(plan, kernel)
    assert kernel.calls[:3] == ["add_bridges", "clear_stale_links", "add_hosts"]
    # hosts that stay are never touched, whatever is observed
    assert not plan_up(lab, lab, Observed(frozenset(kernel.namespaces), frozenset(kernel.bridges),
                                          frozenset({web1})))


def test_actions_take_their_fields_positionally_or_by_name_with_defaults():
    from nslab.core.wiring import RemoveBridgesLater

    lab = _lab(ISSUE_EXAMPLE)
    hosts = tuple(lab.hosts.values())
    assert AddHosts(lab, hosts).stale == () and AddHosts(lab=lab, hosts=hosts, stale=("x",)).stale == ("x",)
    first, second = RemoveBridgesLater(("a",)), RemoveBridgesLater(("b",))
    assert first.pending == [] and first.pending is not second.pending  # a fresh list each
    with pytest.raises(TypeError, match="missing field 'hosts'"):
        AddHosts(lab)
    with pytest.raises(TypeError, match="unexpected or repeated field 'lab'"):
        AddHosts(lab, hosts, lab=lab)
    assert repr(RemoveHosts(lab, ("demo-web1",))).startswith("RemoveHosts(lab=Lab(")
