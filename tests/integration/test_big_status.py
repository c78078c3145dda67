"""Issue 13, done when: the piped `nslab status` of a 300-host lab is greppable whole (real kernel, throwaway
host): one row per host interface naming its host, nothing cut, no box drawing."""

from __future__ import annotations

from labs import nslab

BIG = "name: big\nnetworks:\n  lan: {subnet: 10.60.0.0/22}\nhosts:\n  h:\n    count: 300\n    networks: [lan]\n"


def test_piped_status_of_300_hosts_is_greppable_whole(host, tmp_path):
    path = tmp_path / "nslab.yaml"
    path.write_text(BIG)
    nslab("up", "-q", "-f", str(path))
    try:
        out = nslab("status", "big").stdout  # captured: stdout is a pipe
        rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("h")
                and line.split()[0][1:].isdigit()}
        assert sorted(rows) == sorted(f"h{i}" for i in range(1, 301))
        assert rows["h300"][1:5] == ["big-h300", "eth0", "lan", "10.60.1.45/22"]  # awk-able columns
        assert not any(c in out for c in "…│┃━─┏╭")
        one = nslab("status", "big/h42").stdout.splitlines()
        assert [line.split()[0] for line in one if line.startswith("h4")] == ["h42"]
    finally:
        nslab("down", "big")
