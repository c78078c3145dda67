"""Issue 12 `nslab graph`: valid SVG with every host and network; the served html page renders in a real
headless Chromium and shows, live, a link that was put down. Real kernel, throwaway host."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from labfiles import lab_text
from labs import NSLAB, nslab
from sandbox import sh

SVG = "{http://www.w3.org/2000/svg}"

LAB = lab_text(
    "topo", {"front": "10.73.1.0/24", "back": "10.73.2.0/24"}, internal=["back"], hosts={
        "web": 'networks: [front], publish: ["8080:80"]', "app": "networks: [front, back]",
        "db": "networks: [back]",
    },
    more="links:\n  - {endpoints: [app, db], subnet: 10.74.0.0/30}\n",
)


@pytest.fixture
def topo(labs, tmp_path):
    labs.up(LAB)
    return tmp_path


def test_svg_is_valid_and_names_every_host_and_network(topo):
    out = topo / "topo.svg"
    nslab("graph", "topo", "--format", "svg", "-o", str(out))
    root = ET.parse(out).getroot()  # well-formed XML
    assert root.tag == f"{SVG}svg"
    hosts = {g.get("data-host") for g in root.iter(f"{SVG}g") if g.get("class") == "host"}
    networks = {g.get("data-network") for g in root.iter(f"{SVG}g") if g.get("class") == "network"}
    assert hosts == {"web", "app", "db"} and networks == {"front", "back"}
    text = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    assert "10.73.1.0/24 nat" in text and "10.73.2.0/24 internal" in text and "8080->80/tcp" in text
    edges = [e for e in root.iter() if "edge" in (e.get("class") or "")]
    assert len(edges) == 5 and all(e.get("class") == "edge up" for e in edges)  # 4 attachments + 1 link
    assert "linkStyle" not in nslab("graph", "topo").stdout  # mermaid: nothing red
    assert "graph nslab {" in nslab("graph", "--format", "dot").stdout


def test_down_link_is_red_in_svg_and_in_the_live_page(topo):
    from nslab.tools.browse import Browser

    if shutil.which("chromium") is None:
        pytest.skip("needs chromium (./dev/setup.sh)")
    server = subprocess.Popen([NSLAB, "graph", "topo", "--serve", "--port", "18642"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with Browser(f"pid:{os.getpid()}") as browser:  # where graph --serve listens
            deadline = time.monotonic() + 10
            while True:
                answer = browser.call("Page.navigate", {"url": "http://127.0.0.1:18642/"})
                if not answer.get("errorText"):
                    break
                assert time.monotonic() < deadline, "graph --serve did not start"
                time.sleep(0.3)
            edge = "document.querySelector('.edge[data-host=\"web\"][data-if=\"eth0\"]')"
            assert _wait_for(browser, f"{edge} !== null && document.getElementById('live').textContent"
                                      ".startsWith('live')")
            assert browser.evaluate(f"{edge}.getAttribute('class')") == "edge up"
            sh("ip -n topo-web link set eth0 down")  # web's end of its veth
            assert _wait_for(browser, f"{edge}.classList.contains('down')")
            assert browser.evaluate(f"{edge}.getAttribute('stroke')") == "#d22"
            assert browser.evaluate("document.querySelectorAll('.edge.down').length") == 1
            assert browser.evaluate("document.querySelectorAll('g.host').length") == 3
    finally:
        server.terminate()
        server.wait()
    svg = nslab("graph", "topo", "--format", "svg").stdout
    root = ET.fromstring(svg)
    down = [e for e in root.iter() if e.get("class") == "edge down"]
    assert [(e.get("data-host"), e.get("data-if"), e.get("stroke")) for e in down] == [("web", "eth0", "#d22")]
    assert "linkStyle 0 stroke:#d22" in nslab("graph", "topo").stdout


def _wait_for(browser, expression: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if browser.evaluate(expression):
            return True
        time.sleep(0.3)
    return False
