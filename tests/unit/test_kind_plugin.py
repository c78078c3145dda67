"""A link kind is one module plus one registration: tests/unit/toykind.py, registered with ``kinds.register``
(the registry's one entry point), is read from a lab file with its own schema, planned, applied, undone and
checked for drift over the fake drivers; no module under src/ names it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import toykind
from fakelab import up_over_fakes

from nslab.core import kinds, spec, state
from nslab.core.drift import lab_drift
from nslab.core.kinds import veth
from nslab.core.resolve import resolve
from nslab.errors import SpecError
from nslab.lab import Lab

LAB = """\
name: t
hosts:
  a: {}
  b: {}
  c: {}
links:
  - [a, b]
  - kind: toy
    endpoints: [b, c]
    label: blue
    subnet: 10.63.0.0/29
"""


@pytest.fixture(autouse=True)
def toy(monkeypatch):
    """The toy kind registered for one test (the registry as it was comes back afterwards)."""
    monkeypatch.setattr(kinds, "KINDS", dict(kinds.KINDS))
    kinds.register("toy", "toykind")
    return kinds.kind("toy")


def _resolved():
    return resolve(*spec.parse(LAB))


def test_the_toy_kind_is_registered_and_has_every_part(toy):
    assert toy is toykind
    assert not [p for p in Path(kinds.__file__).parents[2].rglob("*.py") if "toykind" in p.read_text()]
    for name, part in vars(kinds.Kind).items():
        if callable(part) and not name.startswith("_"):
            wanted = list(inspect.signature(part).parameters)[1:]
            assert list(inspect.signature(getattr(toy, name)).parameters) == wanted, name


def test_a_lab_file_is_read_with_the_kind_s_schema():
    lab_spec, _ = spec.parse(LAB)
    written = lab_spec.links[1]
    assert (written.kind, written.endpoints, written.label) == ("toy", ("b", "c"), "blue")
    assert lab_spec.links[0].kind == "veth"  # the short form stays veth


def test_the_kind_s_schema_reports_file_line_and_field():
    bad = LAB.replace("label: blue", "label: ultramarine\n    mtu: 9000")  # mtu is veth's, not the toy's
    with pytest.raises(SpecError) as caught:
        spec.parse(bad, "toy.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "toy.yaml:10: links[1].label: 'ultramarine' is longer than 8 characters",
        "toy.yaml:11: links[1].mtu: unknown key 'mtu'",
    ]
    with pytest.raises(SpecError) as caught:
        spec.parse(LAB.replace("kind: toy", "kind: tory"), "toy.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "toy.yaml:8: links[1].kind: unknown link kind 'tory' (kinds: veth, vxlan, toy)"]


def test_resolve_records_the_kind_and_its_options():
    lab = _resolved()
    toy_link = lab.links[1]
    assert (toy_link.kind, toy_link.options, str(toy_link.a_address)) == ("toy", (("label", "blue"),), "10.63.0.1/29")
    assert state.lab_from_dict(state.lab_to_dict(lab)).links == lab.links


def test_up_plans_and_applies_each_kind_s_links_over_the_fakes(tmp_path, monkeypatch):
    drivers = up_over_fakes(LAB, tmp_path, monkeypatch)
    made = {(new.kind, new.end.namespace, new.end.name): new for new in drivers.kernel.made}
    assert sorted(made) == [("toy", "t-b", "eth1"), ("toy", "t-c", "eth0"), ("veth", "t-a", "eth0")]
    toy_end = made[("toy", "t-c", "eth0")]
    assert (toy_end.peer, toy_end.end.alias, toy_end.data[4:9]) == (None, "toy:blue", b"blue\0")
    assert [str(a) for a in toy_end.end.addresses] == ["10.63.0.2/29"]
    assert made[("veth", "t-a", "eth0")].peer.namespace == "t-b"


def test_dry_run_prints_the_kind_s_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path / "state"))
    from nslab.drivers.fake import fake_drivers

    result = Lab.from_text(LAB, drivers=fake_drivers()).up(dry_run=True)
    lines = [line for action in result.plan for line in action.commands()]
    assert "ip -n t-c link add eth0 type toy label blue" in lines


def test_the_inverse_removes_and_the_inverse_of_that_adds_again(tmp_path, monkeypatch):
    drivers = up_over_fakes(LAB, tmp_path, monkeypatch)
    lab = _resolved()
    undo = toykind.add(lab, (lab.links[1],)).apply(drivers)
    assert isinstance(undo, toykind.RemoveToys)
    again = undo.apply(drivers)
    assert "eth0" not in drivers.kernel.ifaces["t-c"] and "eth1" not in drivers.kernel.ifaces["t-b"]
    assert isinstance(again, toykind.AddToys)
    assert "eth0" in drivers.kernel.ifaces["t-a"]  # the veth link is not the toy's


def test_a_failing_add_leaves_nothing(tmp_path, monkeypatch):
    drivers = up_over_fakes(LAB, tmp_path, monkeypatch)
    lab = _resolved()
    toykind.remove(lab, (lab.links[1],)).apply(drivers)
    drivers.kernel.fail_on = {"add_links"}
    with pytest.raises(Exception, match="injected"):
        toykind.add(lab, (lab.links[1],)).apply(drivers)
    assert drivers.kernel.calls[-1] == "remove_link_ends"


def test_drift_is_the_kind_s_and_up_repairs_it(tmp_path, monkeypatch):
    drivers = up_over_fakes(LAB, tmp_path, monkeypatch)

    def drift() -> list[str]:
        st = state.LabState.load("t")
        assert st is not None
        return [d.text for d in lab_drift(st, drivers)]

    assert drift() == []
    drivers.kernel.kinds[("t-c", "eth0")] = "dummy"
    drivers.kernel.remove_link_ends([("t-b", "eth1")])
    assert drift() == ["host b: toy eth1 is missing", "host c: toy eth0 is a dummy link"]
    plan = list(Lab.from_text(LAB, drivers=drivers).up().plan)
    assert [type(a) for a in plan] == [toykind.RemoveToys, toykind.AddToys]
    assert drift() == []
    assert not any(isinstance(a, veth.AddLinks) for a in plan)  # the veth link did not drift
