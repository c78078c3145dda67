"""Issue 21 on the real kernel, in throwaway hosts: verdicts you can trust. Every lab file of the docs (routers,
internal networks, MTUs, dual stack) passes `nslab check` (IPv4 and, where dual stack, IPv6) and `nslab doctor`
with every probe agreeing with the reachability model; the router example's hops and ttl; a lab file with
`expect:` and `tests:` run by `nslab test --junit`."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import yaml
from tests.acceptance.docblocks import code_blocks

from labs import nslab
from traffic import serve

ROUTER = next(b.text for b in code_blocks("yaml") if b.text.startswith("# router.yaml"))


def doc_labs() -> list[tuple[str, str]]:
    """(first line, text) of every lab file in the docs that runs without Docker, other machines or the machine's
    own NICs (those are test_docker.py's, test_machines_lab.py's, test_external.py's)."""
    out = []
    for block in code_blocks("yaml"):
        data = yaml.safe_load(block.text)
        if not (isinstance(data, dict) and "name" in data and ("hosts" in data or "networks" in data)):
            continue
        hosts = data.get("hosts") or {}
        networks = data.get("networks") or {}
        if ("machines" in data or any(isinstance(h, dict) and ("image" in h or "macvlan" in h) for h in hosts.values())
                or any(isinstance(n, dict) and "external" in n for n in networks.values())):
            continue
        out.append((block.text.splitlines()[0], block.text))
    return out


@pytest.mark.parametrize(("first", "text"), doc_labs(), ids=[f for f, _ in doc_labs()])
def test_check_and_doctor_agree_with_the_model_on_every_doc_lab(labs, tmp_path, first, text):
    path = labs.up(text)
    name = yaml.safe_load(text)["name"]
    check = nslab("check", "-f", str(path), check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    if "ipv6: true" in text or "subnet6" in text:
        check6 = nslab("check", "-6", "-f", str(path), check=False)
        assert check6.returncode == 0, check6.stdout + check6.stderr
    doctor = nslab("doctor", name, "--json", check=False)
    # resolvers a lab file names (dns: [10.255.255.53]) do not exist in a throwaway host: not the model's part
    found = [f for f in json.loads(doctor.stdout)["findings"] if f["check"] != "nameserver-silent"]
    assert not found, found


def test_router_example_hops_and_ttl(labs):
    path = labs.up(ROUTER)
    explained = nslab("check", "-f", str(path), "--explain", "a", "b").stdout
    assert "a -> b (10.81.2.10, from 10.81.1.2): reachable, ttl 63" in explained
    assert "[eth0]router[eth1] (forwards)" in explained
    ping = nslab("exec", "rt/a", "--", "ping", "-c1", "-W1", "10.81.2.10").stdout
    assert "ttl=63" in ping
    # a router that stops forwarding: check says which cells differ and the path the model expected
    nslab("exec", "rt/router", "--", "sysctl", "-qw", "net.ipv4.ip_forward=0")
    broken = nslab("check", "rt", check=False)
    assert broken.returncode == 1
    assert "unexpected: a -> b (10.81.2.10): timeout, the lab implies reachable" in broken.stdout
    assert "model: a[eth0] -> [eth0]router[eth1] (forwards) -> [eth0]b" in broken.stdout
    found = nslab("doctor", "rt", check=False)
    assert found.returncode == 1 and "net.ipv4.ip_forward is 0 but its lab file's sysctls set it to 1" in found.stdout
    assert "rt/a: b (10.81.2.10) is not reached (timeout) but the lab's model says reachable" in found.stdout


TESTED = ROUTER + """\
expect:
  - {from: a, to: "b:8080"}
  - {from: "*", to: outside, reach: false}
tests:
  - {name: ping-b, from: a, exec: "ping -c1 -W1 10.81.2.10", expect: {stdout: "ttl=63"}}
  - {name: page, from: a, http: "http://b:8080/", expect: {status: 200, body: "hello from b"}}
  - {from: a, exec: "ip route", expect: {stdout: "default via 10.81.1.254"}}
"""


def test_lab_file_as_its_own_test(host, labs, tmp_path):
    labs.up(TESTED)
    serve(host, "rt-b", 8080, "hello from b")
    junit = tmp_path / "out.xml"
    result = nslab("test", "rt", "--junit", str(junit), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "PASS check a->b" in lines and "PASS check a->b:8080" in lines and "PASS page" in lines
    assert "PASS tests[2]" in lines and lines[-1] == "16 passed, 0 failed"
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "16" and suite.get("failures") == "0"
    # a failing case: exit 1, named, in the XML too
    labs.up(TESTED.replace('body: "hello from b"', 'body: "nothing like this"'))
    failed = nslab("test", "rt", "--junit", str(junit), check=False)
    assert failed.returncode == 1
    lines = failed.stdout.splitlines()
    assert any(line.startswith("FAIL page: body does not match /nothing like this/") for line in lines)
    assert failed.stdout.splitlines()[-1] == "15 passed, 1 failed"
    [case] = [c for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None]
    assert case.get("name") == "page"


def test_test_needs_a_lab_that_is_up(host):
    result = nslab("test", "nosuch", check=False)
    assert result.returncode == 2 and result.stderr.strip() == "nslab: no lab 'nosuch' is up (labs up: none)"
