"""`nslab trace` on the real kernel, in throwaway hosts: the rule that drops or rewrites a probe is named
(nslab's isolation, a published port's DNAT, a foreign FORWARD policy), and the trace table is gone after."""

from __future__ import annotations

import pytest
from test_firewall import TUTORIAL, nslab, serve

from sandbox import UPLINK_ADDRESS, WAN, sh


def tables() -> list[str]:
    return sh("nft list tables").stdout.splitlines()


@pytest.fixture
def lab(host, labs):
    labs.up(TUTORIAL)
    serve(host, "tut-web1", 8080, "one")
    return host


def test_isolation_between_networks_is_named(lab):
    before = tables()
    result = nslab("trace", "client", "web1:8080", check=False)
    assert result.returncode == 1 and result.stdout, result.stdout + result.stderr
    verdict = result.stdout.splitlines()[-1]
    assert verdict.startswith("verdict: dropped by nslab rule"), result.stdout
    assert '"nslab:tut:front:isolation"' in verdict, result.stdout
    assert "route: " in result.stdout and "dev eth0" in result.stdout
    assert tables() == before  # the trace table is gone


def test_same_network_reaches_and_icmp_probe_is_traced(lab):
    result = nslab("trace", "web2", "tut/web1:8080", check=False)  # bridged: no inet hook on the machine
    assert result.returncode == 0 and "verdict: reached: connected" in result.stdout, result.stdout
    result = nslab("trace", "client", "web1", check=False)  # no port: ICMP echo
    assert result.returncode == 1 and "ICMP echo" in result.stdout, result.stdout
    assert '"nslab:tut:front:isolation"' in result.stdout.splitlines()[-1], result.stdout


def test_internal_network_cannot_leave(lab):
    gateway = sh("ip -n tut-sandboxed -j addr show eth0").stdout  # the host has no default route at all
    assert gateway
    result = nslab("trace", "sandboxed", "198.51.100.1:9", check=False)
    assert result.returncode == 1 and "no route" in result.stdout.splitlines()[-1], result.stdout


def test_published_port_dnat_is_shown(lab):
    before = tables()
    result = nslab("trace", f"netns:{WAN}", f"{UPLINK_ADDRESS}:6000", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rewritten by nslab rule" in result.stdout and "dnat ip to" in result.stdout, result.stdout
    assert '"nslab:tut:hosts.web1.publish[0]"' in result.stdout, result.stdout
    assert tables() == before


def test_foreign_forward_policy_drop_is_named(lab):
    sh("nft add table ip filter")  # what Docker leaves: a FORWARD chain with policy drop
    sh("nft add chain ip filter FORWARD '{ type filter hook forward priority 0; policy drop; }'")
    try:
        result = nslab("trace", f"netns:{WAN}", f"{UPLINK_ADDRESS}:6000", check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        last = result.stdout.splitlines()[-1]
        assert last == "verdict: dropped by the policy (drop) of chain ip filter FORWARD", result.stdout
        assert "nslab-trace" not in sh("nft list tables").stdout
    finally:
        sh("nft delete table ip filter")


def test_bad_input_exits_2(lab):
    assert nslab("trace", "nosuchhost", "web1:80", check=False).returncode == 2
    assert nslab("trace", "client", "web1:99999", check=False).returncode == 2
    assert nslab("trace", "client", "web1/udp", check=False).returncode == 2


def test_a_partition_rule_is_named(lab):
    nslab("partition", "tut/web2", "web1")
    try:
        result = nslab("trace", "web2", "tut/web1:8080", check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        verdict = result.stdout.splitlines()[-1]
        assert "partition" in verdict and "nslab:tut:partition:" in verdict, result.stdout
    finally:
        nslab("heal", "tut")
    assert nslab("trace", "web2", "tut/web1:8080", check=False).returncode == 0


@pytest.fixture
def routed(labs):
    from test_router import ROUTER_LAB

    labs.up(ROUTER_LAB)


def verdict_of(*args: str) -> str:
    result = nslab("trace", *args, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout.splitlines()[-1]


def test_an_icmp_error_names_the_hop_and_why(routed):
    """The router answers ICMP network unreachable for the outside: trace names it and its missing route."""
    why = ("rt/router (10.81.1.254) answered ICMP network unreachable: no route on rt/router to 198.51.100.1 "
           "(no default route: networks left, right are internal)")
    assert verdict_of("rt/a", "198.51.100.1") == f"verdict: not reached: {why}"
    assert verdict_of("rt/a", "198.51.100.1:80") == f"verdict: not reached: {why}"  # TCP: the same ICMP error
    assert verdict_of("rt/b", "198.51.100.1") == ("verdict: no route: Network is unreachable: no default route: "
                                                  "network right is internal")


def test_a_reject_on_a_router_is_named_with_the_router(routed):
    sh("ip netns exec rt-router nft add table inet t")
    sh("ip netns exec rt-router nft add chain inet t f '{ type filter hook forward priority 0; }'")
    sh("ip netns exec rt-router nft add rule inet t f ip daddr 10.81.2.10 reject with icmp admin-prohibited")
    result = nslab("trace", "rt/a", "rt/b", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ICMP administratively prohibited from 10.81.1.254" in result.stdout, result.stdout
    verdict = result.stdout.splitlines()[-1]
    assert verdict.startswith("verdict: dropped by rule 'ip daddr 10.81.2.10 reject"), verdict
    assert verdict.endswith("in inet t f on rt/router"), verdict
