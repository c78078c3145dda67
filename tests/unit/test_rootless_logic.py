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
