"""`nslab capture` on the real kernel, in throwaway hosts, with real traffic: two lab hosts into one pcapng
that tcpdump reads, a filter, -c, -w - streaming, bad input, and a Docker container whose image has no tools
(the engine and image of test_docker.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from docker_engine import IMAGE, docker
from labs import NSLAB
from labs import nslab as run_nslab
from nslab.tools.capture import pcapng
from sandbox import sh

LAB = "name: cap\nnetworks: {front: {}}\nhosts:\n  web1: {networks: [front]}\n  web2: {networks: [front]}\n"


def nslab(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_nslab(*args, check=check, timeout=60)


def start_capture(host, *args: str, binary: bool = False) -> subprocess.Popen:
    """`nslab capture ARGS` in the background, returned once its sockets are open (it says so on stderr)."""
    proc = host.popen([NSLAB, "capture", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=not binary)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert "capturing on" in (first if isinstance(first, str) else first.decode()), first
    return proc


def finish(proc: subprocess.Popen) -> tuple[str | bytes, str]:
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out, err if isinstance(err, str) else err.decode()


@pytest.fixture
def lab(host, labs):
    labs.up(LAB, timeout=60)
    return host


def web2_address() -> str:
    return sh("ip -n cap-web2 -4 -o addr show eth0").stdout.split()[3].split("/")[0]


def test_two_hosts_into_one_pcapng_that_tcpdump_reads(lab, tmp_path):
    out = tmp_path / "two.pcapng"
    proc = start_capture(lab, "web1", "cap/web2:eth0", "icmp", "-c", "12", "-w", str(out))
    sh(f"ip netns exec cap-web1 ping -c 4 -i 0.2 {web2_address()}")  # 16 ICMP packets seen in all
    _, err = finish(proc)
    assert "12 packets captured, 0 dropped by the kernel" in err
    data = out.read_bytes()
    assert sorted(pcapng.interface_names(data)) == ["cap/web1:eth0", "cap/web2:eth0"]
    assert {iface for iface, _, _ in pcapng.packets(data)} == {0, 1}  # both interfaces saw packets
    read = sh(f"tcpdump -n -r {out}")
    lines = read.stdout.splitlines()
    assert len(lines) == 12 and all("ICMP echo" in line for line in lines), read.stdout


def test_filter_and_count_in_line_mode(lab):
    proc = start_capture(lab, "web2", "udp", "port", "9999", "-c", "3")
    target = web2_address()
    sh(f"ip netns exec cap-web1 ping -c 2 -i 0.2 {target}")  # not matched by the filter
    send = (f"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"[s.sendto(b'x', ('{target}', 9999)) for _ in range(5)]")
    sh(f"ip netns exec cap-web1 {sys.executable} -c \"{send}\"")
    out, err = finish(proc)
    lines = str(out).splitlines()
    assert len(lines) == 3, out  # -c 3 of the 5 datagrams
    assert all(f"→ {target}:9999 UDP len 1" in line and " cap/web2:eth0 < " in line for line in lines), out
    assert "3 packets captured" in err


def test_stream_to_stdout_pcapng(lab, tmp_path):
    proc = start_capture(lab, "web1:any", "-w", "-", "-c", "4", "icmp", binary=True)
    sh(f"ip netns exec cap-web1 ping -c 2 -i 0.2 {web2_address()}")
    out, _ = finish(proc)
    assert isinstance(out, bytes)
    read = subprocess.run(["tcpdump", "-n", "-r", "-"], input=out, capture_output=True)
    assert len(read.stdout.splitlines()) == 4, read
    assert pcapng.interface_names(out) == ["cap/web1:eth0"]  # `any`: described as each interface shows up


def test_bad_input_exits_2(lab):
    bad = nslab("capture", "web1", "tcp", "port", "banana", check=False)
    assert bad.returncode == 2 and "filter 'tcp port banana'" in bad.stderr, bad.stderr
    unknown_if = nslab("capture", "web1:eth9", check=False)
    assert unknown_if.returncode == 2 and "no interface 'eth9'" in unknown_if.stderr, unknown_if.stderr
    unknown = nslab("capture", "nosuch", check=False)
    assert unknown.returncode == 2 and "nosuch" in unknown.stderr


@pytest.mark.docker
def test_container_without_tools(containers, tmp_path):
    app = containers(IMAGE, "sleep", "300")  # busybox with sh, httpd and sleep only: no tcpdump, no ip
    gateway = docker("inspect", "-f", "{{.NetworkSettings.Gateway}}", app).stdout.strip()
    out = tmp_path / "app.pcapng"
    proc = subprocess.Popen([NSLAB, "capture", f"container:{app}", "udp port 7777", "-c", "2", "-w", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stderr is not None and "capturing on" in proc.stderr.readline()
        send = (f"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                f"[s.sendto(b'hi', ('{gateway}', 7777)) for _ in range(3)]")
        nslab("exec", f"container:{app}", "--", sys.executable, "-c", send)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    data = out.read_bytes()
    assert pcapng.interface_names(data) == [f"container:{app}:eth0"]
    read = sh(f"tcpdump -n -r {out}")
    assert len(read.stdout.splitlines()) == 2 and f"> {gateway}.7777: UDP" in read.stdout, read.stdout
