"""nslab.records: the JSON form of Value classes, derived from their annotations (issue 20, item 5); the state
file's format number, and a record written by the release before it (tests/fixtures/state-5369676.json)."""

from __future__ import annotations

import ipaddress
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pytest

from nslab import Lab
from nslab.core import state
from nslab.errors import StateError
from nslab.model import NO_DNS, Container, Host, Interface, Route
from nslab.model import Lab as Model
from nslab.records import decode, encode
from nslab.values import Value, field, replace

FIXTURES = Path(__file__).parent.parent / "fixtures"

RICH = """\
name: rich
networks:
  front: {subnet: 10.90.1.0/24, subnet6: "fd00:90:1::/64"}
  back: {subnet: 10.90.2.0/24, internal: true, mtu: 9000}
  plain6: {subnet: 10.90.3.0/24, subnet6: "fd00:90:3::/64", nat6: false}
hosts:
  router:
    networks: {front: 10.90.1.254, back: 10.90.2.254}
    sysctls: {net.ipv4.ip_forward: 1, net.ipv6.conf.all.forwarding: 1}
  b:
    networks: {back: {address: 10.90.2.10, mac: "02:AA:00:00:00:0B", mtu: 1400}}
    routes: [{to: 10.90.1.0/24, via: 10.90.2.254}]
  six:
    networks: [plain6]
    routes: [{to: "fd00:90:1::/64", via: "fd00:90:3::1"}]
  box:
    image: busybox:1
    command: [sleep, "600"]
    env: {A: "1", B: two}
    volumes: ["/tmp:/mnt:ro"]
    networks: [front]
links:
  - [router, b]
  - {endpoints: [router, six], mtu: 1400, ipv6: true}
"""


def rich() -> Model:
    return Lab.from_text(RICH).resolve()


def test_the_rich_lab_has_what_the_round_trip_must_carry():
    lab = rich()  # (else the round trip below proves less than it says)
    assert lab.links[1].subnet6 and lab.links[1].mtu == 1400 and lab.networks["front"].subnet6
    assert not lab.networks["plain6"].nat6 and lab.hosts["b"].routes and lab.hosts["router"].sysctls
    assert lab.hosts["six"].routes[0].via.version == 6 and lab.hosts["b"].interfaces[0].mac
    container = lab.hosts["box"].container
    assert container and container.command == ("sleep", "600") and container.env and container.volumes


def test_decode_of_encode_is_the_lab_itself_through_json_text():
    lab = rich()
    again = decode(Model, json.loads(json.dumps(encode(lab))))
    assert again == lab
    assert again.hosts["box"].container == lab.hosts["box"].container
    assert type(again.hosts["router"].interfaces) is tuple and type(again.networks) is dict
    assert state.lab_from_dict(state.lab_to_dict(lab)) == lab  # the names state.py keeps


def test_fields_compared_or_not_are_all_recorded():
    lab = rich()
    pulled = replace(lab, hosts={**lab.hosts, "box": replace(lab.hosts["box"], container=replace(
        lab.hosts["box"].container, pull=True))})
    assert decode(Model, encode(pulled)).hosts["box"].container.pull is True  # compare=False, still recorded


def test_a_field_at_its_default_is_left_out_and_read_back_as_the_default():
    record = encode(rich())
    router = record["hosts"]["router"]
    assert "container" not in router and "routes" not in router and "mtu" not in router["interfaces"][0]
    assert "pull" not in record["hosts"]["box"]["container"] and "nat6" not in record["networks"]["front"]
    assert router["gateway"] == "10.90.1.1"  # (no default: always written)


def test_unknown_keys_are_ignored_absent_ones_take_the_default_required_ones_must_be_there():
    data = encode(Route(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_address("10.0.0.1")))
    assert decode(Route, {**data, "metric": 5}) == decode(Route, data)
    iface = {"name": "eth0", "address": "10.0.0.2/24"}
    assert decode(Interface, iface) == Interface("eth0", ipaddress.IPv4Interface("10.0.0.2/24"))
    with pytest.raises(TypeError, match="missing field 'address'"):
        decode(Interface, {"name": "eth0"})


@pytest.mark.parametrize("bad, message", [
    ({"name": 5}, r"Interface.name: str expected, not 5"),
    ({"mtu": "1500"}, r"Interface.mtu: int or NoneType expected"),
    ({"mtu": True}, r"Interface.mtu: int or NoneType expected"),  # JSON's true is no number here
    ({"address": "10.0.0.300/24"}, r"Interface.address: "),
    ({"address": ["10.0.0.2/24"]}, r"Interface.address: IPv4Interface expected"),
    ({"address6": "10.0.0.2/24"}, r"Interface.address6: "),
])
def test_a_value_of_the_wrong_type_names_class_and_field(bad, message):
    good = {"name": "eth0", "address": "10.0.0.2/24"}
    with pytest.raises((TypeError, ValueError), match=message):
        decode(Interface, {**good, **bad})


