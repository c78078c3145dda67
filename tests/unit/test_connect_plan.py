"""``nslab connect``/``disconnect`` (core/connect.py) over the fake drivers: typed actions that print the ip
commands a person would type (``--dry-run``), one undo journal (a failure midway leaves nothing), the containers
feature's record, and ``down`` removing what connect added."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest

from nslab.core import state
from nslab.core.connect import connect, disconnect
from nslab.core.features.containers import KEY, AttachConnected, ConnectVeth, ContainersRecord
from nslab.drivers import Drivers
from nslab.drivers.fake import FakeKernel, fake_drivers
from nslab.errors import ApplyError, ConflictError, TargetError, UserError
from nslab.lab import Lab, down
from nslab.naming import LINK_GROUP, mac_address, short_hash

LAB = "name: cn\nnetworks:\n  net: {subnet: 10.85.1.0/24}\nhosts:\n  a: {networks: [net]}\n"
CONTAINER_NS = "/proc/4242/ns/net"  # where a container's namespace is (the fakes only compare the text)
DOCKER_ETH0 = ipaddress.IPv4Interface("172.17.0.2/16")
VETH = "nsv" + short_hash("cn", "connect", "other", "net")
ALIAS = "nslab:cn:host:+other:eth1"


class Place:
    """What ns/targets.resolve gives for ``container:other`` (or, with ``lab``, for a lab host)."""

    def __init__(self, lab: str | None = None) -> None:
        self.text, self.label, self.net_path = "container:other", "container other", CONTAINER_NS
        self.container: str | None = "other"
        self.lab = lab


def other(text: str) -> Place:
    """The resolver the CLI hands connect (ns/targets.resolve), for ``container:other``."""
    assert text == "container:other"
    return Place()


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path / "state"))


def lab_up(kernel: FakeKernel | None = None) -> tuple[Drivers, FakeKernel]:
    kernel = kernel or FakeKernel()
    drivers = fake_drivers(kernel=kernel)
    Lab.from_text(LAB, drivers=drivers).up()
    kernel.ifaces[CONTAINER_NS] = {"eth0": DOCKER_ETH0}  # the container's own interface, from Docker
    return drivers, kernel


def recorded() -> state.LabState:
    st = state.LabState.load("cn")
    assert st is not None
    return st


def connected() -> list[dict[str, str]]:
    return ContainersRecord.from_json(recorded().extra.get(KEY)).connected


def test_connect_is_actions_that_print_the_ip_commands_and_a_dry_run_changes_nothing():
    drivers, kernel = lab_up()
    bridge = recorded().lab.networks["net"].bridge
    entry, plan = connect("cn/net", "container:other", other, drivers, dry_run=True)
    assert entry == {"container": "other", "network": "net", "ifname": "eth1", "address": "10.85.1.254/24",
                     "veth": VETH, "target": "container:other"}
    assert [type(a) for a in plan] == [ConnectVeth, AttachConnected]
    inside = f"nsenter --net={CONTAINER_NS} ip"
    assert plan.commands() == [
        f"{inside} link add eth1 index 11 address {mac_address('cn', 'connect', 'other', 'eth1')} group {LINK_GROUP} "
        f"type veth peer name {VETH} group {LINK_GROUP} netns /proc/$$/ns/net",
        f"{inside} addr add 10.85.1.254/24 broadcast + dev eth1",
        f"{inside} link set eth1 up",
        f"ip link set {VETH} master {bridge} alias {ALIAS} up",
    ]
    assert VETH not in kernel.veths and set(kernel.ifaces[CONTAINER_NS]) == {"eth0"}
    assert connected() == []


def test_connect_applies_records_and_down_removes_only_what_it_added():
    drivers, kernel = lab_up()
    bridge = recorded().lab.networks["net"].bridge
    entry, _ = connect("cn/net", "container:other", other, drivers)
    assert kernel.veths[VETH] == ALIAS and kernel.ports[VETH] == bridge
    assert kernel.ifaces[CONTAINER_NS] == {"eth0": DOCKER_ETH0, "eth1": ipaddress.IPv4Interface("10.85.1.254/24")}
    assert connected() == [entry]
    with pytest.raises(ConflictError, match="other is connected to cn/net already"):
        connect("cn/net", "container:other", other, drivers)
    down("cn", drivers=drivers)
    assert VETH not in kernel.veths and kernel.ifaces[CONTAINER_NS] == {"eth0": DOCKER_ETH0}


def test_a_failure_midway_rolls_back_and_leaves_nothing():
    drivers, kernel = lab_up(FakeKernel(fail_on="attach_to_bridge"))
    veths, ports = dict(kernel.veths), dict(kernel.ports)
    with pytest.raises(ApplyError, match=r"attach_to_bridge: injected failure \(rolled back: disconnect 1 "):
        connect("cn/net", "container:other", other, drivers)
    assert "add_veth_at" in kernel.calls  # it did get that far
    assert kernel.veths == veths and kernel.ports == ports
    assert kernel.ifaces[CONTAINER_NS] == {"eth0": DOCKER_ETH0}
    assert connected() == []


def test_disconnect_removes_the_veth_and_forgets_it():
    drivers, kernel = lab_up()
    connect("cn/net", "container:other", other, drivers)
    entry, plan = disconnect("cn/net", "container:other", drivers, dry_run=True)
    assert entry["veth"] == VETH and plan.commands() == [f"ip link del {VETH}"]
    assert VETH in kernel.veths and len(connected()) == 1
    disconnect("cn/net", "container:other", drivers)
    assert VETH not in kernel.veths and kernel.ifaces[CONTAINER_NS] == {"eth0": DOCKER_ETH0}
    assert connected() == []
    with pytest.raises(TargetError, match="container:other is not connected to cn/net"):
        disconnect("cn/net", "container:other", drivers)


def unknown(text: str) -> Place:
    raise AssertionError("the lab and its network are checked before the target")


@pytest.mark.parametrize(("text", "locate", "error", "message"), [
    ("cn", unknown, UserError, "'cn' is not LAB/NETWORK"),
    ("nolab/net", unknown, TargetError, "no lab 'nolab' is up"),
    ("cn/other", unknown, TargetError, r"lab 'cn' has no network 'other' \(networks: net\)"),
    ("cn/net", lambda _text: Place(lab="cn"), UserError, "container:other is a lab host"),
])
def test_what_cannot_be_connected_is_refused_before_any_change(text: str, locate: Callable[[str], Place],
                                                               error: type[Exception], message: str):
    drivers, kernel = lab_up()
    calls = list(kernel.calls)
    with pytest.raises(error, match=message):
        connect(text, "container:other", locate, drivers)
    assert kernel.calls == calls
