"""Issue 3 on the real kernel, inside throwaway hosts: NAT egress, internal networks, isolation, published
ports, conflicts, Docker's ruleset, and nothing left behind (ruleset and sysctls byte-identical)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labs import lab_status, nslab
from sandbox import UPLINK_ADDRESS, WAN_ADDRESS, sh
from traffic import fetch, serve, udp

TUTORIAL = """\
name: tut
networks:
  front: {}
  other: {}
  secure: {internal: true}
hosts:
  web1: {networks: [front], publish: ["6000:8080"]}
  web2: {networks: [front], publish: ["0.0.0.0:6001:8080", "127.0.0.1:5353:53/udp"]}
  client: {networks: [other]}
  sandboxed: {networks: [secure], publish: ["7000:80"]}
  buddy: {networks: [secure]}
"""


def machine_view(stateless: bool = False) -> str:
    """Everything that must be byte-identical before `up` and after the last `down` (``stateless``: without
    the packet counters of foreign rules, which traffic of their own changes)."""
    keys = ["net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet", "net/ipv4/conf/eth0/route_localnet",
            "net/ipv4/conf/lo/route_localnet"]
    sysctls = "".join(f"{k}={Path('/proc/sys', k).read_text()}" for k in keys)
    return sh("nft -s list ruleset" if stateless else "nft list ruleset").stdout + sysctls


def address_of(lab: str, host_name: str) -> str:
    host = next(h for h in lab_status(lab)["hosts"] if h["name"] == host_name)
    return host["interfaces"][0]["addresses"][0].split("/")[0]


def _port_of(lab: str, host_name: str) -> str:
    state = json.loads(Path(f"/run/nslab/{lab}/state.json").read_text())
    return state["lab"]["hosts"][host_name]["interfaces"][0]["host_veth"]


@pytest.fixture
def tutorial(labs):
    return labs.write(TUTORIAL)


def test_tutorial_scenario_publish_egress_internal(host, tutorial):
    before = machine_view()
    dry = nslab("up", "--dry-run", "-f", str(tutorial)).stdout
    assert "table inet nslab {" in dry and "dnat ip to" in dry
    assert machine_view() == before  # a dry run changes nothing

    nslab("up", "-f", str(tutorial))
    web1, web2 = address_of("tut", "web1"), address_of("tut", "web2")
    sandboxed = address_of("tut", "sandboxed")
    serve(host, "tut-web1", 8080, "one")
    serve(host, "tut-web2", 8080, "two")
    serve(host, "tut-web2", 53, "dns", "udp")
    serve(host, "tut-sandboxed", 80, "sandbox")
    serve(host, "wan", 9000, "outside")

    # published ports: from outside, from the machine (any address, loopback, localhost), hairpin
    assert fetch(UPLINK_ADDRESS, 6000, "wan").startswith("one ")
    assert fetch(UPLINK_ADDRESS, 6001, "wan").startswith("two ")
    assert fetch("127.0.0.1", 6000).startswith("one ")
    assert fetch("localhost", 6000).startswith("one ")
    assert fetch(UPLINK_ADDRESS, 6001).startswith("two ")
    assert fetch(UPLINK_ADDRESS, 6000, "tut-web2").startswith("one ")  # hairpin, same bridge
    assert fetch(UPLINK_ADDRESS, 6001, "tut-client").startswith("two ")  # hairpin, another network
    assert fetch(UPLINK_ADDRESS, 6000, "tut-web1").startswith("one ")  # a host reaching its own published port
    assert "hairpin on" in sh(f"ip -d link show {_port_of('tut', 'web1')}").stdout
    assert "hairpin off" in sh(f"ip -d link show {_port_of('tut', 'client')}").stdout  # not publishing
    assert fetch(UPLINK_ADDRESS, 7000, "wan").startswith("sandbox ")  # publishing into an internal network
    # UDP, limited to 127.0.0.1
    assert udp("127.0.0.1", 5353).startswith("dns ")
    assert udp(UPLINK_ADDRESS, 5353, "wan") is None

    # egress is masqueraded: the outside sees the machine's uplink address
    assert fetch(WAN_ADDRESS, 9000, "tut-web1") == f"outside {UPLINK_ADDRESS}"
    # internal: no default route, and not even a route added by hand gets a packet out
    assert fetch(WAN_ADDRESS, 9000, "tut-sandboxed") is None
    gateway = json.loads(nslab("status", "tut", "--json").stdout)["labs"][0]["networks"][2]["gateway"]
    sh(f"ip -n tut-sandboxed route replace default via {gateway}")
    assert fetch(WAN_ADDRESS, 9000, "tut-sandboxed") is None
    assert fetch(web1, 8080, "tut-sandboxed") is None  # nor another network
    assert fetch(sandboxed, 80).startswith("sandbox ")  # the machine reaches it
    assert fetch(sandboxed, 80, "tut-buddy").startswith("sandbox ")  # and so does its bridge neighbour

    # isolation: no direct connection between networks
    assert fetch(web1, 8080, "tut-client") is None
    assert fetch(web2, 8080, "tut-web1").startswith("two ")  # same network: fine

    # status shows each published port and where it leads
    doc = json.loads(nslab("status", "tut", "--json").stdout)
    ports = {(p["host_port"], p["proto"]): p for p in doc["labs"][0]["firewall"]["ports"]}
    assert ports[(6000, "tcp")]["to"] == f"{web1}:8080" and ports[(5353, "udp")]["host_ip"] == "127.0.0.1"
    assert "6000" in nslab("status", "tut").stdout

    # one table, every rule commented with its owner
    ruleset = sh("nft list ruleset").stdout
    assert sh("nft list tables").stdout.split() == ["table", "inet", "nslab"]
    rules = [line for line in ruleset.splitlines() if line.startswith("\t\t") and "type " not in line]
    assert rules and all('comment "nslab:tut' in line for line in rules)

    nslab("down", "tut")
    assert machine_view() == before


def test_two_labs_isolated_and_conflicts_refused(host, tmp_path):
    before = machine_view()
    a = tmp_path / "a.yaml"
    a.write_text("name: la\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n], publish: ['6100:8080']}\n")
    b = tmp_path / "b.yaml"
    b.write_text("name: lb\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n], publish: ['6200-6201:8080-8081']}\n")
    nslab("up", "-f", str(a))
    nslab("up", "-f", str(b))
    serve(host, "la-h", 8080, "A")
    serve(host, "lb-h", 8081, "B1")
    assert fetch(UPLINK_ADDRESS, 6201, "wan").startswith("B1 ")  # ranges map port by port
    assert fetch(address_of("lb", "h"), 8081, "la-h") is None  # labs are isolated from each other
    assert fetch(address_of("la", "h"), 8080, "lb-h") is None
    assert fetch(UPLINK_ADDRESS, 6100, "lb-h").startswith("A ")  # but published ports are reachable

    # another lab's port, a machine process's port, and bad input: refused before anything changes
    ruleset = sh("nft list ruleset").stdout
    c = tmp_path / "c.yaml"
    c.write_text("name: lc\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n], publish: ['6100:80']}\n")
    r = nslab("up", "-f", str(c), check=False)
    assert r.returncode == 2 and "lab 'la'" in r.stderr + r.stdout and "hosts.h.publish[0]" in r.stderr + r.stdout
    serve(host, "", 6300, "machine")
    c.write_text("name: lc\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n], publish: ['6300:80']}\n")
    r = nslab("up", "-f", str(c), check=False)
    assert r.returncode == 2 and "python3" in r.stderr + r.stdout and "in use" in r.stderr + r.stdout
    c.write_text(
        "name: lc\nnetworks: {n: {}}\nhosts:\n  h:\n    networks: [n]\n    publish:\n"
        "      - '70000:80'\n      - 'nonsense'\n      - '192.0.2.77:6400:80'\n      - '6500:80'\n      - '6500:81'\n"
    )
    r = nslab("up", "-f", str(c), check=False)
    out = r.stderr + r.stdout
    assert r.returncode == 2
    assert ":7: hosts.h.publish[0]" in out and "out of range" in out
    assert ":8: hosts.h.publish[1]" in out
    assert ":9: hosts.h.publish[2]" in out and "not an address of this machine" in out
    assert ":11: hosts.h.publish[4]" in out and "published twice" in out
    assert "lc" not in sh("ip netns list").stdout and sh("nft list ruleset").stdout == ruleset

    nslab("down", "la")
    assert fetch(UPLINK_ADDRESS, 6201, "wan").startswith("B1 ")  # the other lab keeps working
    nslab("down", "lb")
    assert machine_view() == before


DOCKER_RULES = """
iptables -N DOCKER
iptables -N DOCKER-ISOLATION-STAGE-1
iptables -N DOCKER-ISOLATION-STAGE-2
iptables -N DOCKER-USER
iptables -P FORWARD DROP
iptables -A FORWARD -j DOCKER-USER
iptables -A FORWARD -j DOCKER-ISOLATION-STAGE-1
iptables -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
iptables -A FORWARD -o docker0 -j DOCKER
iptables -A FORWARD -i docker0 ! -o docker0 -j ACCEPT
iptables -A FORWARD -i docker0 -o docker0 -j ACCEPT
iptables -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
iptables -A DOCKER-ISOLATION-STAGE-1 -j RETURN
iptables -A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
iptables -A DOCKER-ISOLATION-STAGE-2 -j RETURN
iptables -A DOCKER-USER -j RETURN
iptables -t nat -N DOCKER
iptables -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
iptables -t nat -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
iptables -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
iptables -t nat -A DOCKER -i docker0 -j RETURN
iptables -t nat -A DOCKER ! -i docker0 -p tcp --dport 6900 -j DNAT --to-destination 172.17.0.2:80
iptables -A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp --dport 80 -j ACCEPT
"""


def test_coexists_with_docker_rules(host, tutorial):
    if sh("iptables-nft --version", check=False).returncode != 0:
        pytest.skip("iptables-nft is not installed")
    # Docker's bridge with one "container", its default ruleset (iptables-nft, FORWARD policy DROP)
    sh(
        """
        ip link add docker0 type bridge && ip addr add 172.17.0.1/16 dev docker0 && ip link set docker0 up
        ip netns add ctr && ip link add vethctr type veth peer name eth0 netns ctr
        ip link set vethctr master docker0 up
        ip -n ctr addr add 172.17.0.2/16 dev eth0 && ip -n ctr link set eth0 up && ip -n ctr link set lo up
        ip -n ctr route add default via 172.17.0.1
        sysctl -qw net.ipv4.ip_forward=1
        """
        + DOCKER_RULES.replace("iptables ", "iptables-nft ")
    )
    serve(host, "wan", 9000, "outside")
    serve(host, "ctr", 80, "container")
    before = machine_view(stateless=True)
    # Docker's own traffic, before
    assert fetch(WAN_ADDRESS, 9000, "ctr") == f"outside {UPLINK_ADDRESS}"
    assert fetch(UPLINK_ADDRESS, 6900, "wan").startswith("container ")

    nslab("up", "-f", str(tutorial))
    serve(host, "tut-web1", 8080, "one")
    serve(host, "tut-sandboxed", 80, "sandbox")
    assert fetch(WAN_ADDRESS, 9000, "tut-web1") == f"outside {UPLINK_ADDRESS}"  # egress
    assert fetch(UPLINK_ADDRESS, 6000, "wan").startswith("one ")  # publish
    assert fetch(UPLINK_ADDRESS, 7000, "wan").startswith("sandbox ")  # publish into internal
    assert fetch(address_of("tut", "web1"), 8080, "tut-client") is None  # isolation
    gateway = json.loads(nslab("status", "tut", "--json").stdout)["labs"][0]["networks"][2]["gateway"]
    sh(f"ip -n tut-sandboxed route replace default via {gateway}")
    assert fetch(WAN_ADDRESS, 9000, "tut-sandboxed") is None  # internal
    assert json.loads(nslab("status", "tut", "--json").stdout)["labs"][0]["firewall"]["docker_user"] is True
    # Docker's own traffic is unaffected
    assert fetch(WAN_ADDRESS, 9000, "ctr") == f"outside {UPLINK_ADDRESS}"
    assert fetch(UPLINK_ADDRESS, 6900, "wan").startswith("container ")
    assert fetch(WAN_ADDRESS, 9000, "wan") is not None

    nslab("down", "tut")
    assert machine_view(stateless=True) == before  # DOCKER-USER is exactly as Docker left it


def test_foreign_drop_policy_is_reported_not_touched(host, tmp_path):
    sh("nft add table ip filter")
    sh("nft 'add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }'")
    before = machine_view()
    path = tmp_path / "l.yaml"
    path.write_text("name: fw\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n]}\n")
    up = nslab("up", "-f", str(path))
    assert "warning: table ip filter chain FORWARD drops forwarded packets" in up.stderr  # up says it too
    doc = json.loads(nslab("status", "fw", "--json").stdout)
    assert any("table ip filter chain FORWARD" in w for w in doc["labs"][0]["firewall"]["warnings"])
    assert "policy drop" in sh("nft list chain ip filter FORWARD").stdout
    nslab("down", "fw")
    assert machine_view() == before


def test_nft_subprocess_fallback_when_the_library_is_missing(host, monkeypatch):
    from nslab import Lab
    from nslab.drivers import nftables

    monkeypatch.setattr(nftables, "_lib", None)
    monkeypatch.setattr(nftables, "_lib_error", "libnftables.so.1: cannot open (forced by the test)")
    before = machine_view()
    lab = Lab.from_text("name: fb\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n], publish: ['6600:8080']}\n")
    lab.up()
    serve(host, "fb-h", 8080, "fallback")
    assert fetch(UPLINK_ADDRESS, 6600, "wan").startswith("fallback ")
    assert 'comment "nslab:fb:hosts.h.publish[0]"' in sh("nft list chain inet nslab lab.fb.publish").stdout
    lab.down()
    assert machine_view() == before


def test_edit_converges_and_a_crashed_lab_is_cleaned_by_its_marks(host, tmp_path):
    before = machine_view()
    path = tmp_path / "e.yaml"
    path.write_text("name: ed\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n], publish: ['6700:8080']}\n")
    nslab("up", "-f", str(path))
    assert "nothing to do" in nslab("up", "--dry-run", "-f", str(path)).stdout
    serve(host, "ed-h", 8080, "edit")
    assert fetch(UPLINK_ADDRESS, 6700, "wan").startswith("edit ")
    path.write_text("name: ed\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n], publish: ['6701:8080']}\n")
    nslab("up", "-f", str(path))
    assert fetch(UPLINK_ADDRESS, 6700, "wan") is None
    assert fetch(UPLINK_ADDRESS, 6701, "wan").startswith("edit ")
    path.write_text("name: ed\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n]}\n")
    nslab("up", "-f", str(path))
    assert fetch(UPLINK_ADDRESS, 6701, "wan") is None
    assert "lab.ed.publish" not in sh("nft list ruleset").stdout
    # a lab whose state vanished (a crash) still loses its chains on `down`
    sh("rm /run/nslab/ed/state.json")
    nslab("down", "ed", check=False)
    assert "nslab:ed" not in sh("nft list ruleset").stdout
    assert machine_view() == before
