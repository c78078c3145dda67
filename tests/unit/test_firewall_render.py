"""The firewall's pure parts: the record of a lab, the rendered table (golden text), the one transaction
(with and without Docker's DOCKER-USER chain), the ruleset observation, and the publish checks."""

from __future__ import annotations

import ipaddress

from labfiles import lab_text, listing_lab
from nslab.core.features import firewall as fw
from nslab.core.features.firewall.ports import Machine, check
from nslab.core.features.firewall.record import FirewallRecord, FwNetwork, PublishedPort, desired
from nslab.core.features.firewall.render import Observed, render_table, transaction, warnings
from nslab.core.resolve import resolve
from nslab.core.spec import parse
from nslab.drivers.fake import FakeNftables
from nslab.drivers.nftables import FakeNft
from nslab.drivers.sockets import listening_sockets

LAB = lab_text(
    "demo", {"front": "10.213.0.0/24", "secure": "10.213.1.0/24"}, internal=["secure"], hosts={
        "web1": 'networks: [front], publish: ["6000:8080"]',
        "web2": 'networks: [front], publish: ["0.0.0.0:6001:8080", "127.0.0.1:5353:53/udp"]',
        "sandboxed": 'networks: [secure], publish: ["7000:80"]', "alone": 'publish: ["7100:80"]',
    },
)

GOLDEN = """\
table inet nslab {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr != 127.0.0.0/8 fib daddr type local jump lab.demo.publish comment "nslab:demo"
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tmeta nfproto ipv4 fib daddr type local jump lab.demo.publish comment "nslab:demo"
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tjump lab.demo.snat comment "nslab:demo"
\t}
\tchain forward {
\t\ttype filter hook forward priority filter - 10; policy accept;
\t\tjump lab.demo.forward comment "nslab:demo"
\t}
\tchain guard {
\t\ttype filter hook prerouting priority raw; policy accept;
\t\tiifname "nslaaaa" ip daddr 127.0.0.0/8 drop comment "nslab:demo:front:no-loopback"
\t\tiifname "nslbbbb" ip daddr 127.0.0.0/8 drop comment "nslab:demo:secure:no-loopback"
\t}
\tchain lab.demo.publish {
\t\ttcp dport 6000 dnat ip to 10.213.0.2:8080 comment "nslab:demo:hosts.web1.publish[0]"
\t\tip daddr 127.0.0.1 udp dport 5353 dnat ip to 10.213.0.3:53 comment "nslab:demo:hosts.web2.publish[1]"
\t\ttcp dport 7000 dnat ip to 10.213.1.2:80 comment "nslab:demo:hosts.sandboxed.publish[0]"
\t}
\tchain lab.demo.into.front {
\t\tct state established,related return comment "nslab:demo:front:replies"
\t\tct status dnat return comment "nslab:demo:front:published"
\t\tdrop comment "nslab:demo:front:isolation"
\t}
\tchain lab.demo.into.secure {
\t\tct state established,related return comment "nslab:demo:secure:replies"
\t\tct status dnat return comment "nslab:demo:secure:published"
\t\tdrop comment "nslab:demo:secure:isolation"
\t}
\tchain lab.demo.out.secure {
\t\tct state established,related return comment "nslab:demo:secure:replies"
\t\tdrop comment "nslab:demo:secure:internal"
\t}
\tchain lab.demo.snat {
\t\toifname "nslaaaa" ip saddr 127.0.0.0/8 masquerade comment "nslab:demo:front:localhost"
\t\toifname "nslaaaa" ip saddr 10.213.0.0/24 ct status dnat masquerade comment "nslab:demo:front:hairpin"
\t\tip saddr 10.213.0.0/24 oifname != "nslaaaa" masquerade comment "nslab:demo:front:egress"
\t\toifname "nslbbbb" ip saddr 127.0.0.0/8 masquerade comment "nslab:demo:secure:localhost"
\t\toifname "nslbbbb" ct status dnat masquerade comment "nslab:demo:secure:published"
\t}
\tchain lab.demo.forward {
\t\toifname "nslaaaa" iifname != "nslaaaa" jump lab.demo.into.front comment "nslab:demo:front:isolation"
\t\toifname "nslbbbb" iifname != "nslbbbb" jump lab.demo.into.secure comment "nslab:demo:secure:isolation"
\t\tiifname "nslbbbb" oifname != "nslbbbb" jump lab.demo.out.secure comment "nslab:demo:secure:internal"
\t}
}
"""


