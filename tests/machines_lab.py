"""What the tests of labs across machines share (tests/integration/test_machines_lab.py, test_machines_300.py):
its lab, the ``machines`` fixture (three machines in the test's throwaway host, nslab.tools.sandbox.Machines), ``nslab``
run on several machines at once, ``nslab exec`` into a lab's host on its machine, and what a lab could leave on
a machine. A test module uses the fixture by importing it (``from machines_lab import machines``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from labs import NSLAB
from nslab.tools.sandbox import Machine, Machines, ThrowawayHost

#: The lab of test_machines_lab.py (test_machines_300.py grows it to 300 hosts).
LAB = """
name: multi
machines:
  a: {address: 198.18.0.1}
  b: {address: 198.18.0.2}
  c: {address: 198.18.0.3}
networks:
  lan: {ipv6: true}
  back: {internal: true}
hosts:
  a1:
    machine: a
    networks: [lan]
    publish: ["8080:80"]
    run: PYTHON -m http.server 80
  a2: {machine: a, networks: [lan]}
  a3: {machine: a, networks: [lan]}
  b1: {machine: b, networks: [lan, back]}
  b2:
    machine: b
    networks: [lan]
    publish: ["8081:80"]         # published on lan's home, a, to a host on b
    run: PYTHON -m http.server 80
  b3: {machine: b, networks: [back]}
  c1: {machine: c, networks: [lan, back]}
  c2: {machine: c, networks: [lan]}
  c3: {machine: c, networks: [back]}
  c4: {machine: c, networks: [lan]}
links:
  - [a2, b2]
  - [b2, c2]
  - {endpoints: [c2, a2], ipv6: true}
""".replace("PYTHON", sys.executable)

#: A TCP server in wan answering each client with the address it sees.
PEER_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 9000)); s.listen(8); print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
"""
FETCH = ("import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 3); "
         "print(s.recv(99).decode())")


@pytest.fixture
def machines(host: ThrowawayHost) -> Iterator[Machines]:
    group = Machines(host).start()
    try:
        yield group
    finally:
        group.stop()


def lab_file(tmp_path: Path, name: str, text: str) -> str:
    """``text`` written to ``tmp_path/NAME.yaml``, readable from every machine."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    os.chmod(tmp_path, 0o755)
    return str(path)


def on_all(machines: Iterable[Machine], *args: str, named: bool = True,
           timeout: float = 120) -> dict[str, subprocess.CompletedProcess[str]]:
    """``nslab ARGS --machine NAME`` on every machine at once (``named`` False: without ``--machine``)."""
    procs = {m.name: subprocess.Popen(m.argv([NSLAB, *args, *(["--machine", m.name] if named else [])]),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for m in machines}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=timeout)
        out[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return out


def all_ok(results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    for name, r in results.items():
        assert r.returncode == 0, f"machine {name}: {r.stdout}{r.stderr}"


def inside(machine: Machine, lab: str, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``nslab exec LAB/HOST -- ARGV`` on ``machine`` (where the host lives)."""
    return machine.run([NSLAB, "exec", f"{lab}/{host}", "--", *argv])


def ping(machine: Machine, lab: str, source: str, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return inside(machine, lab, source, ["ping", "-c1", "-W2", *extra, target])


def left(machine: Machine) -> list[str]:
    """What a lab could leave on a machine: named namespaces, nslab's links, its nft table, files."""
    out = [f"netns {n}" for n in os.listdir(machine.path("/run/netns"))]
    out += [f"etc {n}" for n in os.listdir(machine.path("/etc/netns"))]
    out += [f"state {n}" for n in os.listdir(machine.path("/run/nslab")) if not n.startswith(".")]
    links = machine.run(["ip", "-o", "link"]).stdout
    out += [line.split(":")[1].strip() for line in links.splitlines() if "nsl" in line or "nsx" in line]
    if machine.run(["nft", "list", "table", "inet", "nslab"]).returncode == 0:
        out.append("nft table")
    return out
