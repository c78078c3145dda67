"""A machine's NIC on a lab bridge (``networks: {lan: {external: eth1}}``, core/features/external.py) on the real
kernel, each test in its own throwaway host. A veth pair stands in for the NIC: ``eth1`` in the throwaway host
with 192.0.2.10/24, an IPv6 address and routes, its other end in a namespace ``lan0`` playing the LAN (192.0.2.1,
the LAN's router)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from labs import NSLAB, SERVICES_ENV, lab_leftovers, nslab, up_refused, wait_for
from nslab import paths
from nslab.naming import bridge_name
from sandbox import sh

BR = bridge_name("ext", "lan")
LAB = """\
name: ext
networks:
  lan: {external: eth1, subnet: 192.0.2.0/24}
hosts:
  pc: {networks: {lan: 192.0.2.50}, default: 192.0.2.1}
"""


@pytest.fixture
def nic(host):
    """eth1 on the throwaway host, its peer in namespace lan0 (the LAN); both gone with the throwaway host."""
    sh("ip netns add lan0 && ip link add eth1 type veth peer name lan netns lan0"
       " && ip -n lan0 addr add 192.0.2.1/24 dev lan && ip -n lan0 addr add 2001:db8:5::1/64 dev lan nodad"
       " && ip -n lan0 link set lan up && ip -n lan0 link set lo up"
       " && ip addr add 192.0.2.10/24 dev eth1 && ip addr add 2001:db8:5::10/64 dev eth1 nodad"
       " && ip link set eth1 mtu 1400 up"
       " && ip route add 198.51.100.0/24 via 192.0.2.1 metric 50 && ip -6 route add 2001:db8:99::/48 via 2001:db8:5::1")
    try:
        yield _seen()
    finally:
        sh("ip netns del lan0", check=False)


def _seen() -> dict[str, object]:
    """What eth1 has: addresses, routes (IPv4 and IPv6, not the kernel's), master, state, MTU."""
    (link,) = json.loads(sh("ip -j addr show dev eth1").stdout)
    routes = sorted(line for line in (sh("ip route show dev eth1").stdout + sh("ip -6 route show dev eth1").stdout)
                    .splitlines() if "proto kernel" not in line and not line.startswith("fe80"))
    return {"addresses": sorted(f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a["scope"] == "global"),
            "routes": routes, "master": link.get("master", ""), "up": "UP" in link["flags"], "mtu": link["mtu"]}


def _no_vlan() -> str:
    """What eth1.10 (not on the machine) is refused with: the kernel's 802.1q support decides."""
    from nslab.drivers.nic import LiveNics

    vlan = LiveNics().has_vlan()
    return "the machine has no interface eth1.10" if vlan else "eth1.10: this kernel has no 802.1q (VLAN) support"


def _bridge_addresses() -> list[str]:
    (link,) = json.loads(sh(f"ip -j addr show dev {BR}").stdout)
    return sorted(f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a["scope"] == "global")


def test_the_nic_joins_the_bridge_with_its_addresses_and_gets_them_back(nic, tmp_path):
    path = tmp_path / "ext.yaml"
    path.write_text(LAB)
    plan = nslab("up", "-f", str(path), "--dry-run").stdout
    for line in ("ip addr del 192.0.2.10/24 dev eth1", f"ip link set eth1 master {BR}",
                 f"ip addr add 192.0.2.10/24 brd + dev {BR}",
                 f"ip route replace 198.51.100.0/24 via 192.0.2.1 proto boot metric 50 dev {BR}"):
        assert line in plan
    nslab("up", "-f", str(path))
    try:
        now = _seen()
        assert now["master"] == f"{BR}" and now["addresses"] == [] and now["routes"] == []
        assert _bridge_addresses() == ["192.0.2.10/24", "2001:db8:5::10/64"]
        routes = sh(f"ip route show dev {BR}").stdout + sh(f"ip -6 route show dev {BR}").stdout
        assert "198.51.100.0/24 via 192.0.2.1" in routes and "2001:db8:99::/48 via 2001:db8:5::1" in routes
        sh("ip netns exec ext-pc ping -c1 -W2 192.0.2.1")  # the lab's host on the LAN, at layer 2
        sh("ip netns exec ext-pc ping -c1 -W2 192.0.2.10")  # and the machine, on the bridge
        assert sh("ip -n lan0 neigh show 192.0.2.50").stdout.strip()  # (the LAN saw the host itself)
        sh("ip netns exec lan0 ping -c1 -W2 192.0.2.10")  # the machine keeps its LAN address
        status = json.loads(nslab("status", "ext", "--json").stdout)["labs"][0]
        assert status["external"]["networks"]["lan"]["attached"] and status["drift"] == []

        sh("ip link set eth1 nomaster")  # drift: shown, then repaired by up
        found = json.loads(nslab("status", "ext", "--json", check=False).stdout)["labs"][0]["drift"]
        assert f"network lan: eth1 is not a port of {BR}" in found
        nslab("up", "-f", str(path))
        assert _seen()["master"] == f"{BR}"
        sh("ip netns exec ext-pc ping -c1 -W2 192.0.2.1")
    finally:
        nslab("down", "ext")
    assert _seen() == nic
    assert lab_leftovers("ext") == []


@pytest.mark.parametrize("then", ["down", "up", "gc"])
def test_kill_9_of_up_midway_then_down_gives_everything_back(nic, tmp_path, then):
    """``up`` killed right after it made eth1 a port, before its state is saved (a host's service starts after
    that, so there is time): ``down`` (or ``gc``) restores eth1 from what was written before the first change;
    the next ``up`` gives it back first, then borrows it again, and its ``down`` restores the same."""
    path = tmp_path / "ext.yaml"
    path.write_text(LAB + "  svc: {networks: [lan], run: exec sleep 1000}\n")
    record = os.path.join(paths.lab_dir("ext"), "external.json")
    proc = subprocess.Popen([NSLAB, "up", "-f", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=SERVICES_ENV)
    try:
        wait_for(lambda: os.path.exists(record) and _seen()["master"] == BR, timeout=30, interval=0.001)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert os.path.exists(record) and not os.path.exists(paths.state_file("ext"))  # midway: no state saved
    if then == "up":
        nslab("up", "-f", str(path), env=SERVICES_ENV)
        assert _seen()["master"] == BR and _bridge_addresses() == ["192.0.2.10/24", "2001:db8:5::10/64"]
        sh("ip netns exec ext-svc ping -c1 -W2 192.0.2.1")
    if then == "gc":  # the killed up's process is gone: gc takes the lab down, eth1 given back
        assert "removed lab ext" in nslab("gc", env=SERVICES_ENV).stdout
    nslab("down", "ext", env=SERVICES_ENV)
    assert _seen() == nic and not os.path.exists(record)
    assert lab_leftovers("ext") == []


def test_an_interrupted_up_then_up_again_keeps_what_the_nic_first_had(nic, tmp_path):
    path = tmp_path / "ext.yaml"
    path.write_text(LAB)
    nslab("up", "-f", str(path))
    try:
        # an `up` killed midway: its intent left behind, eth1 half moved (off the bridge, an address lost)
        from nslab.core import state

        state.write_intent("ext", [], [BR])
        sh(f"ip link set eth1 nomaster && ip addr del 192.0.2.10/24 dev {BR}")
        nslab("up", "-f", str(path))
        assert _seen()["master"] == f"{BR}" and _bridge_addresses() == ["192.0.2.10/24", "2001:db8:5::10/64"]
    finally:
        nslab("down", "ext")
    assert _seen() == nic


def test_bad_external_interfaces_are_refused_before_any_change(nic, tmp_path):
    sh("ip link add br9 type bridge && ip link add p9 type veth peer name q9 && ip link set p9 master br9")
    bad = """\
name: ext
networks:
  a: {external: nope0, subnet: 10.9.1.0/24}
  b: {external: lo, subnet: 10.9.2.0/24}
  c: {external: p9, subnet: 10.9.3.0/24}
  d: {external: eth1, subnet: 192.0.0.0/16}
  e: {external: br9, subnet: 10.9.5.0/24}
  f: {external: eth1.10, subnet: 10.9.6.0/24}
hosts:
  pc: {networks: [a]}
"""
    lines = up_refused(tmp_path / "bad.yaml", bad).stderr
    for expected in ("bad.yaml:3: networks.a.external: the machine has no interface nope0",
                     "bad.yaml:4: networks.b.external: lo is the loopback interface",
                     "bad.yaml:5: networks.c.external: p9 is a port of br9",
                     "bad.yaml:6: networks.d.subnet: subnet 192.0.0.0/16 clashes with eth1's address 192.0.2.10/24",
                     "bad.yaml:7: networks.e.external: br9 is a bridge",
                     f"bad.yaml:8: networks.f.external: {_no_vlan()}"):
        assert expected in lines, lines
    taken = LAB.replace("192.0.2.50", "192.0.2.10")
    assert "192.0.2.10 is the machine's address on eth1" in up_refused(tmp_path / "t.yaml", taken).stderr
    assert _seen() == nic


def test_no_vlan_support_is_asked_of_the_kernel(host):
    from nslab.drivers.nic import LiveNics

    sh("ip link add v0 type veth peer name v1")
    made = subprocess.run(["ip", "link", "add", "link", "v0", "name", "v0.10", "type", "vlan", "id", "10"],
                          capture_output=True, text=True)
    assert LiveNics().has_vlan() == (made.returncode == 0)
    assert "nslab-vlanprobe" not in sh("ip link").stdout


MACVLAN = """\
name: mvl
hosts:
  pc:
    macvlan: {parent: eth1, mode: bridge, address: 192.0.2.60/24}
  quiet:
    macvlan: [{parent: eth1, mode: private}]
"""


def test_a_host_s_macvlan_reaches_the_lan_but_not_its_parent(nic, tmp_path):
    path = tmp_path / "mvl.yaml"
    path.write_text(MACVLAN)
    plan = nslab("up", "-f", str(path), "--dry-run").stdout
    assert "type macvlan mode bridge netns mvl-pc" in plan and "ip -n mvl-pc addr add 192.0.2.60/24" in plan
    nslab("up", "-f", str(path))
    try:
        (link,) = json.loads(sh("ip -n mvl-pc -j -d link show mv0").stdout)
        assert (link["linkinfo"]["info_kind"], link["linkinfo"]["info_data"]["mode"]) == ("macvlan", "bridge")
        (quiet,) = json.loads(sh("ip -n mvl-quiet -j -d addr show mv0").stdout)
        assert quiet["linkinfo"]["info_data"]["mode"] == "private"
        assert not [a for a in quiet["addr_info"] if a["family"] == "inet"]  # no address written: none
        sh("ip netns exec mvl-pc ping -c1 -W2 192.0.2.1")  # the LAN, through eth1
        # the kernel's macvlan: never its parent (the machine's 192.0.2.10 on eth1)
        assert sh("ip netns exec mvl-pc ping -c1 -W1 192.0.2.10", check=False).returncode != 0
        assert _seen() == nic  # eth1 itself is left as it was
        sh("ip -n mvl-pc link del mv0")  # drift, repaired by up
        assert "host pc: macvlan mv0 on eth1 is missing" in json.loads(
            nslab("status", "mvl", "--json", check=False).stdout)["labs"][0]["drift"]
        nslab("up", "-f", str(path))
        sh("ip netns exec mvl-pc ping -c1 -W2 192.0.2.1")
    finally:
        nslab("down", "mvl")
    assert lab_leftovers("mvl") == [] and _seen() == nic


def test_a_macvlan_on_a_vlan_or_missing_parent_is_refused(nic, tmp_path):
    bad = MACVLAN.replace("parent: eth1, mode: bridge", "parent: eth1.10, mode: bridge").replace(
        "[{parent: eth1, mode: private}]", "{parent: eth7}")
    said = up_refused(tmp_path / "bad.yaml", bad).stderr
    assert f"bad.yaml:4: hosts.pc.macvlan[0]: {_no_vlan()}" in said, said
    assert "bad.yaml:6: hosts.quiet.macvlan[0]: the machine has no interface eth7" in said, said


CLOUD = """\
name: ext
networks:
  lan: {external: eth1, subnet: 172.31.1.0/24}
hosts:
  pc: {networks: {lan: 172.31.1.50}}
"""


@pytest.fixture
def cloud(host):
    """eth1 as on a cloud VM: a /32 address, the default route ``onlink`` through a gateway outside it (with
    route metrics), an IPv6 address with finite lifetimes and an RA-like route; the LAN (namespace lan0) has
    the gateway 172.31.1.1 and, behind it, 203.0.113.1 (the internet: the throwaway host's own default route
    through eth0 goes first, so that eth1's is the machine's only one)."""
    sh("ip route del default dev eth0 && ip netns add lan0 && ip link add eth1 type veth peer name lan netns lan0"
       " && ip -n lan0 addr add 172.31.1.1/24 dev lan && ip -n lan0 addr add 2001:db8:7::1/64 dev lan nodad"
       " && ip -n lan0 addr add 203.0.113.1/32 dev lo && ip -n lan0 link set lo up && ip -n lan0 link set lan up"
       " && ip -n lan0 route add 172.31.5.7/32 dev lan"
       " && ip link set eth1 up && ip addr add 172.31.5.7/32 dev eth1"
       " && ip addr add 2001:db8:7::5/64 dev eth1 nodad valid_lft 600 preferred_lft 300"
       " && ip route add default via 172.31.1.1 dev eth1 onlink metric 10 mtu 1400 advmss 1360 proto dhcp"
       " && ip -6 route add 2001:db8:99::/48 via fe80::1 dev eth1 proto ra pref high expires 900")
    try:
        yield
    finally:
        sh("ip netns del lan0", check=False)


def _routes() -> tuple[list[object], list[object]]:
    """The machine's IPv4 routes (every table) as ``ip -j -d`` shows them; its IPv6 ones without ``expires``."""
    six = [{k: v for k, v in r.items() if k != "expires"}
           for r in json.loads(sh("ip -j -d -6 route show table all").stdout)]
    return json.loads(sh("ip -j -d -4 route show table all").stdout), six


def _lifetimes(dev: str) -> dict[str, tuple[int, int]]:
    (link,) = json.loads(sh(f"ip -j addr show dev {dev}").stdout)
    return {a["local"]: (a["valid_life_time"], a["preferred_life_time"]) for a in link["addr_info"]
            if a["scope"] == "global"}


def test_a_cloud_nic_keeps_its_onlink_route_mac_and_lifetimes_on_the_bridge_and_gets_them_back(cloud, tmp_path):
    path = tmp_path / "ext.yaml"
    path.write_text(CLOUD)
    before, mac = _routes(), json.loads(sh("ip -j link show dev eth1").stdout)[0]["address"]
    sh("ip netns exec lan0 ping -c1 -W2 172.31.5.7")
    nslab("up", "-f", str(path))
    try:
        (default,) = json.loads(sh("ip -j -d route show default").stdout)
        assert (default["dev"], default["gateway"], default["flags"], default["protocol"]) == (
            BR, "172.31.1.1", ["onlink"], "dhcp")
        assert default["metrics"] == [{"mtu": 1400, "advmss": 1360}] and default["metric"] == 10
        (ra,) = json.loads(sh("ip -j -d -6 route show 2001:db8:99::/48").stdout)
        assert (ra["dev"], ra["protocol"], ra["pref"]) == (BR, "ra", "high") and 0 < ra["expires"] <= 900
        sh("ping -c1 -W2 203.0.113.1")  # the machine's way out, now through the bridge
        (link,) = json.loads(sh(f"ip -j link show dev {BR}").stdout)
        assert link["address"] == mac  # the machine keeps its identity on the LAN:
        sh("ip -n lan0 neigh flush all && ip netns exec lan0 ping -c1 -W2 172.31.5.7")
        assert f"lladdr {mac}" in sh("ip -n lan0 neigh show 172.31.5.7").stdout
        valid, preferred = _lifetimes(BR)["2001:db8:7::5"]
        assert 0 < valid <= 600 and 0 < preferred <= 300  # not made permanent
    finally:
        nslab("down", "ext")
    assert _routes() == before  # every table, every attribute (the RA route's expiry counted down)
    valid, preferred = _lifetimes("eth1")["2001:db8:7::5"]
    assert 0 < valid <= 600 and 0 < preferred <= 300
    sh("ping -c1 -W2 203.0.113.1")
    assert lab_leftovers("ext") == []


def test_what_cannot_move_to_a_bridge_is_refused_before_any_change(cloud, tmp_path):
    sh("ip link add x0 type veth peer name x1 && ip link set x0 up && ip link set x1 up"
       " && ip route add 10.7.0.0/16 dev eth1 table 100 && ip rule add iif eth1 table 100 priority 100"
       " && ip route add 10.8.0.0/16 nexthop dev eth1 nexthop dev x0")
    before = _routes()
    said = up_refused(tmp_path / "bad.yaml", CLOUD).stderr
    assert ("bad.yaml:3: networks.lan.external: eth1 has what cannot move to a bridge as it is: route 10.7.0.0/16 in "
            "table 100; multipath or nexthop-object route 10.8.0.0/16; policy rule 100 (iif eth1): remove it first, "
            "or give another interface") in said, said
    assert _routes() == before and "master" not in json.loads(sh("ip -j link show dev eth1").stdout)[0]


def test_a_lab_s_own_link_is_refused(nic, tmp_path):
    nslab("up", "-f", str(_write(tmp_path / "ext.yaml", LAB)))
    try:
        veth = next(link["ifname"] for link in json.loads(sh("ip -j link show").stdout)
                    if link["ifname"].startswith("nsv"))
        other = LAB.replace("name: ext", "name: ext2").replace("external: eth1", f"external: {veth}").replace(
            "192.0.2.", "192.0.3.")
        assert f"{veth} is one of nslab's own links" in up_refused(tmp_path / "o.yaml", other).stderr
    finally:
        nslab("down", "ext")


def _write(path, text):
    path.write_text(text)
    return path


def test_a_give_back_that_fails_in_part_keeps_the_record_and_the_next_down_finishes(nic, tmp_path):
    """IPv6 turned off on eth1 while the lab is up: ``down`` gives back what it can (IPv4), says what failed and
    keeps what eth1 had; IPv6 on again, the next ``down`` gives back the rest and forgets the record."""
    path = tmp_path / "ext.yaml"
    path.write_text(LAB)
    record = os.path.join(paths.lab_dir("ext"), "external.json")
    nslab("up", "-f", str(path))
    sh("sysctl -qw net.ipv6.conf.eth1.disable_ipv6=1")
    failed = nslab("down", "ext", check=False)
    assert failed.returncode != 0 and "giving eth1 back: ip:" in failed.stderr, failed.stderr
    assert os.path.exists(record) and "192.0.2.10/24" in _seen()["addresses"]
    sh("sysctl -qw net.ipv6.conf.eth1.disable_ipv6=0")
    nslab("down", "ext")
    assert _seen() == nic and not os.path.exists(record)
    assert lab_leftovers("ext") == []
