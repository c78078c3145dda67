"""``nslab test``: the lab file as its own test, run on the lab that is up.

The cases, in order: every cell of the reachability matrix (``check A->B``, ICMP, judged as ``nslab check``
judges it: the model, or an ``expect:`` entry), the cells each ``expect:`` entry with a port covers
(``check A->B:PORT``, probed on that port), then the lab file's ``tests:`` (core/labtests.py):

- ``exec: CMD`` runs ``sh -c CMD`` inside the host as ``nslab exec`` does, and compares its exit status and
  standard output (``re.search``);
- ``http: URL`` sends one ``GET`` from inside the host with a socket opened in its namespace (no curl needed:
  drivers/probe.py ``open_in``), and compares the status and the body. A lab host's name in the URL stands for
  its address as ``check`` probes it; otherwise the URL holds an address.

:func:`junit` writes the cases as JUnit XML (one ``testcase`` each), what CI systems read.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import TargetError
from . import check as chk

if TYPE_CHECKING:
    from ..model import Lab, LabTest

#: Seconds a test case may take (a command, an HTTP exchange).
CASE_TIMEOUT = 10.0


@dataclass
class Case:
    name: str
    ok: bool
    why: str = ""
    seconds: float = 0.0


def run(name: str, timeout: float = chk.TIMEOUT, report: Callable[[Case], None] | None = None) -> list[Case]:
    """Every case of lab ``name`` (which must be up), each passed to ``report`` as it is decided."""
    from ..core import state
    from ..core.which import not_up

    st = state.LabState.load(name)
    if st is None:
        raise not_up(name)
    cases: list[Case] = []

    def add(case: Case) -> None:
        cases.append(case)
        if report is not None:
            report(case)

    start = time.monotonic()
    matrix = chk.check(name, timeout=timeout)
    per_cell = (time.monotonic() - start) / max(1, len(matrix.cells))
    for cell in matrix.cells:
        add(_cell_case(cell, "", per_cell))
    for port in dict.fromkeys(f"{e.port}/{e.proto}" for e in st.lab.expect if e.port is not None):
        proto, number = chk.parse_port(port)
        matrix = chk.check(name, port, timeout=timeout)
        for cell in matrix.cells:
            if any(e.port == number and e.covers(cell.source, cell.target, proto, number) for e in st.lab.expect):
                add(_cell_case(cell, f":{number}" + ("/udp" if proto == "udp" else ""), 0.0))
    for test in st.lab.tests:
        start = time.monotonic()
        ok, why = _run_test(st.lab, test)
        add(Case(test.name, ok, why, time.monotonic() - start))
    return cases


def _cell_case(cell: chk.Cell, port: str, seconds: float) -> Case:
    name = f"check {cell.source}->{cell.target}{port}"
    if cell.ok:
        return Case(name, True, "", seconds)
    want = "reachable" if cell.expected else "blocked"
    by = "an expect: entry says" if cell.by == "expect" else "the model says"
    why = f"{cell.result or 'reached'} at {cell.address}, {by} {want}" + (f" ({cell.path})" if cell.path else "")
    return Case(name, False, why, seconds)


def _run_test(lab: Lab, test: LabTest) -> tuple[bool, str]:
    try:
        if test.command is not None:
            return _exec_test(lab, test)
        return _http_test(lab, test)
    except (OSError, subprocess.SubprocessError, TargetError, ValueError) as exc:
        return False, str(exc) or type(exc).__name__


def _exec_test(lab: Lab, test: LabTest) -> tuple[bool, str]:
    from ..ns import nsenter, targets

    assert test.command is not None
    done = nsenter.run_in_target(targets.resolve(f"{lab.name}/{test.source}"), ["sh", "-c", test.command],
                                 capture_output=True, text=True, timeout=CASE_TIMEOUT)
    if done.returncode != test.exit:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return False, f"exit {done.returncode}, expected {test.exit}" + (f": {tail[0]}" if tail[0] else "")
    if test.stdout is not None and not re.search(test.stdout, done.stdout):
        return False, f"stdout does not match /{test.stdout}/: {_short(done.stdout)}"
    return True, ""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= 80 else text[:77] + "...")


def url_address(lab: Lab, source: str, url: str) -> tuple[str, int, str, str]:
    """(address, port, path, Host header) of an ``http://`` URL, a lab host's name standing for its address."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url}: only http:// URLs")
    host = parts.hostname
    if host in lab.hosts:
        address = chk.target_address(lab, source, host)
        if address is None:
            raise ValueError(f"{host} has no address {source} can use")
    else:
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            raise ValueError(f"{url}: '{host}' is neither a host of lab {lab.name} nor an address") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return address, parts.port or 80, path, parts.netloc


def _http_test(lab: Lab, test: LabTest) -> tuple[bool, str]:
    assert test.url is not None
    address, port, path, netloc = url_address(lab, test.source, test.url)
    status, body = http_get(lab.hosts[test.source].namespace, address, port, path, netloc)
    if status != test.status:
        return False, f"status {status}, expected {test.status}"
    if test.body is not None and not re.search(test.body, body):
        return False, f"body does not match /{test.body}/: {_short(body)}"
    return True, ""


def http_get(namespace: str, address: str, port: int, path: str, netloc: str,
             timeout: float = CASE_TIMEOUT) -> tuple[int, str]:
    """One HTTP/1.0 GET from inside ``namespace``: (status, body)."""
    from ..drivers.probe import open_in

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = open_in([namespace], lambda _ns: [socket.socket(family, socket.SOCK_STREAM)])[namespace][0]
    with sock:
        sock.settimeout(timeout)
        sock.connect((address, port))
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {netloc}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    match = re.match(r"HTTP/\d(?:\.\d)? (\d{3})", status_line)
    if match is None:
        raise ValueError(f"not an HTTP answer: {status_line[:60]!r}")
    return int(match.group(1)), body.decode("utf-8", "replace")


def junit(lab: str, cases: list[Case], path: str) -> None:
    """The cases as JUnit XML at ``path``: one ``testsuite`` (the lab), one ``testcase`` per case."""
    import xml.etree.ElementTree as ET

    failed = sum(not c.ok for c in cases)
    suites = ET.Element("testsuites", tests=str(len(cases)), failures=str(failed))
    suite = ET.SubElement(suites, "testsuite", name=f"nslab {lab}", tests=str(len(cases)), failures=str(failed),
                          errors="0", time=f"{sum(c.seconds for c in cases):.3f}")
    for c in cases:
        case = ET.SubElement(suite, "testcase", classname=f"nslab.{lab}", name=c.name, time=f"{c.seconds:.3f}")
        if not c.ok:
            ET.SubElement(case, "failure", message=c.why).text = c.why
    ET.indent(suites)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
