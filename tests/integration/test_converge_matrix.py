"""The converge matrix on the real kernel: one running lab edited through every kind of change — subnet,
address, published port, service command, impairment, hostname, sysctl, route, MTU, a host added, a host
removed, a network made internal — and after each `up` the whole lab checked against its file: every service
runs in its host's network and hostname namespaces, every published port answers, every name resolves,
`status` reports no drift, and `up --dry-run` has nothing to do."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_hostsetup import WAN_ONLY_ADDRESS, WAN_ONLY_NAME, DnsWorld

from labs import lab_status, nslab, settled
from nslab import paths
from sandbox import UPLINK_ADDRESS
from traffic import fetch

ENV = {**os.environ, "NSLAB_STOP_TIMEOUT": "1", "COLUMNS": "200"}
NAME = "mx"
Lab = dict[str, Any]

START: Lab = {
    "name": NAME,
    "networks": {"front": {"subnet": "10.71.1.0/24"}, "back": {"subnet": "10.71.2.0/24"}},
    "hosts": {
        "web": {"networks": ["front"], "publish": ["7101:8000"], "run": "exec python3 -m http.server 8000"},
        "api": {"networks": ["front", "back"], "publish": ["7102:8001"], "run": "exec python3 -m http.server 8001"},
        "db": {"networks": ["back"], "run": "exec sleep 100000"},
    },
}


def subnet(lab: Lab) -> None:
    lab["networks"]["front"]["subnet"] = "10.71.9.0/24"


def address(lab: Lab) -> None:
    lab["hosts"]["db"]["networks"] = {"back": {"address": "10.71.2.50"}}


def published_port(lab: Lab) -> None:
    lab["hosts"]["web"]["publish"] = ["7111:8000"]


def service_command(lab: Lab) -> None:
    lab["hosts"]["api"]["run"] = "exec python3 -m http.server --bind 0.0.0.0 8001"


def impairment(lab: Lab) -> None:  # a delay: the packet delayer holds the host's packets (or netem)
    lab["hosts"]["web"]["impair"] = {"eth0": {"delay": 5}}


def hostname(lab: Lab) -> None:  # the impaired host is made again: its delayer queue moves with it
    lab["hosts"]["web"]["hostname"] = "alpha"


def sysctl(lab: Lab) -> None:
    lab["hosts"]["api"]["sysctls"] = {"net.ipv4.ip_forward": 1}


def route(lab: Lab) -> None:
    lab["hosts"]["db"]["routes"] = [{"to": "10.99.0.0/24", "via": "10.71.2.1"}]


def mtu(lab: Lab) -> None:
    lab["networks"]["back"]["mtu"] = 1400


def host_added(lab: Lab) -> None:
    lab["hosts"]["cache"] = {"networks": ["back"], "run": "exec sleep 100001"}


def host_removed(lab: Lab) -> None:
    del lab["hosts"]["db"]


def network_internal(lab: Lab) -> None:
    lab["networks"]["back"]["internal"] = True


EDITS: list[Callable[[Lab], None]] = [subnet, address, published_port, service_command, impairment, hostname,
                                      sysctl, route, mtu, host_added, host_removed, network_internal]


def check_lab(lab: Lab, path: Path) -> None:
    """The machine against ``lab``, the file at ``path`` just brought up."""
    doc = settled(lambda: lab_status(NAME, env=ENV),
                  lambda d: all(s["state"] == "running" for s in d["hostsetup"]["services"]))
    assert doc["drift"] == [] and "changing" not in doc, doc["drift"]
    services = {s["host"]: s for s in doc["hostsetup"]["services"]}
    assert set(services) == {h for h, spec in lab["hosts"].items() if "run" in spec}
    for host, service in services.items():
        assert service["state"] == "running" and service["command"] == lab["hosts"][host]["run"], service
        pinned = {"net": f"/run/netns/{NAME}-{host}", "uts": paths.uts_path(NAME, host)}
        for kind, pin in pinned.items():
            assert os.stat(f"/proc/{service['pid']}/ns/{kind}").st_ino == os.stat(pin).st_ino, (host, kind)
    for host, spec in lab["hosts"].items():
        for entry in spec.get("publish", []):
            port = int(entry.split(":")[0])
            answer = settled(partial(fetch, UPLINK_ADDRESS, port), bool, timeout=5)
            assert answer is not None, f"{host}: published port {port} does not answer"
    names = [*lab["hosts"], *(spec["hostname"] for spec in lab["hosts"].values() if "hostname" in spec)]
    script = "for n in " + " ".join(names) + "; do getent ahostsv4 $n >/dev/null || { echo $n; exit 1; }; done"
    for host, spec in lab["hosts"].items():
        if _on_nat(lab, spec):  # a name of the outside world, through the lab's DNS forwarder
            result = nslab("exec", f"{NAME}/{host}", "--", "getent", "ahostsv4", WAN_ONLY_NAME, check=False, env=ENV)
            assert WAN_ONLY_ADDRESS in result.stdout, f"{host} cannot resolve {WAN_ONLY_NAME}"
        result = nslab("exec", f"{NAME}/{host}", "--", "sh", "-c", script, check=False, env=ENV)
        assert result.returncode == 0, f"{host} cannot resolve {result.stdout.strip()}"
    assert nslab("status", NAME, env=ENV).returncode == 0
    assert "nothing to do" in nslab("up", "--dry-run", "-f", str(path), env=ENV).stdout


def _on_nat(lab: Lab, spec: dict[str, Any]) -> bool:
    return any(not lab["networks"][n].get("internal") for n in spec["networks"])


@pytest.fixture
def lab_file(host, tmp_path):
    """The machine's resolver is a loopback stub (forwarding to wan), so the hosts of NAT networks ask the lab's
    DNS forwarder on their gateway: it must answer after every edit too."""
    world = DnsWorld(host, tmp_path)
    world.machine_resolv_conf("nameserver 127.0.0.53\n")
    world.start_stub()
    yield tmp_path / "nslab.yaml"
    nslab("down", NAME, check=False, env=ENV)


def test_every_kind_of_change_converges_to_the_file(lab_file):
    lab = copy.deepcopy(START)
    lab_file.write_text(yaml.safe_dump(lab, sort_keys=False))
    nslab("up", "-f", str(lab_file), env=ENV)
    check_lab(lab, lab_file)
    for edit in EDITS:
        edit(lab)
        lab_file.write_text(yaml.safe_dump(lab, sort_keys=False))
        result = nslab("up", "-f", str(lab_file), env=ENV, check=False)
        assert result.returncode == 0, f"{edit.__name__}: {result.stderr}"
        try:
            check_lab(lab, lab_file)
        except AssertionError as exc:
            raise AssertionError(f"after the {edit.__name__} edit: {exc}") from exc
    assert json.loads(nslab("status", NAME, "--json", env=ENV).stdout)["labs"][0]["drift"] == []
