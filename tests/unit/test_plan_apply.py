"""Convergence (plan_up/plan_down) and the undo journal (apply_up), on the fake kernel."""

from __future__ import annotations

import pytest
from test_spec import ISSUE_EXAMPLE

from nslab import spec
from nslab.apply import apply_down, apply_up
from nslab.drivers.fake import FakeKernel
from nslab.errors import KernelError
from nslab.plan import (
    AddBridges,
    AddHosts,
    AddLinks,
    Observed,
    RemoveHosts,
    RemoveLinks,
    RemoveStaleLinks,
    plan_down,
    plan_up,
)
from nslab.resolve import resolve


def _lab(text: str, previous=None):
    lab_spec, source = spec.parse(text)
    return resolve(lab_spec, source, previous=previous)


def _observed(kernel: FakeKernel) -> Observed:
    return Observed(frozenset(kernel.namespaces), frozenset(kernel.bridges))


def test_first_up_creates_everything_in_order():
    lab = _lab(ISSUE_EXAMPLE)
    plan = plan_up(lab, None, Observed())
    assert [type(a) for a in plan.actions] == [AddBridges, AddHosts, AddLinks]
    commands = plan.commands()
    assert "ip netns add demo-web1" in commands
    assert "ip -n demo-web1 route add default via 10.80.1.1" in commands
    assert not any("demo-lonely route" in c for c in commands)


def test_second_up_is_empty_and_edit_touches_only_what_changed():
    lab = _lab(ISSUE_EXAMPLE)
    kernel = FakeKernel()
    apply_up(plan_up(lab, None, Observed()), lab, None, kernel)
    assert not plan_up(lab, lab, _observed(kernel))

    edited_text = ISSUE_EXAMPLE.replace("  lonely: {}\n", "  extra:\n    networks: [front]\n")
    edited = _lab(edited_text, previous=lab.allocations())
    plan = plan_up(edited, lab, _observed(kernel))
    kinds = {type(a): a for a in plan.actions}
    assert kinds[RemoveHosts].namespaces == ("demo-lonely",)
    assert [h.name for h in kinds[AddHosts].hosts] == ["extra"]
    assert AddBridges not in kinds and AddLinks not in kinds
    apply_up(plan, edited, lab, kernel)
    assert kernel.namespaces == {f"demo-{h}" for h in ("web1", "web2", "db", "extra")}


def test_missing_namespace_is_recreated_with_its_links():
    lab = _lab(ISSUE_EXAMPLE)
    kernel = FakeKernel()
    apply_up(plan_up(lab, None, Observed()), lab, None, kernel)
    kernel.namespaces.discard("demo-db")  # someone ran `ip netns del demo-db`
    plan = plan_up(lab, lab, _observed(kernel))
    kinds = {type(a): a for a in plan.actions}
    assert [h.name for h in kinds[AddHosts].hosts] == ["db"]
    assert len(kinds[AddLinks].links) == 2  # both links end in db


def test_changed_link_is_replaced_without_touching_hosts():
    lab = _lab(ISSUE_EXAMPLE)
    kernel = FakeKernel()
    apply_up(plan_up(lab, None, Observed()), lab, None, kernel)
    edited = _lab(ISSUE_EXAMPLE.replace("10.90.0.0/30", "10.91.0.0/30"), previous=lab.allocations())
    plan = plan_up(edited, lab, _observed(kernel))
    assert [type(a) for a in plan.actions] == [RemoveLinks, AddLinks]


def test_failure_rolls_back_what_this_run_created():
    lab = _lab(ISSUE_EXAMPLE)
    kernel = FakeKernel(fail_on="add_links")
    with pytest.raises(KernelError) as err:
        apply_up(plan_up(lab, None, Observed()), lab, None, kernel)
    assert "rolled back" in str(err.value)
    assert kernel.namespaces == set() and kernel.bridges == set()
    assert err.value.current.hosts == {}


def test_down_plan_covers_recorded_and_marked_objects():
    lab = _lab(ISSUE_EXAMPLE)
    plan = plan_down(lab, extra_namespaces=["demo-stray"], extra_bridges=["nslstray"])
    kernel = FakeKernel()
    kernel.namespaces = {"demo-web1", "demo-stray"}
    kernel.bridges = {"nslstray"}
    assert apply_down(plan, kernel) == []
    assert kernel.namespaces == set() and kernel.bridges == set()


def test_veths_of_dying_namespaces_are_cleared_before_hosts_are_made():
    lab = _lab(ISSUE_EXAMPLE)
    web1 = lab.hosts["web1"].interfaces[0].host_veth
    plan = plan_up(lab, None, Observed(host_veths=frozenset({web1, "nsvsomeoneelse"})))
    assert [type(a) for a in plan.actions] == [RemoveStaleLinks, AddBridges, AddHosts, AddLinks]
    assert plan.actions[0].commands() == [f"ip link del {web1}"]
    kernel = FakeKernel()
    apply_up(plan, lab, None, kernel)
    assert kernel.calls[0] == "clear_stale_links"
    # hosts that stay are never touched, whatever is observed
    assert not plan_up(lab, lab, Observed(frozenset(kernel.namespaces), frozenset(kernel.bridges),
                                          frozenset({web1})))
