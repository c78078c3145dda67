"""Rootless labs, the pure parts: subordinate id ranges, the user's paths, and what a rootless lab file is
refused for (core/rootless.py), all before any change."""

from __future__ import annotations

from nslab import paths
from nslab.core import load
from nslab.daemons.keeper import subordinate


def test_subordinate_range_by_name_or_id(tmp_path):
    ids = tmp_path / "subuid"
    ids.write_text("alice:100000:65536\n1001:200000:1000\nbroken line\nzero:5:0\n")
    assert subordinate("alice", 1000, str(ids)) == (100000, 65536)
    assert subordinate("bob", 1001, str(ids)) == (200000, 1000)
    assert subordinate("zero", 7, str(ids)) is None  # an empty range is no range
    assert subordinate("carol", 1002, str(ids)) is None
    assert subordinate("alice", 1000, str(tmp_path / "missing")) is None


def test_user_state_root(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert paths.user_state_root(1000) == f"{tmp_path}/nslab"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    assert paths.user_state_root(1000) == "/tmp/nslab-1000"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert paths.user_state_root(1000) == "/tmp/nslab-1000"


LAB = """\
name: r
networks: {n: {}}
hosts:
  a:
    networks: [n]
    publish: ["80:80", "6000:80", "8080"]
    resources: {memory: 64M}
  b:
    networks: [n]
    image: alpine
"""


def _problems(monkeypatch, rootless: bool, port_start: str = "1024") -> list[str]:
    if rootless:
        monkeypatch.setenv("NSLAB_ROOTLESS", "1000")
    else:
        monkeypatch.delenv("NSLAB_ROOTLESS", raising=False)
    monkeypatch.setenv("NSLAB_PORT_START", port_start)
    checked = load.validate(load.from_text(LAB, "nslab.yaml"), None)
    return [str(p) for p in checked.problems]


def test_rootless_refusals_name_each_field(monkeypatch):
    said = "\n".join(_problems(monkeypatch, rootless=True))
    assert "hosts.a.resources" in said and "root's cgroups" in said
    assert "hosts.b.image" in said and "Docker" in said
    assert "hosts.a.publish[0]" in said and "net.ipv4.ip_unprivileged_port_start (1024)" in said
    assert "publish[1]" not in said and "publish[2]" not in said  # 6000 is allowed; a picked port too


def test_the_machines_port_start_is_the_limit(monkeypatch):
    said = "\n".join(_problems(monkeypatch, rootless=True, port_start="7000"))
    assert "hosts.a.publish[1]" in said and "(7000)" in said


def test_root_is_refused_nothing_of_it(monkeypatch):
    said = "\n".join(_problems(monkeypatch, rootless=False))
    assert "ip_unprivileged_port_start" not in said and "root's cgroups" not in said


# --- the way out: pasta only when new enough (daemons/wayout.py) -------------------------------------------


def test_pasta_version_dates():
    from nslab.daemons.wayout import version_date

    assert version_date("2023_12_04.b86afe3") == (2023, 12, 4)  # an upstream build
    assert version_date("0.0~git20240220.1e6f92b-1") == (2024, 2, 20)  # Debian's, Ubuntu's
    assert version_date("0^20231204.gb86afe3-1.fc39.x86_64") == (2023, 12, 4)  # Fedora's
    assert version_date("unknown version") is None  # Debian 12's passt 0.0~git20230309
    assert version_date("1.2.3") is None


def _tools(tmp_path, pasta: str | None, slirp: bool) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if pasta is not None:  # a fake pasta that only says its version
        (bin_dir / "pasta").write_text(f"#!/bin/sh\necho 'pasta {pasta}'\necho 'Copyright Red Hat'\n")
        (bin_dir / "pasta").chmod(0o755)
    if slirp:
        (bin_dir / "slirp4netns").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "slirp4netns").chmod(0o755)
    return str(bin_dir)


def test_the_way_out_is_pasta_only_when_new_enough(monkeypatch, tmp_path):
    import pytest

    from nslab.daemons.wayout import choose
    from nslab.errors import EnvironmentProblem

    cases = [("unknown version", True, "slirp4netns (pasta unknown version is older than 2023_12_04)"),
             ("0.0~git20230309.7c7625d-1", True, "slirp4netns (pasta 0.0~git20230309.7c7625d-1 is older than "
                                                 "2023_12_04)"),
             ("2023_12_04.b86afe3", True, "pasta"), ("2025_01_21.4f2c8e7", False, "pasta"),
             (None, True, "slirp4netns")]
    for n, (version, slirp, said) in enumerate(cases):
        where = tmp_path / str(n)
        where.mkdir()
        monkeypatch.setenv("PATH", _tools(where, version, slirp))
        way = choose()
        assert way.said() == said, version
        assert way.path.endswith(way.name)
    for n, version in enumerate(("unknown version", None)):
        where = tmp_path / f"none{n}"
        where.mkdir()
        monkeypatch.setenv("PATH", _tools(where, version, False))
        with pytest.raises(EnvironmentProblem, match="install it") as refused:
            choose()
        assert ("older than 2023_12_04" in str(refused.value)) == (version is not None)


def test_relayed_ports(tmp_path):
    """What the keeper relays from the machine: each port's IPv4 side on the address written, to the host's
    IPv4 address, and its IPv6 side (hosts with IPv6) on the machine's IPv6 addresses or ``::1``."""
    import json

    from nslab.daemons.keeper import wanted_relays

    ports = [{"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 6000, "address": "10.1.0.2", "port": 80,
              "address6": "fd00::2"},
             {"proto": "udp", "host_ip": "::1", "host_port": 6100, "address": "10.1.0.2", "port": 53,
              "address6": "fd00::2"},
             {"proto": "tcp", "host_ip": "127.0.0.1", "host_port": 6200, "address": "10.1.0.3", "port": 80}]
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "state.json").write_text(json.dumps({"firewall": {"ports": ports}}))
    assert wanted_relays(str(tmp_path)) == [
        {"listen": "0.0.0.0", "port": 6000, "proto": "tcp", "to": "10.1.0.2", "to_port": 80, "lab": "lab"},
        {"listen": "::", "port": 6000, "proto": "tcp", "to": "fd00::2", "to_port": 80, "lab": "lab"},
        {"listen": "::1", "port": 6100, "proto": "udp", "to": "fd00::2", "to_port": 53, "lab": "lab"},
        {"listen": "127.0.0.1", "port": 6200, "proto": "tcp", "to": "10.1.0.3", "to_port": 80, "lab": "lab"}]
