"""The pure parts of `python -m bench --peers` (bench/peers.py): choosing peers, which packages are missing,
and the tables that put the peers beside nslab and the scripts. Nothing is run or timed here."""

from __future__ import annotations

import pytest
from bench import peers


def test_parse_peers_keeps_the_canonical_order_and_names_unknown_ones():
    assert peers.parse_peers("") == []
    assert peers.parse_peers("mininet, docker") == ["docker", "mininet"]
    assert peers.parse_peers(",".join(peers.PEERS)) == list(peers.PEERS)
    with pytest.raises(ValueError, match="unknown peer\\(s\\): podman, vagrant"):
        peers.parse_peers("cni,vagrant,podman")


def test_missing_packages_lists_each_package_once():
    present = {"/usr/sbin/iptables", "/usr/bin/python3"}
    missing = peers.missing_packages(["cni", "netavark", "mininet"], lambda path: path in present)
    assert missing == ["containernetworking-plugins", "netavark", "mininet", "bridge-utils"]
    assert peers.missing_packages(["cni"], lambda path: True) == []


def samples(up: float, down: float) -> dict:
    return {"up": [up * 1.1, up, up * 0.9], "down": [down, down * 1.2, down * 0.8]}


def test_updown_table_puts_peers_beside_nslab_with_ratios():
    own = {
        10: {k: {"up": [v], "down": [v / 2]} for k, v in {"nslab": 0.3, "tutorial_exec": 0.6}.items()},
        1000: {k: {"up": [v], "down": [v]} for k, v in {"nslab": 2.0, "tutorial_exec": 40.0}.items()},
    }
    # row 1's results are per way: reshape as bench.rows returns them ({"up": {way: [...]}, ...})
    own_rows = {n: {op: {k: r[op] for k, r in ways.items()} for op in ("up", "down")} for n, ways in own.items()}
    peer_rows = {
        "docker": {10: {"peer": "docker", "n": 10, **samples(3.0, 0.6)}},
        "cni": {10: {"error": "bridge plugin failed"}, 300: samples(9.0, 24.0)},
    }
    notes: list[str] = []
    table = peers.render_updown(own_rows, peer_rows, notes).splitlines()
    assert table[0] == "| measurement | nslab | script A (`ip netns exec`) | Docker | CNI bridge |"
    assert table[2] == "| up N=10 | 300.0 ms | 600.0 ms (2.00×) | 3.00 s (10×) | error |"
    assert table[3] == "| down N=10 | 150.0 ms | 300.0 ms (2.00×) | 600.0 ms (4.00×) | error |"
    # N=300: a peer size without row 1 results; N=1000 (row 1 only) is not shown
    assert table[4] == "| up N=300 | — | — | — | 9.00 s |"
    assert not any("N=1000" in line for line in table)
    assert notes == ["CNI bridge N=10: bridge plugin failed"] * 2


def test_updown_table_shows_other_ways_of_row_1_after_the_scripts():
    own_rows = {10: {"up": {"nslab": [1.0], "optimized": [0.5]}, "down": {"nslab": [1.0], "optimized": [2.0]}}}
    table = peers.render_updown(own_rows, {"mininet": {10: samples(4.0, 1.0)}}, []).splitlines()
    assert table[0] == "| measurement | nslab | optimized | Mininet |"
    assert table[2] == "| up N=10 | 1.00 s | 500.0 ms (0.50×) | 4.00 s (4.00×) |"


def test_peer_ratio_uses_the_nslab_measured_in_the_peers_own_loop():
    own_rows = {10: {"up": {"nslab": [1.0]}, "down": {"nslab": [1.0]}}}
    cni = {**samples(4.0, 3.0), "nslab_up": [2.0, 2.0, 2.0], "nslab_down": [0.5]}
    table = peers.render_updown(own_rows, {"cni": {10: cni}}, []).splitlines()
    assert table[2] == "| up N=10 | 1.00 s | 4.00 s (2.00× 2.00 s) |"
    assert table[3] == "| down N=10 | 1.00 s | 3.00 s (6.00× 500.0 ms) |"


def test_exec_table_compares_with_ip_netns_exec():
    res = {
        "calls": 3,
        "samples": {
            "ip_netns_exec": [0.003, 0.002, 0.004],
            "docker_exec": [0.08, 0.09, 0.07],
            "mininet_cmd": [0.0003, 0.0002, 0.0004],
        },
    }
    notes: list[str] = []
    table = peers.render_exec(res, notes).splitlines()
    assert table[2] == "| `ip netns exec NS true` | 3.0 ms | 1.00× |"
    assert table[3] == "| `docker exec CONTAINER true` | 80.0 ms | 27× |"
    assert table[4].startswith('| Mininet `h1.cmd("true")`') and table[4].endswith("| 300 µs | 0.10× |")
    assert len(table) == 5 and "3 calls each" in notes[0]
    notes.clear()
    assert "| error |" in peers.render_exec({"error": "dockerd did not start"}, notes)
    assert notes == ["peers exec: dockerd did not start"]
