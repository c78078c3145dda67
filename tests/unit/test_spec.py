"""The lab file schema: what is accepted, and how every problem is reported at once with file:line."""

from __future__ import annotations

import pytest

from labfiles import ISSUE_EXAMPLE
from nslab.core import spec
from nslab.errors import SpecError


def test_issue_example_parses_with_both_network_forms():
    lab, _ = spec.parse(ISSUE_EXAMPLE)
    assert lab.name == "demo"
    assert str(lab.networks["front"].subnet) == "10.80.1.0/24"
    assert lab.networks["back"].subnet is None
    assert lab.hosts["web1"].networks == {"front": None}
    assert str(lab.hosts["web2"].networks["front"]) == "10.80.1.20"
    assert lab.hosts["lonely"].networks == {}
    assert lab.links[0].endpoints == ("web1", "db")
    assert str(lab.links[1].subnet) == "10.90.0.0/30"


def test_every_problem_reported_at_once_with_line_and_field():
    text = """\
name: Demo
networks:
  front:
    subnet: 10.80.1.0/24
    colour: red
hosts:
  web2:
    networks: {front: 10.80.1.300}
  db:
    restart: sometimes
links:
  - {endpoints: [web2, db], x: 1}
"""
    with pytest.raises(SpecError) as err:
        spec.parse(text, "lab.yaml")
    lines = err.value.lines()
    assert len(lines) == 5, lines
    assert lines[0].startswith("lab.yaml:1: name: lab name 'Demo': at most 12 characters of a-z, 0-9 and -")
    assert "lab.yaml:5: networks.front.colour: unknown key 'colour'" in lines
    assert any(line.startswith("lab.yaml:8: hosts.web2.networks.front:") for line in lines)
    assert any(line.startswith("lab.yaml:10: hosts.db.restart:") for line in lines)
    assert "lab.yaml:12: links[0].x: unknown key 'x'" in lines


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("name: a\nnetworks: {n: {subnet: 10.0.0.1/24}}\n",
         "subnet 10.0.0.1/24 has host bits set: the subnet is 10.0.0.0/24"),
        ("name: a\nnetworks: {n: {subnet: 10.0.0.0/33}}\n", "subnet 10.0.0.0/33 is not an IPv4 subnet"),
        ("name: a\nnetworks: {n: {subnet: 10.0.0.0}}\n", "subnet 10.0.0.0 has no prefix length"),
        ("name: a\nnetworks: {n: {subnet6: 'fd00::'}}\n", "subnet6 fd00:: has no prefix length"),
        ("name: a\nhosts: {a: {}, b: {}}\nlinks: [{endpoints: [a, b], subnet: 10.9.0.0}]\n",
         "subnet 10.9.0.0 has no prefix length"),
        ("name: a\nnetworks: {n: {subnet: 10.0.0.0/31}}\n", "at least a /30"),
        ("name: a\nhosts: {h: {networks: [n, n]}}\n", "listed twice"),
        ("name: abcdefghijklm\n", "lab name 'abcdefghijklm': at most 12 characters"),
        ('name: "demo\\n"\n', "lab name 'demo\\n': at most 12"),  # `$` would have let a trailing newline through
        ("- just\n- a list\n", "a lab file is a mapping"),
        ("name: a\nhosts: {h: [\n", "invalid YAML"),
    ],
)
def test_bad_values_are_explained(text, fragment):
    with pytest.raises(SpecError) as err:
        spec.parse(text, "f.yaml")
    assert fragment in str(err.value)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read lab file"):
        spec.load(tmp_path / "nope.yaml")


def test_unquoted_port_mapping_gets_a_hint_with_its_line():
    text = "name: a\nhosts:\n  h:\n    publish:\n      - 2222:22\n      - \"8080:80\"\n"
    with pytest.raises(SpecError) as err:
        spec.parse(text, "f.yaml")
    assert err.value.lines() == [
        'f.yaml:5: hosts.h.publish[0]: put port mappings in quotes ("2222:22"): unquoted, YAML read this one '
        "as the number 133342"
    ]
