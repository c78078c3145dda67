"""What `nslab up` and `status` print: one plain table style whatever the size; piped, whole rows that name
their host (greppable), no box drawing; on a terminal, lines cut to its width unless --wide."""

from __future__ import annotations

from nslab.cli import render
from nslab.lab import Lab


def _lab(hosts: int):
    body = "".join(f"  h{i}: {{networks: [lan]}}\n" for i in range(1, hosts + 1))
    return Lab.from_text(f"name: t\nnetworks:\n  lan: {{subnet: 10.60.0.0/16}}\nhosts:\n{body}  solo: {{}}\n").resolve()


def test_any_lab_is_printed_as_plain_columns(capsys):
    render.up_table(_lab(300), changed=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "lab t"
    assert lines[1].split() == ["host", "namespace", "interface", "address", "on"]
    assert lines[2].split() == ["h1", "t-h1", "eth0", "10.60.0.2/16", "lan"]  # one word per column: awk
    assert lines[-1].split() == ["solo", "t-solo", "lo", "127.0.0.1/8", "loopback-only"]
    assert len(lines) == 2 + 301
    assert len({line.index("t-h") for line in lines[2:-1]}) == 1  # aligned
    assert not any(c in "".join(lines) for c in "│┃━─┏╭")  # no box drawing


def test_small_lab_same_style(capsys):
    render.up_table(_lab(2), changed=False)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "lab t (already up to date)" and "t-h2" in out and "loopback-only" in out


def test_terminal_cuts_lines_unless_wide():
    rows = [["a", "x" * 300]]
    cut = render.plain_table("", ("h", "long"), rows, width=80)
    assert max(len(line) for line in cut.splitlines()) == 80 and cut.splitlines()[1].endswith("…")
    assert "x" * 300 in render.plain_table("", ("h", "long"), rows, width=None)


def _doc(hosts: int):
    def host(i: int):
        return {"name": f"h{i}", "namespace": f"t-h{i}", "present": True, "routes": [
            {"destination": "default", "gateway": "10.0.0.1", "device": "eth0"},
            {"destination": "10.9.0.0/16", "gateway": "10.1.0.1", "device": "eth1"}],
            "interfaces": [{"name": n, "up": True, "addresses": [f"10.{k}.0.{i}/16"], "network": f"n{k}",
                            "link_peer": None} for k, n in ((10, "eth10"), (2, "eth2"), (0, "eth0"))]}
    return {"labs": [{"name": "t", "source": "/x.yaml", "networks": [], "hosts": [host(i) for i in range(300)]}]}


def test_piped_status_of_300_hosts_is_greppable_whole(capsys):
    render.status(_doc(300))  # capsys: stdout is not a terminal
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.split()[:1] == ["h123"]]
    assert [r.split()[2] for r in rows] == ["eth0", "eth2", "eth10"]  # every row names its host; eth order
    assert [r.split()[3:5] for r in rows][0] == ["n0", "10.0.0.123/16"]  # awk '{print $4, $5}': network, address
    assert all("…" not in line for line in out.splitlines())
    assert "default via 10.0.0.1, 10.9.0.0/16 via 10.1.0.1" in rows[0]
    assert sum(1 for line in out.splitlines() if line[:1] == "h" and line.split()[0][1:].isdigit()) == 900


def test_status_of_one_host(capsys):
    render.status(_doc(3), host="h1")
    out = capsys.readouterr().out
    assert "t-h1" in out and "t-h2" not in out


def _dual(i: int):
    return {"name": f"h{i}", "namespace": f"t-h{i}", "present": True, "routes": [
        {"destination": "default", "gateway": "10.0.0.1", "device": "eth0"},
        {"destination": "default", "gateway": "fd6e:736c:6162:1::1", "device": "eth0"},
        {"destination": "fd6e:736c:6162:1::/64", "gateway": None, "device": "eth0"}],
        "interfaces": [{"name": n, "up": True, "network": "lan", "link_peer": None,
                        "addresses": [f"10.0.{k}.{i}/24", f"fd6e:736c:6162:1:8c3a:51f2:9b0e:{i:x}{k}/64"]}
                       for k, n in ((0, "eth0"), (1, "eth1"))]}


def test_routes_once_per_host_even_piped(capsys):
    render.status({"labs": [{"name": "t", "source": "", "networks": [], "hosts": [_dual(1)]}]})
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("h1 ")]
    assert len(rows) == 2 and "default via 10.0.0.1" in rows[0] and "via" not in rows[1]
    assert "10.0.1.1/24 fd6e:736c:6162:1:8c3a:51f2:9b0e:11/64" in rows[1]  # piped: whole rows, both families


def test_ipv6_wraps_to_the_terminal_unless_wide():
    rows = [render._interface_rows(_dual(1), False, set())[0]]
    header = ("host", "namespace", "interface", "on", "addresses", "routes")
    wrapped = render.plain_table("", header, rows, width=110).splitlines()
    assert max(map(len, wrapped)) <= 110 and not any("…" in line for line in wrapped)
    assert [line.split()[-1] for line in wrapped[1:]] == ["10.0.0.1", "fd6e:736c:6162:1::1", "eth0"]  # one route a line
    assert wrapped[2].split()[0] == "fd6e:736c:6162:1:8c3a:51f2:9b0e:10/64"  # the second address on its own line
    whole = render.plain_table("", header, rows, width=None).splitlines()
    assert len(whole) == 2 and len(whole[1]) > 110


def test_up_and_ports_show_both_families(capsys):
    lab = Lab.from_text("name: t\nnetworks:\n  lan: {subnet: 10.60.0.0/24, subnet6: 'fd00:60::/64'}\n"
                        "hosts:\n  web: {networks: [lan]}\n").resolve()
    render.up_table(lab, changed=True)
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[3] == "10.60.0.2/24" and row[4].startswith("fd00:60::") and row[5] == "lan"
    ports = [{"host": "web", "proto": "tcp", "host_ip": "0.0.0.0", "host_port": 6000, "to": "10.60.0.2:80",
              "to6": "[fd00:60::2]:80"}]
    render._ports({"ports": ports}, False, None)
    line = capsys.readouterr().out.splitlines()[1]
    assert line.split() == ["*:6000", "[::]:6000", "tcp", "web", "10.60.0.2:80", "[fd00:60::2]:80"]
