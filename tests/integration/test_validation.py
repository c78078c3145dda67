"""Issue 13, every problem at once: schema, references, addresses, machine collisions in one run, exit 2 before
any change (real kernel, in a throwaway host)."""

from __future__ import annotations

import os

import pytest

from labfiles import listing_lab
from labs import nslab, up_refused
from nslab import Lab
from nslab.errors import UserError
from sandbox import sh

MANY = """\
name: bad
networks:
  lan: {subnet: 10.70.0.0/24, colour: red}
  wan2: {subnet: 198.51.100.0/25}
hosts:
  a: {networks: {lan: 10.70.1.5}, dns: [notanip]}
  b: {networks: [nowhere], restart: sometimes}
  c: {networks: [lan], publish: ["99999:80"]}
links:
  - [a, ghost]
"""


def test_every_problem_in_one_run_exit_2_nothing_changed(host, tmp_path):
    path = tmp_path / "lab.yaml"
    result = up_refused(path, MANY)
    lines = result.stderr.strip().splitlines()
    text = result.stderr
    assert "Traceback" not in text
    # schema (unknown key, bad restart, bad dns once), references, addresses, machine overlap, publish
    for expected in ("networks.lan.colour", "hosts.b.restart", "hosts.a.dns", "unknown network 'nowhere'",
                     "unknown host 'ghost'", "198.51.100.0/25 overlaps", "10.70.1.5", "hosts.c.publish[0]"):
        assert expected in text, (expected, text)
    assert sum("hosts.a.dns" in line for line in lines) == 1
    assert all(line.startswith(f"nslab: {path}:") for line in lines), lines


def test_namespace_and_link_collisions_exit_2_before_any_change(host, tmp_path):
    sh("ip netns add col-a")
    try:
        path = tmp_path / "lab.yaml"
        path.write_text("name: col\nnetworks: {n: {}}\nhosts:\n  a: {networks: [n]}\n  b: {networks: [n]}\n")
        # a link with the name of the bridge nslab would give network n
        from nslab.naming import bridge_name

        sh(f"ip link add {bridge_name('col', 'n')} type bridge")
        before = sh("ip -o link; ip netns list").stdout
        result = nslab("up", "-f", str(path), check=False)
        assert result.returncode == 2, result.stderr
        assert "namespace 'col-a' already exists" in result.stderr
        assert "ip netns del col-a" in result.stderr
        bridge = bridge_name("col", "n")
        assert f"link '{bridge}' (its bridge) already exists: it was not made by nslab" in result.stderr
        assert sh("ip -o link; ip netns list").stdout == before
        assert not os.path.exists("/run/nslab/col/state.json")
        with pytest.raises(UserError) as err:
            Lab.load(path)
        assert len(err.value.lines()) == 2
    finally:
        sh("ip netns del col-a")


def test_lab_load_raises_schema_and_machine_problems_together(host, tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("name: x\nnetworks: {n: {subnet: 198.51.100.0/24}}\nhosts: {a: {networks: [n], bogus: 1}}\n")
    with pytest.raises(UserError) as err:
        Lab.load(path)
    text = "\n".join(err.value.lines())
    assert "unknown key 'bogus'" in text and "overlaps 198.51.100" in text


@pytest.mark.parametrize("prefix", [["run"], ["run", "--network", "nat"], ["exec", "netns:ex13"]])
def test_command_not_found_127_not_executable_126(host, tmp_path, prefix):
    sh("ip netns add ex13")
    try:
        script = tmp_path / "script.sh"
        script.write_text("#!/bin/sh\necho hi\n")  # not executable
        missing = nslab(*prefix, "--", "no-such-command-13", check=False)
        assert missing.returncode == 127 and "command not found: no-such-command-13" in missing.stderr
        denied = nslab(*prefix, "--", str(script), check=False)
        assert denied.returncode == 126 and "Permission denied" in denied.stderr, denied.stderr
        assert "Traceback" not in missing.stderr + denied.stderr
    finally:
        sh("ip netns del ex13")


SYSCTLS = listing_lab("sy", "a", "sysctls", [
    "net.ipv4.conf.eth0.rp_filter: 2", "net.ipv4.no_such_key: 1", "net.core.rmem_max: 1000000",
    "net.ipv4.conf.eth4.rp_filter: 1",
])


def test_sysctl_keys_a_namespace_lacks_exit_2_before_any_change(host, tmp_path):
    """Keys are checked in a fresh namespace's /proc/sys/net: net.core.rmem_max is the machine's only, eth0 is
    the host's own interface (looked up as `default`), eth4 is not one of its interfaces."""
    path = tmp_path / "lab.yaml"
    lines = up_refused(path, SYSCTLS).stderr.strip().splitlines()
    assert [line.split(": ")[2] for line in lines] == [
        "hosts.a.sysctls.net.ipv4.no_such_key", "hosts.a.sysctls.net.core.rmem_max",
        "hosts.a.sysctls.net.ipv4.conf.eth4.rp_filter"], lines
    assert f"{path}:8:" in lines[0] and "unknown sysctl" in lines[0] and "no interface 'eth4'" in lines[2]
    path.write_text("\n".join(SYSCTLS.splitlines()[:7]) + "\n")  # only the interface's key: applied
    nslab("up", "-f", str(path))
    try:
        assert nslab("exec", "sy/a", "--", "cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter").stdout.strip() == "2"
    finally:
        nslab("down", "sy")
