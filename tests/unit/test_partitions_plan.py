"""Partitions over the fakes (no root): what each host of each side drops, the lab-file form and its problems,
the command-line form kept by a converge, heal, rollback."""

from __future__ import annotations

import pytest

from labfiles import lab_text
from nslab.drivers.fake import FakeShaper, fake_drivers
from nslab.errors import NslabError, UserError
from nslab.lab import Lab

LAB = lab_text(
    "part", {"front": "10.83.1.0/24", "back": "10.83.2.0/24"}, hosts={
        "a": "networks: {front: 10.83.1.10}", "b": "networks: {front: 10.83.1.11}",
        "c": "networks: {back: 10.83.2.10}",
    },
    more="partitions: [[a, back]]\n",
)


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path / "state"))


def last_table(d, namespace: str) -> str:
    return d.shaper.tables[namespace][-1]


def test_each_side_drops_the_other_both_ways():
    d = fake_drivers()
    Lab.from_text(LAB, drivers=d).up()
    a, c = last_table(d, "part-a"), last_table(d, "part-c")
    assert 'ip saddr { 10.83.2.0/24 } drop comment "nslab:part:partition:a:back"' in a
    assert 'ip daddr { 10.83.2.0/24 } drop comment "nslab:part:partition:a:back"' in a
    assert 'ip saddr { 10.83.1.10 } drop comment "nslab:part:partition:a:back"' in c
    assert 'ip daddr { 10.83.1.10 } drop comment "nslab:part:partition:a:back"' in c
    assert "part-b" not in d.shaper.tables


def test_partition_and_heal_from_the_api_are_recorded_and_kept_by_a_converge():
    d = fake_drivers()
    lab = Lab.from_text(LAB, drivers=d)
    lab.up()
    lab.partition("a", "b")
    assert 'ip saddr { 10.83.1.11 } drop comment "nslab:part:partition:a:b"' in last_table(d, "part-a")
    listed = lab.status()["labs"][0]["faults"]["partitions"]
    assert listed == [{"a": "a", "b": "back", "source": "file"}, {"a": "a", "b": "b", "source": "cli"}]
    assert lab.up().applied is False  # kept as it is
    lab.heal("b", "a")
    assert "partition:a:b\"" not in last_table(d, "part-a") and "partition:a:back" in last_table(d, "part-a")
    lab.heal()
    assert last_table(d, "part-a").strip().endswith("delete table inet nslab-partition")
    assert lab.status()["labs"][0]["faults"]["partitions"] == []
    with pytest.raises(UserError, match="no partition between 'a' and 'c'"):
        lab.heal("a", "c")
    with pytest.raises(UserError, match="'zz' is neither a host nor a network"):
        lab.partition("a", "zz")


def test_bad_partitions_in_the_file_are_located():
    with pytest.raises(NslabError) as err:
        Lab.from_text(LAB.replace("[[a, back]]", "[[a, a], [a, nowhere]]"), "lab.yaml", drivers=fake_drivers()).up()
    text = "\n".join(err.value.lines())
    assert "lab.yaml:9: partitions[0]: a partition needs two different sides" in text
    assert "partitions[1]: 'nowhere' is neither a host nor a network of lab 'part'" in text


def test_a_failing_partition_rolls_back():
    d = fake_drivers(shaper=FakeShaper(fail_on="nft"))
    with pytest.raises(NslabError):
        Lab.from_text(LAB, drivers=d).up()
    assert d.kernel.named_namespaces() == frozenset()
