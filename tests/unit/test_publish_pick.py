"""Host ports nslab picks for publish entries without one (features/firewall/pick.py), the machine facts it
reads (drivers/sockets.py), and the whole up / converge / down over the fake drivers."""

from __future__ import annotations

import pytest

from nslab.core.features.firewall.pick import newly_picked, pick_ports
from nslab.core.features.firewall.record import PublishedPort
from nslab.core.state import LabState
from nslab.drivers.fake import FakeMachine, fake_drivers
from nslab.drivers.sockets import bound_ports, ephemeral_ports, parse_port_list
from nslab.errors import ConflictError, ResolveError, TargetError
from nslab.lab import Lab
from nslab.lab import down as lab_down

RANGE = (40000, 40009, frozenset())


def port(spec: str, host_port: int = 0, proto: str = "tcp", to: int = 80, host: str = "h", index: int = 0,
         picked: bool | None = None) -> PublishedPort:
    return PublishedPort(host, f"hosts.{host}.publish[{index}]", spec, proto, "0.0.0.0", host_port, "n",
                         "10.0.0.2", to, host_port == 0 if picked is None else picked)


def none_bound(proto: str) -> set[int]:
    return set()


def test_lowest_free_port_of_the_range_skipping_sockets_reserved_and_every_publish():
    ports = [port("80", index=0), port("6000:81", 40003, to=81, index=1), port("82", to=82, index=2),
             port("53/udp", proto="udp", to=53, index=3)]
    foreign = [port("40001:1", 40001, host="x")]
    bound = {"tcp": {40000}, "udp": set()}
    out = pick_ports(ports, [], foreign, lambda proto: bound[proto], (40000, 40009, frozenset({40002})))
    assert [p.host_port for p in out] == [40004, 40003, 40005, 40000]  # udp has its own ports
    assert [p.picked for p in out] == [True, False, True, True]
    assert [p.field for p in out] == [p.field for p in ports]


def test_picks_are_sticky_unless_a_written_port_now_takes_one():
    first = pick_ports([port("80"), port("81", to=81, index=1)], [], [], none_bound, RANGE)
    assert [p.host_port for p in first] == [40000, 40001]
    # The next up: the machine now has sockets on both ports (ours hold none), a new entry comes first.
    again = pick_ports([port("79", to=79, index=0), port("80", index=1), port("81", to=81, index=2)], first, [],
                       lambda proto: {40000, 40001}, RANGE)
    assert [p.host_port for p in again] == [40002, 40000, 40001]  # kept whatever field they moved to
    assert newly_picked(again, first) == [again[0]]
    # A host port written in the lab file now names 40000: the pick moves, the written port wins.
    moved = pick_ports([port("40000:80", 40000), port("80", index=1)], first, [], none_bound, RANGE)
    assert [p.host_port for p in moved] == [40000, 40001]


def test_same_entry_twice_gets_two_ports_and_a_full_range_is_refused():
    out = pick_ports([port("80"), port("80", index=1)], [], [], none_bound, (40000, 40001, frozenset()))
    assert sorted(p.host_port for p in out) == [40000, 40001]
    with pytest.raises(ConflictError, match=r"hosts.h.publish\[0\]: no free tcp port left in the ephemeral range "
                                            r"40000-40001 to publish '80'"):
        pick_ports([port("80")], [], [], lambda proto: {40000, 40001}, (40000, 40001, frozenset()))


def test_nothing_to_pick_leaves_the_list_alone():
    ports = [port("6000:80", 6000)]
    assert pick_ports(ports, [], [], lambda proto: pytest.fail("not read"), RANGE) is ports


