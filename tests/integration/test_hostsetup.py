"""Issue 4 inside hosts: DNS that just works, lab names, hostnames — on the real kernel in throwaway hosts.

The "internet's resolver" is a tiny DNS server the test runs in ``wan`` (198.51.100.1): it knows only
``only-in-wan.example`` (-> 192.0.2.44, TEST-NET-1) and logs every query with its peer. The machine's
``/etc/resolv.conf`` is a test copy bind-mounted in the throwaway host's mount namespace; for the
systemd-resolved pitfall it names 127.0.0.53, where the test runs a stub that forwards to the wan server.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labfiles import DNS_LAB
from labs import lab_status, nslab
from nslab import Lab, linux
from nslab.errors import ResolveError
from sandbox import WAN_ADDRESS, sh

WAN_ONLY_NAME = "only-in-wan.example"
WAN_ONLY_ADDRESS = "192.0.2.44"

DNSD = r'''
import socket, struct, sys
mode, listen, arg, log = sys.argv[1:5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((listen, 53))
out = open(log, "a", buffering=1)
while True:
    data, peer = s.recvfrom(4096)
    labels, i = [], 12
    while data[i]:
        labels.append(data[i + 1:i + 1 + data[i]].decode()); i += 1 + data[i]
    name = ".".join(labels).lower(); qtype = struct.unpack("!H", data[i + 1:i + 3])[0]
    out.write(f"{peer[0]} {name} {qtype}\n")
    if mode == "forward":
        f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); f.settimeout(2)
        f.sendto(data, (arg, 53))
        try:
            s.sendto(f.recv(4096), peer)
        except OSError:
            pass
        f.close()
        continue
    question = data[12:i + 5]
    if name == arg and qtype == 1:
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("192.0.2.44")
        s.sendto(data[:2] + b"\x81\x80" + struct.pack("!HHHH", 1, 1, 0, 0) + question + answer, peer)
    else:  # NXDOMAIN for everything else, at once
        s.sendto(data[:2] + b"\x81\x83" + struct.pack("!HHHH", 1, 0, 0, 0) + question, peer)
'''


def in_host(lab: str, host: str, cmd: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return sh(f"ip netns exec {lab}-{host} {cmd}", check=False, timeout=timeout)


def _query(server: str, name: str) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    try:
        s.sendto(packet, (server, 53))
        return s.recv(4096)
    finally:
        s.close()


def _answers(server: str) -> bool:
    try:
        return bool(_query(server, "ready.test"))
    except OSError:
        return False


class DnsWorld:
    """The wan resolver (and optionally the machine's 127.0.0.53 stub) plus the machine's resolv.conf."""

    def __init__(self, host, tmp: Path):
        self.host, self.tmp = host, tmp
        self.script = tmp / "dnsd.py"
        self.script.write_text(DNSD)
        self.wan_log = tmp / "wan.log"
        self.wan_log.touch()
        host.popen(host.in_wan([sys.executable, str(self.script), "serve", WAN_ADDRESS, WAN_ONLY_NAME,
                                str(self.wan_log)]))
        self._wait(lambda: _answers(WAN_ADDRESS))
        # Hide systemd-resolved's upstream file, if the real machine has one.
        if os.path.isdir("/run/systemd/resolve"):
            linux.mount("tmpfs", "/run/systemd/resolve", "tmpfs", 0)

    def _wait(self, ready, what: str = "DNS server") -> None:
        for _ in range(200):
            if ready():
                return
            time.sleep(0.02)
        raise AssertionError(f"{what} did not start")

    def machine_resolv_conf(self, text: str) -> None:
        path = self.tmp / "resolv.conf"
        path.write_text(text)
        linux.mount(str(path), "/etc/resolv.conf", None, linux.MS_BIND)

    def start_stub(self) -> None:
        """The systemd-resolved pitfall: 127.0.0.53 answers on the machine only, forwarding to wan."""
        self.stub_log = self.tmp / "stub.log"
        self.stub_log.touch()
        self.host.popen([sys.executable, str(self.script), "forward", "127.0.0.53", WAN_ADDRESS,
                         str(self.stub_log)])
        self._wait(lambda: _answers("127.0.0.53"), "stub resolver")

    def wan_queries(self) -> list[str]:
        return self.wan_log.read_text().splitlines()


@pytest.fixture
def dns(host, tmp_path):
    return DnsWorld(host, tmp_path)


@pytest.fixture
def lab_file(labs):
    """Write a lab file; whatever the test does, the lab goes down at the end."""
    return lambda text: str(labs.write(text))


LAB = DNS_LAB

# from host -> {other: address it must resolve to}
EXPECTED = {
    "a": {"b": "10.77.1.11", "c": "10.77.2.12"},
    "b": {"a": "10.77.1.10", "c": "10.77.2.12"},
    "c": {"a": "10.77.1.10", "b": "10.77.2.11"},
}


def test_stub_resolver_on_loopback_still_resolves_upstream(dns, lab_file):
    dns.machine_resolv_conf("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example\n")
    dns.start_stub()
    nslab("up", "-f", lab_file(LAB))
    assert nameservers("a") == ["10.77.1.1"]  # the gateway, relayed to the stub by the lab's forwarder
    out = in_host("dn", "a", f"getent ahostsv4 {WAN_ONLY_NAME}")
    assert out.returncode == 0 and WAN_ONLY_ADDRESS in out.stdout, out
    # The query reached the internet's resolver through the machine's stub, not from the lab host directly.
    assert any(q.startswith(f"198.51.100.2 {WAN_ONLY_NAME}") for q in dns.wan_queries())
    doc = lab_status("dn")
    assert doc["hostsetup"]["dns"]["a"]["via"].startswith("forwarder to 127.0.0.53")


def nameservers(host: str, lab: str = "dn") -> list[str]:
    lines = Path(f"/etc/netns/{lab}-{host}/resolv.conf").read_text().splitlines()
    return [line.split()[1] for line in lines if line.startswith("nameserver ")]


def test_lab_names_from_every_host_and_internal_hosts_stay_inside(dns, lab_file):
    dns.machine_resolv_conf("nameserver 127.0.0.53\n")
    dns.start_stub()
    nslab("up", "-f", lab_file(LAB))
    for me, others in EXPECTED.items():
        for other, address in others.items():
            for name in (other, f"{other}.dn"):
                out = in_host("dn", me, f"getent hosts {name}")
                assert out.returncode == 0, (me, name, out)
                assert out.stdout.split()[0] == address, (me, name, out.stdout)
    # The hostname override resolves too.
    assert in_host("dn", "a", "getent hosts bee").stdout.split()[0] == "10.77.1.11"
    # c has only an internal network: no nameserver, and nothing it looks up leaves the lab.
    assert nameservers("c") == []
    before = len(dns.wan_queries())
    assert in_host("dn", "c", "getent hosts a").stdout.split()[0] == "10.77.1.10"
    assert in_host("dn", "c", f"getent hosts {WAN_ONLY_NAME}").returncode != 0
    assert in_host("dn", "c", "getent hosts nosuch.example").returncode != 0
    time.sleep(0.3)
    assert len(dns.wan_queries()) == before, dns.wan_queries()[before:]
    # Files go with the lab.
    nslab("down", "dn")
    assert os.listdir("/etc/netns") == []


def test_systemd_resolved_upstream_file_is_used(dns, lab_file, tmp_path):
    dns.machine_resolv_conf("nameserver 127.0.0.53\nsearch example\n")  # nothing listens there
    resolved = tmp_path / "resolved"
    resolved.mkdir()
    (resolved / "resolv.conf").write_text(f"nameserver {WAN_ADDRESS}\nsearch example\n")
    os.makedirs("/run/systemd/resolve", exist_ok=True)  # /run is the machine's: only a bind over it
    created = not os.listdir("/run/systemd/resolve")
    linux.mount(str(resolved), "/run/systemd/resolve", None, linux.MS_BIND)
    try:
        nslab("up", "-f", lab_file(LAB))
        resolv = Path("/etc/netns/dn-a/resolv.conf").read_text()
        assert f"nameserver {WAN_ADDRESS}" in resolv and "search example" in resolv
        assert "127.0.0.53" not in resolv
        assert lab_status("dn")["hostsetup"]["supervisor"] is None  # no forwarder, no process
        if "masquerade" not in sh("nft list ruleset", check=False).stdout:
            pytest.skip("egress NAT (firewall feature) is not there yet: the lab host cannot reach wan")
        out = in_host("dn", "a", f"getent ahostsv4 {WAN_ONLY_NAME}")
        assert WAN_ONLY_ADDRESS in out.stdout, out
    finally:
        nslab("down", "dn", check=False)
        linux.umount("/run/systemd/resolve")
        if created:
            try:
                os.rmdir("/run/systemd/resolve")
                os.rmdir("/run/systemd")
            except OSError:
                pass


def test_dns_and_search_from_the_lab_file(dns, lab_file):
    dns.machine_resolv_conf(f"nameserver {WAN_ADDRESS}\n")
    text = LAB.replace("name: dn\n", "name: dn\ndns: [198.51.100.1]\ndns_search: [lab.example]\n")
    text = text.replace("hostname: bee}", "hostname: bee, dns: [192.0.2.53], dns_search: [x.example]}")
    nslab("up", "-f", lab_file(text))
    a = Path("/etc/netns/dn-a/resolv.conf").read_text()
    b = Path("/etc/netns/dn-b/resolv.conf").read_text()
    c = Path("/etc/netns/dn-c/resolv.conf").read_text()
    assert "nameserver 198.51.100.1" in a and "search lab.example" in a
    assert "nameserver 192.0.2.53" in b and "search x.example" in b and "198.51.100.1" not in b
    assert "nameserver 198.51.100.1" in c  # an explicit server is written even for an internal host


def test_bad_search_domain_is_reported_before_any_change(host):
    lab = Lab.from_text(LAB + "dns_search: ['bad domain!']\n", "lab.yaml")
    with pytest.raises(ResolveError) as err:
        lab.up()
    assert "dns_search[0]" in str(err.value) and "lab.yaml:9" in str(err.value)
    assert os.listdir("/run/netns") == ["wan"]
    assert os.listdir("/etc/netns") == []


def test_hostname_per_host_kept_without_processes(dns, lab_file):
    dns.machine_resolv_conf(f"nameserver {WAN_ADDRESS}\n")
    machine = socket.gethostname()
    nslab("up", "-f", lab_file(LAB))
    for host, expected in (("a", "a"), ("b", "bee"), ("c", "c")):
        uts = f"/run/nslab/dn/uts/{host}"
        out = sh(f"nsenter --uts={uts} --net=/run/netns/dn-{host} hostname", check=False)
        assert out.stdout.strip() == expected
    assert socket.gethostname() == machine
    # No process holds these namespaces: the bind mounts do.
    assert lab_status("dn")["hostsetup"]["supervisor"] is None
    nslab("down", "dn")
    assert not os.path.exists("/run/nslab/dn")


def test_a_failure_inside_hosts_rolls_a_fresh_lab_back(dns, lab_file):
    dns.machine_resolv_conf("nameserver 127.0.0.53\n")
    dns.start_stub()
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: the bridge does not exist yet
    squatter.bind(("10.77.1.1", 53))  # the forwarder cannot listen on the gateway's port 53
    try:
        out = nslab("up", "-f", lab_file(LAB), check=False)
    finally:
        squatter.close()
    assert out.returncode == 1 and "port 53" in out.stderr, out
    assert os.listdir("/run/netns") == ["wan"]
    assert os.listdir("/etc/netns") == []
    assert not os.path.exists("/run/nslab/dn")
    ps = sh("ps -eo args", check=False).stdout.splitlines()
    assert not [line for line in ps if line.endswith("nslab.daemons.supervise dn")]  # (other labs: other tests')


def test_hostname_pins_live_on_one_tmpfs_and_older_pins_still_go(dns, lab_file):
    dns.machine_resolv_conf(f"nameserver {WAN_ADDRESS}\n")
    nslab("up", "-f", lab_file(LAB))
    uts = "/run/nslab/dn/uts"
    assert os.stat(uts).st_dev != os.stat("/run/nslab/dn").st_dev  # its own tmpfs
    assert os.stat(f"{uts}/a").st_dev != os.stat(uts).st_dev  # a pin on it
    nslab("down", "dn")
    assert not os.path.exists("/run/nslab/dn")
    assert "/run/nslab/dn" not in open("/proc/self/mountinfo").read()

    # pins made before the tmpfs existed (plain files in the directory) are kept by up and dropped by down
    os.makedirs(uts)
    for host in ("a", "old"):
        open(f"{uts}/{host}", "w").close()
        sh(f"unshare --uts={uts}/{host} hostname {host}")
    nslab("up", "-f", lab_file(LAB))
    assert os.stat(uts).st_dev == os.stat("/run/nslab/dn").st_dev
    out = sh(f"nsenter --uts={uts}/b hostname").stdout.strip()
    assert out == "bee"
    nslab("down", "dn")
    assert not os.path.exists("/run/nslab/dn")
    assert "/run/nslab/dn" not in open("/proc/self/mountinfo").read()