def test_an_array_or_object_of_the_wrong_shape_is_refused():
    host = encode(rich().hosts["b"])
    with pytest.raises(TypeError, match="Host.interfaces: an array expected"):
        decode(Host, {**host, "interfaces": {"eth0": host["interfaces"][0]}})
    with pytest.raises(TypeError, match=r"Host.sysctls: an array of 2 expected"):
        decode(Host, {**host, "sysctls": [["a", "1", "extra"]]})
    with pytest.raises(TypeError, match="Network: an object expected"):
        decode(Model, {"name": "x", "source": "", "networks": {"n": []}, "hosts": {}})


class Shapes(Value):
    """What the model does not hold today, but records.py says it reads."""

    pair: tuple[int, str]
    words: list[str]
    weights: dict[str, float]
    kind: Literal["veth", "vxlan"]
    either: ipaddress.IPv4Address | int
    anything: Any = None
    net: ipaddress.IPv6Network | None = None
    nested: Mapping[str, tuple[Route, ...]] = field(default_factory=dict)


def test_other_shapes_round_trip():
    route = Route(ipaddress.ip_network("fd00::/64"), ipaddress.ip_address("fd00::1"))
    value = Shapes((1, "a"), ["x", "y"], {"w": 0.5, "v": 2}, "vxlan", 7, {"free": [1]},
                   ipaddress.IPv6Network("fd00::/64"), {"r": (route,)})
    again = decode(Shapes, json.loads(json.dumps(encode(value))))
    assert again == value and again.pair == (1, "a") and again.either == 7
    assert decode(Shapes, {**encode(value), "either": "10.0.0.1"}).either == ipaddress.IPv4Address("10.0.0.1")
    with pytest.raises(ValueError, match="Shapes.kind: one of"):
        decode(Shapes, {**encode(value), "kind": "macvlan"})
    assert decode(Shapes, {k: v for k, v in encode(value).items() if k != "nested"}).nested == {}


def test_an_annotation_with_no_record_is_refused_naming_the_field():
    class Odd(Value):
        sizes: frozenset[int]

    with pytest.raises(TypeError, match=r"Odd.sizes: no record for frozenset\[int\]"):
        encode(Odd(frozenset()))

    class TwoObjects(Value):
        thing: Route | Container

    with pytest.raises(TypeError, match="TwoObjects.thing: 2 members of a union are JSON objects"):
        encode(TwoObjects(None))


# --- the state file: its format, and the record of the release before issue 20 ------------------------------
def put_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, data: Any) -> None:
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path))
    (tmp_path / name).mkdir()
    (tmp_path / name / "state.json").write_text(json.dumps(data))


def test_state_files_carry_their_format(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path))
    lab = rich()
    state.LabState(lab, {"dns": {"x": 1}}).save()
    data = json.loads((tmp_path / "rich" / "state.json").read_text())
    assert data["format"] == state.FORMAT == 2 and "version" not in data
    loaded = state.LabState.load("rich")
    assert loaded and loaded.lab == lab and loaded.extra == {"dns": {"x": 1}}


def test_a_format_this_release_does_not_know_is_refused_as_damaged(tmp_path, monkeypatch):
    put_state(tmp_path, monkeypatch, "rich", {"format": 3, "lab": encode(rich())})
    with pytest.raises(StateError, match="format 3, not one this nslab reads"):
        state.LabState.load("rich")


def test_the_record_of_the_release_before_is_read_as_the_same_lab_resolved_today(tmp_path, monkeypatch):
    """state-5369676.json was written by commit 5369676 (format 1, by hand) for state-5369676.yaml: read today,
    it is the lab today's resolve makes of that file (what lets `up` converge it rather than rebuild it)."""
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path))
    (tmp_path / "rec").mkdir()
    shutil.copyfile(FIXTURES / "state-5369676.json", tmp_path / "rec" / "state.json")
    old = json.loads((FIXTURES / "state-5369676.json").read_text())
    assert old["version"] == 1 and "format" not in old
    loaded = state.LabState.load("rec")
    assert loaded is not None
    path = FIXTURES / "state-5369676.yaml"
    today = Lab.load(path).resolve()
    # Format 1 recorded the wiring only: each feature's part (services, DNS, publish, impairments, partitions)
    # reads as its default, and the features plan from their own records (extra) until the next `up` saves it.
    wiring = {name: replace(h, services=(), dns=NO_DNS, publish=(), impair=()) for name, h in today.hosts.items()}
    assert loaded.lab == replace(today, source=old["lab"]["source"], hosts=wiring, partitions=())
    assert today.hosts["web"].services and today.hosts["web"].publish  # (so the line above compares something)
    assert loaded.extra.keys() == {k for k in old if k not in ("version", "lab")}  # features' records as they were
    web, db = loaded.lab.hosts["web"], loaded.lab.hosts["db"]
    assert [(str(r.to), str(r.via)) for r in db.routes] == [("10.89.1.0/24", "10.89.2.10")]
    assert web.sysctls == (("net.ipv4.ip_forward", "1"),) and web.gateway6 == ipaddress.IPv6Address("fd00:89:1::1")
    assert loaded.lab.networks["back"].internal and loaded.lab.networks["front"].nat6
    assert str(loaded.lab.links[0].a_address) == "10.214.0.1/30" and loaded.lab.links[0].subnet6 is None
    loaded.save()  # written back in today's format, the same lab
    assert json.loads((tmp_path / "rec" / "state.json").read_text())["format"] == 2
    assert state.LabState.load("rec").lab == loaded.lab