def test_machine_facts_from_proc(tmp_path):
    net = tmp_path / "net"
    net.mkdir()
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (net / "tcp").write_text(head + "   0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 "
                                    "0 0 1 1 0\n")  # connected, from port 40000
    (net / "tcp6").write_text(head + "   0: 00000000000000000000000000000000:9C41 0000:0000 0A 0 0 0 0 0 2\n")
    (net / "udp").write_text(head)
    assert bound_ports("tcp", str(net)) == {40000, 40001}
    assert bound_ports("udp", str(net)) == set()
    sys = tmp_path / "sys"
    sys.mkdir()
    (sys / "ip_local_port_range").write_text("40000\t40100\n")
    (sys / "ip_local_reserved_ports").write_text("40005,40010-40012\n")
    assert ephemeral_ports(str(sys)) == (40000, 40100, frozenset({40005, 40010, 40011, 40012}))
    assert ephemeral_ports(str(tmp_path / "none")) == (32768, 60999, frozenset())
    (sys / "ip_local_port_range").write_text("junk\n")
    assert ephemeral_ports(str(sys))[:2] == (32768, 60999)
    assert parse_port_list("1,x,3-2,5-6\n") == {1, 5, 6}


LAB = 'name: {name}\nnetworks: {{n: {{}}}}\nhosts:\n  web: {{networks: [n], publish: ["80", "127.0.0.1::53/udp"]}}\n'


def _ports(name: str) -> list[tuple[str, int, bool]]:
    recorded = LabState.load(name)
    assert recorded is not None
    return [(p["proto"], p["host_port"], p["picked"]) for p in recorded.extra["firewall"]["ports"]]


def test_up_picks_converge_keeps_down_releases_over_fakes():
    d = fake_drivers(machine=FakeMachine(bound={"tcp": {40000}}, ephemeral=RANGE))
    dry = "\n".join(Lab.from_text(LAB.format(name="pa"), drivers=d).up(dry_run=True).commands())
    assert "# hosts.web.publish[0] '80': host port 40001/tcp picked" in dry
    assert "tcp dport 40001 dnat ip to" in dry
    changes = Lab.from_text(LAB.format(name="pa"), drivers=d).up(dry_run=True).changes()
    assert ("load the inet nslab table; picked web 80/tcp -> 0.0.0.0:40001, web 53/udp -> 127.0.0.1:40000"
            in changes) and "ip daddr 127.0.0.1 udp dport 40000 dnat ip to" in dry
    Lab.from_text(LAB.format(name="pa"), drivers=d).up()
    assert _ports("pa") == [("tcp", 40001, True), ("udp", 40000, True)]
    doc = Lab.from_text(LAB.format(name="pa"), drivers=d).status()
    ports = doc["labs"][0]["firewall"]["ports"]
    assert ports[0]["host_port"] == 40001 and ports[0]["picked"] and ports[0]["publish"] == "80"
    api = Lab.from_text(LAB.format(name="pa"), drivers=d)
    assert api.port("web", 80) == 40001 and api.port("web", "53/udp") == 40000
    with pytest.raises(TargetError, match="no public port '81/tcp' published for pa/web"):
        api.port("web", "81")
    # An unchanged up keeps them (nothing to do), even with another socket on the lowest port now.
    d.machine.bound["tcp"] = {40000, 40002}
    assert Lab.from_text(LAB.format(name="pa"), drivers=d).up(dry_run=True).commands() == []
    # Another lab picks around them.
    Lab.from_text(LAB.format(name="pb"), drivers=d).up()
    assert _ports("pb") == [("tcp", 40003, True), ("udp", 40001, True)]
    # down releases: the next lab gets pa's ports.
    lab_down("pa", d)
    d.machine.bound["tcp"] = {40000}
    Lab.from_text(LAB.format(name="pc"), drivers=d).up()
    assert _ports("pc") == [("tcp", 40001, True), ("udp", 40000, True)]


def test_a_written_port_that_another_lab_picked_is_refused():
    d = fake_drivers(machine=FakeMachine(ephemeral=RANGE))
    Lab.from_text(LAB.format(name="pa"), drivers=d).up()
    text = 'name: pw\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n], publish: ["40000:80"]}\n'
    with pytest.raises(ResolveError, match="already published by lab 'pa'"):
        Lab.from_text(text, drivers=d).up()