def lab(text: str = LAB):
    spec, source = parse(text, "lab.yaml")
    return resolve(spec, source, "lab.yaml"), source


def record() -> FirewallRecord:
    resolved, _ = lab()
    rec = desired(resolved)
    # bridge names are hashes: pin them for a readable golden text
    names = {"front": "nslaaaa", "secure": "nslbbbb"}
    rec.networks = [FwNetwork(n.name, names[n.name], n.subnet, n.internal) for n in rec.networks]
    return rec


def test_desired_record_expands_publish_entries():
    rec = record()
    assert [(p.host, p.proto, p.host_ip, p.host_port, p.address, p.port) for p in rec.ports] == [
        ("web1", "tcp", "0.0.0.0", 6000, "10.213.0.2", 8080),
        ("web2", "tcp", "0.0.0.0", 6001, "10.213.0.3", 8080),
        ("web2", "udp", "127.0.0.1", 5353, "10.213.0.3", 53),
        ("sandboxed", "tcp", "0.0.0.0", 7000, "10.213.1.2", 80),
    ]
    assert rec.ports[2].field == "hosts.web2.publish[1]"


def test_render_golden():
    rec = record()
    rec.ports = [p for p in rec.ports if p.host_port != 6001]
    assert render_table({"demo": rec, "empty": FirewallRecord()}) == GOLDEN


def test_every_rule_is_commented_with_its_owner():
    text = render_table({"demo": record()})
    rules = [line.strip() for line in text.splitlines() if line.startswith("\t\t") and "hook" not in line]
    assert rules and all('comment "nslab:demo' in r for r in rules)


def test_transaction_replaces_the_table_atomically():
    text = transaction({"demo": record()}, Observed())
    assert text.startswith("add table inet nslab\ndelete table inet nslab\ntable inet nslab {\n")
    assert "DOCKER-USER" not in text


def test_transaction_without_labs_deletes_the_table_only_if_present():
    assert transaction({}, Observed()) == ""
    assert transaction({"x": FirewallRecord()}, Observed()) == ""
    assert transaction({}, Observed(table_exists=True)) == "delete table inet nslab\n"


def test_docker_user_rules_are_replaced_by_handle():
    rec = FirewallRecord(networks=[FwNetwork("n", "nslcccc", "10.213.5.0/24", False)])
    seen = Observed(table_exists=True, docker_user=True, our_docker_rules=(12, 9))
    text = transaction({"l": rec}, seen)
    assert text.endswith(
        "delete rule ip filter DOCKER-USER handle 9\n"
        "delete rule ip filter DOCKER-USER handle 12\n"
        'insert rule ip filter DOCKER-USER iifname "nslcccc" accept comment "nslab:l:n"\n'
        'insert rule ip filter DOCKER-USER oifname "nslcccc" accept comment "nslab:l:n"\n'
    )
    assert transaction({}, seen) == (
        "delete table inet nslab\n"
        "delete rule ip filter DOCKER-USER handle 9\n"
        "delete rule ip filter DOCKER-USER handle 12\n"
    )


RULESET = [
    {"table": {"family": "inet", "name": "nslab", "handle": 1}},
    {"table": {"family": "ip", "name": "filter", "handle": 2}},
    {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter",
               "hook": "forward", "prio": 0, "policy": "drop"}},
    {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER", "handle": 5}},
    {"rule": {"family": "ip", "table": "filter", "chain": "DOCKER-USER", "handle": 30, "comment": "nslab:a:n"}},
    {"rule": {"family": "ip", "table": "filter", "chain": "DOCKER-USER", "handle": 31, "comment": "someone"}},
    {"rule": {"family": "ip", "table": "filter", "chain": "DOCKER-USER", "handle": 32}},
]


def test_observed_from_ruleset():
    seen = Observed.from_ruleset(FakeNft(RULESET).ruleset())
    assert seen.table_exists and seen.docker_user
    assert seen.our_docker_rules == (30,)
    assert seen.foreign_drops == ("table ip filter chain FORWARD",)
    assert warnings(seen, {"a": record()}) == []  # Docker's layout: handled through DOCKER-USER


def test_foreign_drop_policy_without_docker_user_is_a_warning():
    seen = Observed.from_ruleset([o for o in RULESET if "DOCKER-USER" not in str(o)])
    [warning] = warnings(seen, {"a": record()})
    assert "table ip filter chain FORWARD" in warning and "iptables -I FORWARD" in warning


