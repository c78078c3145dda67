"""A reader that leaves early (`nslab status | head -3`): nslab stops quietly — no
traceback, exit status 1 on every path (the plain `status` and the click commands alike) (real kernel,
throwaway host)."""

from __future__ import annotations

import subprocess

from test_labs import NSLAB, nslab

LAB = "name: pipe\nnetworks: {n: {}}\nhosts:\n  h: {count: 20, networks: [n]}\n"


def test_status_into_a_closed_pipe_exits_quietly(host, tmp_path):
    path = tmp_path / "nslab.yaml"
    path.write_text(LAB)
    nslab("up", "-q", "-f", str(path))
    try:
        for argv in ([NSLAB, "status"], [NSLAB, "status", "--json"], [NSLAB, "ls"]):
            reader_gone = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert reader_gone.stdout is not None
            reader_gone.stdout.close()  # before nslab has written anything: its first write meets EPIPE
            _, err = reader_gone.communicate(timeout=30)
            assert reader_gone.returncode == 1, (argv, err)
            assert b"Traceback" not in err and b"BrokenPipe" not in err, (argv, err)
    finally:
        nslab("down", "pipe")
