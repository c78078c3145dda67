"""`nslab check` without root: the policy the lab implies, where each cell is probed, the matrix over a fake
prober, --port parsing and the plain rendering."""

from __future__ import annotations

import pytest
from fakelab import up_over_fakes

from labfiles import CHECK_HOSTS, CHECK_LAB, CHECK_REACH
from nslab.cli.render import check_matrix
from nslab.core import state
from nslab.core.features.links import set_link
from nslab.drivers.fake import FakeProber
from nslab.errors import TargetError, UserError
from nslab.tools import check as chk


@pytest.fixture
def drivers(tmp_path, monkeypatch):
    return up_over_fakes(CHECK_LAB, tmp_path, monkeypatch)


def lab():
    st = state.LabState.load("chk")
    assert st is not None
    return st.lab, st.extra


def as_policy(d) -> FakeProber:
    """A prober whose answers are what the policy says (reached by namespace and address)."""
    lab_, extra = lab()
    by_ns = {h.namespace: h.name for h in lab_.hosts.values()}

    def answer(ns: str, address: str) -> tuple[bool, str]:
        src = by_ns[ns]
        for dst in [*CHECK_HOSTS, "outside"]:
            want = "198.51.100.1" if dst == "outside" else chk.target_address(lab_, src, dst)
            if want == address:
                return (chk.expected(lab_, extra, src, dst), "reply")
        raise AssertionError(address)

    return FakeProber(answer)


def test_policy_same_network_isolation_internal_links_self(drivers):
    lab_, extra = lab()
    for src in CHECK_HOSTS:
        for dst in [*CHECK_HOSTS, "outside"]:
            assert chk.expected(lab_, extra, src, dst) == (src == dst or (src, dst) in CHECK_REACH), (src, dst)


def test_where_cells_are_probed(drivers):
    lab_, _ = lab()
    assert chk.target_address(lab_, "web1", "web1") == "127.0.0.1"
    assert chk.target_address(lab_, "web1", "web2") == "10.81.1.3"
    assert chk.target_address(lab_, "web1", "db") == "10.90.0.2"  # the link's end, not db's network address
    assert chk.target_address(lab_, "db", "web1") == "10.90.0.1"
    assert chk.target_address(lab_, "web1", "vault") == "10.81.3.2"  # where isolation must stop it
    assert chk.target_address(lab_, "web1", "alone") is None


def test_matrix_matches_and_mismatches(drivers):
    matrix = chk.check("chk", drivers=drivers, prober=as_policy(drivers))
    assert matrix.ok and matrix.columns == [*CHECK_HOSTS, "outside"] and matrix.outside == "198.51.100.1"
    assert matrix.cell("web1", "alone").result == "no address" and matrix.cell("web1", "alone").ok
    text = check_matrix(matrix)
    assert "!" not in text and text.splitlines()[-1] == "42/42 cells as the lab implies"

    everything = FakeProber(lambda ns, address: (True, "reply"))
    matrix = chk.check("chk", drivers=drivers, prober=everything)
    assert not matrix.ok and not matrix.cell("web1", "vault").ok and matrix.cell("web1", "web2").ok
    text = check_matrix(matrix)
    row = next(line for line in text.splitlines() if line.startswith("vault "))
    assert "REACH!" in row
    assert "unexpected: web1 -> vault (10.81.3.2): reply, the lab implies blocked" in text
    assert matrix.to_json()["ok"] is False


def test_from_one_host_and_ports(drivers):
    prober = as_policy(drivers)
    matrix = chk.check("chk", "53/udp", "web2", drivers=drivers, prober=prober)
    assert {c.source for c in matrix.cells} == {"web2"} and matrix.probe == "udp/53"
    assert {(proto, port) for _p, proto, port in prober.asked} == {("udp", 53)}
    with pytest.raises(TargetError):
        chk.check("chk", source="nobody", drivers=drivers, prober=prober)
    with pytest.raises(TargetError):
        chk.check("nolab", drivers=drivers, prober=prober)


def test_no_default_route_no_outside_column(drivers):
    drivers.kernel.gateway = None
    matrix = chk.check("chk", drivers=drivers, prober=as_policy(drivers))
    assert "outside" not in matrix.columns and matrix.outside is None


@pytest.mark.parametrize(("text", "parsed"), [(None, ("icmp", None)), ("80", ("tcp", 80)), ("80/tcp", ("tcp", 80)),
                                               ("53/udp", ("udp", 53)), ("53/UDP", ("udp", 53))])
def test_parse_port(text, parsed):
    assert chk.parse_port(text) == parsed


@pytest.mark.parametrize("text", ["http", "0", "70000", "53/sctp", "/udp", ""])
def test_parse_port_rejects(text):
    with pytest.raises(UserError):
        chk.parse_port(text)


def test_interfaces_put_down_are_in_the_policy(drivers):
    set_link("chk", "web2", "eth0", False, drivers)
    lab_, extra = lab()
    assert not chk.expected(lab_, extra, "web1", "web2") and not chk.expected(lab_, extra, "web2", "outside")
    assert chk.expected(lab_, extra, "web2", "web2") and chk.expected(lab_, extra, "web1", "db")
    set_link("chk", "db", "eth1", False, drivers)  # the link, from its other end
    lab_, extra = lab()
    assert not chk.expected(lab_, extra, "web1", "db") and not chk.expected(lab_, extra, "db", "web1")
    assert chk.expected(lab_, extra, "db", "both")


def test_partitions_are_in_the_policy(drivers):
    from nslab.core import faults

    faults.partition("chk", "web1", "back", drivers=drivers)  # web1 from every host of network back
    lab_, extra = lab()
    for a, b in (("web1", "db"), ("db", "web1"), ("web1", "both"), ("both", "web1")):
        assert not chk.expected(lab_, extra, a, b), (a, b)
    assert chk.expected(lab_, extra, "web1", "web2") and chk.expected(lab_, extra, "web1", "outside")
    assert chk.expected(lab_, extra, "db", "both") and chk.expected(lab_, extra, "web1", "web1")
    faults.heal("chk", drivers=drivers)
    lab_, extra = lab()
    assert chk.expected(lab_, extra, "web1", "db")