def test_load_ruleset_runs_one_transaction_and_its_inverse_restores_the_former():
    nft = FakeNftables([])
    drivers = _drivers(nft)
    inverse = fw.LoadRuleset({"demo": record()}, {}).apply(drivers)
    assert len(nft.transactions) == 1 and "table inet nslab {" in nft.transactions[0]
    assert inverse is not None
    inverse.apply(drivers)
    assert nft.transactions[-1] == "delete table inet nslab\n" and nft.table is None


def _drivers(nft: FakeNftables):
    from nslab.drivers.fake import fake_drivers

    return fake_drivers(nft=nft)


def problems(text: str, machine: Machine | None = None, others: dict | None = None) -> list[str]:
    resolved, source = lab(text)
    machine = machine or Machine(addresses=frozenset({ipaddress.IPv4Address("198.51.100.2")}))
    return [str(p) for p in check(resolved, source, "lab.yaml", others or {}, machine)]


def test_check_reports_every_bad_entry_with_file_line_and_field():
    entries = ["70000:80", "nonsense", "192.0.2.9:6000:80", "6100:80", "6100-6101:81-82", "198.51.100.2:6200:80/udp",
               "127.0.0.5:6300:80"]
    text = listing_lab("bad", "h", "publish", [f'- "{e}"' for e in entries], more='  lonely: {publish: ["6400:80"]}\n')
    assert problems(text) == [
        "lab.yaml:7: hosts.h.publish[0]: host port 70000 is out of range (1-65535)",
        "lab.yaml:8: hosts.h.publish[1]: 'nonsense' is not [[HOST_IP:]HOST_PORT:]PORT[/tcp|/udp]",
        "lab.yaml:9: hosts.h.publish[2]: HOST_IP 192.0.2.9 is not an address of this machine",
        "lab.yaml:11: hosts.h.publish[4]: host port 6100/tcp is published twice (also by hosts.h.publish[3])",
        "lab.yaml:14: hosts.lonely.publish[0]: host 'lonely' is on no network: a published port needs one to lead to",
    ]


def test_check_conflicts_with_other_labs_and_listeners():
    text = 'name: c\nnetworks: {n: {}}\nhosts:\n  h: {networks: [n], publish: ["6000:80", "127.0.0.1:53:53/udp"]}\n'
    other = FirewallRecord(ports=[PublishedPort("web", "hosts.web.publish[0]", "6000:1", "tcp", "0.0.0.0", 6000, "n",
                                                "10.0.0.2", 1)])
    assert problems(text, others={"x": other}) == [
        "lab.yaml:4: hosts.h.publish[0]: host port 6000/tcp is already published by lab 'x' (host 'web')",
    ]

    listeners = (("udp", None, 53, 77), ("tcp", ipaddress.IPv4Address("10.0.0.1"), 6000, 5))
    machine = Machine(addresses=None, listeners=listeners, owner_of=lambda inode: f"process 'named' (pid {inode})")
    assert problems(text, machine=machine) == [
        "lab.yaml:4: hosts.h.publish[0]: host port 6000/tcp is in use on this machine: process 'named' (pid 5) "
        "listens on 10.0.0.1:6000/tcp",
        "lab.yaml:4: hosts.h.publish[1]: host port 127.0.0.1:53/udp is in use on this machine: process 'named' "
        "(pid 77) listens on *:53/udp",
    ]


def test_listening_sockets_parse_proc_net(tmp_path):
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "tcp").write_text(
        head
        + "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n"
        + "   1: 0100007F:1F91 0100007F:0050 01 00000000:00000000 00:00000000 00000000     0        0 112 1\n"
    )
    (tmp_path / "udp6").write_text(
        head
        + "   0: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000"
        " 00:00000000 00000000     0        0 113 2\n"
        + "   1: 00000000000000000000000001000000:0036 00000000000000000000000000000000:0000 07 00000000:00000000"
        " 00:00000000 00000000     0        0 114 2\n"
    )
    assert listening_sockets(str(tmp_path)) == [
        ("tcp", ipaddress.IPv4Address("127.0.0.1"), 8080, 111),
        ("udp", None, 53, 113),
    ]


def test_status_lists_ports_and_where_they_lead():
    resolved, _ = lab()
    doc = fw.status(resolved, record().to_json(), _drivers(FakeNftables()))
    assert doc["ports"][0] == {
        "publish": "6000:8080", "host": "web1", "proto": "tcp", "host_ip": "0.0.0.0", "host_port": 6000,
        "to": "10.213.0.2:8080", "network": "front", "picked": False,
    }
