"""Issue 12 `nslab browse`: a headless Chromium inside an internal-network lab host loads a page served by
another lab host and reports the page loaded and its outside stylesheet and script failed. Real kernel,
throwaway host; the outside references are a name that cannot resolve and an address in `wan`'s range that
nothing serves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from labs import NSLAB, private_resolver, wait_for
from labs import nslab as run_nslab
from nslab.drivers import procfs
from sandbox import WAN_ADDRESS

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (./dev/setup.sh)")

LAB = """\
name: web
networks:
  inner: {subnet: 10.72.1.0/24, internal: true}
hosts:
  server: {networks: {inner: 10.72.1.10}}
  client: {networks: [inner]}
"""

PAGE = f"""<!DOCTYPE html>
<html><head><title>app</title>
<link rel="stylesheet" href="http://cdn.nslab-test.invalid/style.css">
<script src="http://{WAN_ADDRESS}:81/tracker.js"></script>
</head><body><h1>hello from the internal network</h1></body></html>
"""


def nslab(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_nslab(*args, check=check, ok=(0, 1))


def chromium_processes() -> list[str]:
    """Browser processes still alive (a killed one may be a zombie until init reaps it: not counted)."""
    return [f"{pid} {procfs.state(pid)} {procfs.cmdline(pid)}" for pid in procfs.pids()
            if "chrom" in (procfs.comm(pid) or "") and procfs.state(pid) not in ("Z", "X", None)]


@pytest.fixture
def served(host, labs, tmp_path):
    private_resolver(tmp_path)  # never the real resolver
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(PAGE)
    labs.up(LAB)
    host.popen([NSLAB, "exec", "server", "--", sys.executable, "-m", "http.server", "-b", "10.72.1.10",
                "-d", str(site), "8000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def page_served() -> bool:
        return nslab("exec", "client", "--", "curl", "-sf", "-o", "/dev/null", "http://10.72.1.10:8000/",
                     check=False).returncode == 0

    wait_for(page_served, timeout=10, interval=0.2)
    return tmp_path


def test_browse_lists_the_page_loaded_and_outside_requests_failed(served):
    shot = served / "page.png"
    result = nslab("browse", "client", "http://10.72.1.10:8000/", "--screenshot", str(shot), "--wait", "8",
                   "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    by_url = {r["url"]: r for r in doc["requests"]}
    assert doc["outcome"] == "loaded"
    assert by_url["http://10.72.1.10:8000/"]["outcome"] == "loaded"
    css = by_url["http://cdn.nslab-test.invalid/style.css"]
    js = by_url[f"http://{WAN_ADDRESS}:81/tracker.js"]
    assert css["outcome"] == "failed" and css["reason"].startswith("DNS")
    assert js["outcome"] == "failed" and js["reason"]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert chromium_processes() == []  # nothing of the browser is left running
    assert not [d for d in os.listdir("/tmp") if d.startswith("nslab-browse-")]


def test_browse_text_output_and_a_page_that_fails(served):
    result = nslab("browse", "client", f"http://{WAN_ADDRESS}:81/", "--wait", "5")
    assert result.returncode == 1
    assert result.stdout.startswith(f"page http://{WAN_ADDRESS}:81/: failed")
    assert chromium_processes() == []
