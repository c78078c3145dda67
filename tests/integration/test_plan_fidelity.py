"""Issue 10 acceptance: the plan nslab prints is the change it makes, and a failed change leaves nothing.

Both tests compare *snapshots* of a throwaway host (tests/sandbox.py): for the machine and for every named
network namespace except ``wan`` -- links (kind, master, alias, addrgenmode, hairpin, up), addresses, IPv4 and
IPv6 routes of the main table, the sysctls nslab touches, the nft ruleset -- plus the namespaces in
/run/netns, the mounts under /run/netns, /run/nslab and /etc/netns, every file under /etc/netns and the
hostname of every UTS pin (/run/nslab/<lab>/uts/<host>). What legitimately differs between two runs
(ifindexes, MAC-derived link-local addresses, peer-group numbers, nft handles, order) is normalized away.
nslab's own records (/run/nslab/<lab>/state.json, .lock, .firewall.json, logs) and the supervisor stay out:
the dry-run names them as comments, they are not part of the change a person would type.

A failure prints the differences section by section, as a unified diff.
"""

from __future__ import annotations

import difflib
import glob
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from labfiles import lab_text
from labs import nslab
from sandbox import PRIVATE_DIRS, WAN, ThrowawayHost

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"

# A NAT network, an internal network (with an MTU), a published port, a point-to-point link (with an MTU), a
# hostname, a static route, a chosen MAC address and MTU, a sysctl inside a host; no `run:`, so no supervisor
# is involved and the dry-run is the whole change.
FIDELITY_LAB = """\
name: fid
networks:
  front: {subnet: 10.61.0.0/24}
  secure: {internal: true, mtu: 9000}
hosts:
  web:
    networks: {front: {mac: "02:aa:00:00:00:01", mtu: 1400}}
    publish: ["6000:8080"]
    routes: [{to: 10.99.0.0/16, via: 10.61.0.1}]
  db:
    networks: [secure]
    hostname: database
  peer:
    networks: [front]
    sysctls: {net.ipv4.ip_forward: 1}
links:
  - {endpoints: [peer, db], mtu: 1280}
"""
# Dual stack: an automatic /64 from the machine's ULA range, a written subnet6 with a fixed address6, an
# internal dual-stack network, a port published on both families (its [::1] side is relayed by the supervisor,
# named as a comment), a partition (IPv6 drops too).
DUAL_STACK_LAB = """\
name: fid6
networks:
  front: {ipv6: true}
  back: {subnet: 10.62.0.0/24, subnet6: "fd00:62::/64"}
  secure: {internal: true, ipv6: true}
hosts:
  web:
    networks: [front]
    publish: ["6000:8080"]
  api:
    networks: {back: {address6: "fd00:62::10"}}
  vault:
    networks: [secure, back]
links:
  - {endpoints: [web, api], ipv6: true}
partitions:
  - [web, api]
"""
#: MAC addresses the lab file chooses start with this; the others are random and left out of the snapshot.
CHOSEN_MAC = "02:aa:"

# An internal-only lab with a service, and the same lab grown by a NAT network (which needs ip_forward).
KEPT_HOSTS = {"svc": "networks: [quiet], run: exec sleep 1000", "other": "networks: [quiet]"}
KEPT_LAB = lab_text("keep", {"quiet": ""}, internal=["quiet"], hosts=KEPT_HOSTS)
GROWN_LAB = lab_text("keep", {"quiet": "", "outside": ""}, internal=["quiet"],
                     hosts={**KEPT_HOSTS, "newcomer": "networks: [outside]"})

Snapshot = dict[str, list[str]]


# --- running things --------------------------------------------------------------------------------
def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


def outcome(what: str, result: subprocess.CompletedProcess) -> str | None:
    """None when ``result`` succeeded, else a short report of how it failed (the end of its stderr)."""
    if result.returncode == 0:
        return None
    tail = "\n".join(result.stderr.strip().splitlines()[-15:])
    return f"{what} exited with status {result.returncode}:\n{tail}"


def in_netns(namespace: str | None, argv: list[str]) -> list[str]:
    """``argv`` in a named network namespace (None: the machine). /proc/sys/net shows the reader's netns."""
    return argv if namespace is None else ["nsenter", f"--net=/run/netns/{namespace}", *argv]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@contextmanager
def throwaway_host() -> Iterator[ThrowawayHost]:
    """A throwaway host entered and left by the test itself, so that one test can use two in sequence."""
    h = ThrowawayHost().enter()
    try:
        yield h
    finally:
        h.leave()


def assert_sandbox_intact(lab: str) -> None:
    """The throwaway host still has its private /run/netns, /etc/netns and /run/nslab. Removing the real
    directory (rmdir by another test session's ThrowawayHost.leave(), on the same machine) detaches the tmpfs
    mounted on it in every mount namespace: from then on nslab writes to the machine's directories, and this
    test's snapshots compare the wrong things. Then what ``lab`` wrote there is removed and the test fails."""
    points = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    lost = [d for d in PRIVATE_DIRS if d not in points]
    if lost:
        nslab("down", lab, check=False)
        for path in glob.glob(f"/etc/netns/{lab}-*"):
            shutil.rmtree(path, ignore_errors=True)
        pytest.fail(
            f"the throwaway host lost its private {', '.join(lost)} during the test (is another test session "
            "entering and leaving throwaway hosts on this machine?): the comparison would be void",
            pytrace=False,
        )


# --- the snapshot ----------------------------------------------------------------------------------
def _json(namespace: str | None, argv: list[str]) -> list[dict[str, Any]]:
    out = run(in_netns(namespace, argv)).stdout.strip()
    return json.loads(out) if out else []


def link_lines(namespace: str | None) -> list[str]:
    """``ip -d link`` reduced to name, kind, master, alias, addrgenmode, hairpin of bridge ports, up/down."""
    lines = []
    for link in _json(namespace, ["ip", "-j", "-d", "link", "show"]):
        info = link.get("linkinfo", {})
        fields = [
            link["ifname"],
            f"kind={info.get('info_kind', '-')}",
            f"master={link.get('master', '-')}",
            f"alias={link.get('ifalias', '-')}",
            f"addrgenmode={link.get('inet6_addr_gen_mode', '-')}",
            "up" if "UP" in link.get("flags", []) else "down",
            f"mtu={link.get('mtu')}",
        ]
        if str(link.get("address", "")).startswith(CHOSEN_MAC):
            fields.append(f"mac={link['address']}")
        if info.get("info_slave_kind") == "bridge":
            fields.append(f"hairpin={'on' if info.get('info_slave_data', {}).get('hairpin') else 'off'}")
        lines.append(" ".join(fields))
    return sorted(lines)


def _address(a: dict[str, Any]) -> str:
    if a.get("family") == "inet6" and a.get("scope") == "link":
        return f"<link-local>/{a['prefixlen']}"  # derived from a random MAC address: only its presence counts
    return f"{a['local']}/{a['prefixlen']}"


def address_lines(namespace: str | None) -> list[str]:
    """``ip -br addr``: name (no @ifindex), state, the addresses sorted."""
    lines = []
    for link in _json(namespace, ["ip", "-j", "addr", "show"]):
        addresses = sorted(_address(a) for a in link.get("addr_info", []))
        lines.append(" ".join([link["ifname"], link.get("operstate", "?"), *addresses]))
    return sorted(lines)


def route_lines(namespace: str | None, family: str) -> list[str]:
    out = run(in_netns(namespace, ["ip", family, "route", "show", "table", "main"])).stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def sysctl_lines(namespace: str | None) -> list[str]:
    """ip_forward, the addr_gen_mode new interfaces get, and route_localnet of nslab's bridges (nsl*), as this
    namespace sees them."""
    keys = ["net.ipv4.ip_forward", "net.ipv6.conf.default.addr_gen_mode", "net.ipv6.conf.all.forwarding",
            "net.ipv6.conf.default.keep_addr_on_down", "net.ipv6.conf.default.accept_dad"]
    if namespace is None:
        bridges = [line.split()[0] for line in link_lines(None) if line.startswith("nsl") and "kind=bridge" in line]
        keys += [f"net.ipv4.conf.{b}.route_localnet" for b in bridges]
        keys += [f"net.ipv6.conf.{b}.accept_ra" for b in bridges]
    paths = ["/proc/sys/" + key.replace(".", "/") for key in keys]
    values = run(in_netns(namespace, ["cat", *paths])).stdout.split()
    return [f"{key}={value}" for key, value in zip(keys, values, strict=False)]


def nft_lines(namespace: str | None) -> list[str]:
    out = run(in_netns(namespace, ["nft", "-s", "list", "ruleset"])).stdout
    return [re.sub(r"\s*# handle \d+", "", line) for line in out.splitlines()]


def namespace_sections(namespace: str | None) -> Snapshot:
    where = "machine" if namespace is None else f"netns {namespace}"
    return {
        f"{where}: links (ip -d link)": link_lines(namespace),
        f"{where}: addresses (ip -br addr)": address_lines(namespace),
        f"{where}: IPv4 routes (table main)": route_lines(namespace, "-4"),
        f"{where}: IPv6 routes (table main)": route_lines(namespace, "-6"),
        f"{where}: sysctls": sysctl_lines(namespace),
        f"{where}: nft -s list ruleset": nft_lines(namespace),
    }


def mount_lines() -> list[str]:
    """Mounts under /run/netns, /run/nslab and /etc/netns: point, options, type, super options (no ids)."""
    lines = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        point, options = before.split()[4:6]
        fstype, _source, superopts = after.split()[:3]
        if point.startswith(("/run/netns", "/run/nslab", "/etc/netns")):
            lines.append(f"{point} {fstype} {options} {superopts}")
    return sorted(lines)


def etc_netns_sections() -> Snapshot:
    """Every entry under /etc/netns, and the content of every file there (path -> lines)."""
    entries, files = [], {}
    for dirpath, dirnames, filenames in os.walk("/etc/netns"):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            entries.append(path + ("/" if name in dirnames else ""))
        for name in filenames:
            path = os.path.join(dirpath, name)
            files[f"file {path}"] = Path(path).read_text(errors="replace").splitlines()
    return {"/etc/netns entries": sorted(entries), **dict(sorted(files.items()))}


def hostname_lines() -> list[str]:
    """The hostname kept in each UTS pin /run/nslab/<lab>/uts/<host>."""
    lines = []
    for pin in sorted(glob.glob("/run/nslab/*/uts/*")):
        result = run(["nsenter", f"--uts={pin}", "hostname"])
        lines.append(f"{pin} -> {result.stdout.strip() if result.returncode == 0 else 'not a UTS namespace pin'}")
    return lines


def snapshot() -> Snapshot:
    """What the change made, on the machine and in every namespace named in /run/netns except ``wan``."""
    namespaces = sorted(os.listdir("/run/netns"))
    sections: Snapshot = {"namespaces (/run/netns)": namespaces}
    for namespace in [None, *(n for n in namespaces if n != WAN)]:
        sections.update(namespace_sections(namespace))
    sections["mounts"] = mount_lines()
    sections.update(etc_netns_sections())
    sections["hostnames (nsenter --uts=PIN hostname)"] = hostname_lines()
    return sections


def settled_snapshot(timeout: float = 10.0) -> Snapshot:
    """A snapshot once two in a row agree: carrier, link-local addresses and the dismantling of unpinned
    namespaces (their machine-side veths) happen asynchronously, shortly after the commands returned."""
    deadline = time.monotonic() + timeout
    previous = snapshot()
    while True:
        time.sleep(0.3)
        current = snapshot()
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current


def diff(left: Snapshot, right: Snapshot, left_name: str, right_name: str) -> str:
    """The sections that differ, each as a unified diff ('-' only after ``left_name``, '+' only after
    ``right_name``); empty when the snapshots are equal."""
    out = []
    for section in [*left, *(s for s in right if s not in left)]:
        a, b = left.get(section), right.get(section)
        if a == b:
            continue
        if a is None or b is None:
            only, sign = (right_name, "+") if a is None else (left_name, "-")
            lines = b if a is None else a
            out.append(f"## {section}: only after {only}" + ("" if lines else " (empty)"))
            out += [f"{sign} {line}" for line in lines]
            continue
        out.append(f"## {section}")
        for line in list(difflib.unified_diff(a, b, lineterm="", n=1))[2:]:
            out.append("  ..." if line.startswith("@@") else f"{line[:1]} {line[1:]}")
    return "\n".join(out)


def processes_in_lab_namespaces() -> list[str]:
    """Processes in any named namespace but ``wan`` or in any UTS pin: a lab without ``run:`` has none."""
    inodes = {os.stat(f"/run/netns/{n}").st_ino for n in os.listdir("/run/netns") if n != WAN}
    inodes |= {os.stat(pin).st_ino for pin in glob.glob("/run/nslab/*/uts/*")}
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if {os.stat(f"/proc/{pid}/ns/{kind}").st_ino for kind in ("net", "uts")} & inodes:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
                found.append(f"{pid} {' '.join(argv).strip()}")
        except OSError:
            continue
    return found


def machine_lab_links() -> set[str]:
    """nslab's bridges (nsl*) and host veths (nsv*) on the machine."""
    return {line.split()[0] for line in link_lines(None) if line.startswith(("nsl", "nsv"))}


# --- services and faults ---------------------------------------------------------------------------
def lab_status(name: str) -> dict[str, Any]:
    (lab,) = json.loads(nslab("status", name, "--json").stdout)["labs"]
    return lab


def services(name: str) -> list[dict[str, Any]]:
    return lab_status(name)["hostsetup"]["services"]


def services_running(name: str) -> bool:
    current = services(name)
    return bool(current) and all(s["state"] == "running" and s["pid"] for s in current)


def writable(path: str) -> bool:
    """Whether ``path`` takes a write (of the value it already holds, so nothing changes)."""
    return run(["sh", "-c", f'v=$(cat {path}) && echo "$v" > {path}']).returncode == 0


@contextmanager
def read_only(path: str) -> Iterator[None]:
    """``path`` read-only in this throwaway host's private mount namespace (the machine keeps it writable)."""
    run(["mount", "--bind", "-o", "ro", path, path], check=True)
    try:
        if writable(path):  # an older mount(8) binds first and needs the read-only remount said again
            run(["mount", "-o", "remount,bind,ro", path], check=True)
        assert not writable(path), f"could not make {path} read-only"
        yield
    finally:
        run(["umount", path], check=True)


# --- the tests -------------------------------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.parametrize("lab_text", [FIDELITY_LAB, DUAL_STACK_LAB], ids=["ipv4", "dual-stack"])
def test_the_dry_run_is_the_change(tmp_path, lab_text):
    """`nslab up --dry-run` prints the change: run as a script with `bash -e` on one fresh throwaway host, it
    leaves that host exactly as `nslab up` leaves another one -- bridges, veths and their aliases,
    addrgenmode and hairpin, addresses, routes (with their proto), sysctls, the nft table, /etc/netns files,
    the UTS pins and their hostnames."""
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text(lab_text)
    name = "fid" if lab_text == FIDELITY_LAB else "fid6"
    problems = []

    with throwaway_host():
        script = nslab("up", "--dry-run", "-f", str(lab_file)).stdout
        ula = Path("/run/nslab/.ula6").read_text() if os.path.exists("/run/nslab/.ula6") else None
        script_file = tmp_path / "up.sh"
        script_file.write_text(script)
        problems.append(outcome("bash -e <the dry-run script>", run(["bash", "-e", str(script_file)])))
        by_script = settled_snapshot()
        assert_sandbox_intact(name)
        if left := processes_in_lab_namespaces():
            problems.append(f"processes left running by the dry-run script: {left}")
        # Leaving drops this host's namespaces, links, rules, mounts and its private /etc/netns tmpfs.

    with throwaway_host():
        if ula is not None:  # the machine's ULA range, picked once (by the dry-run): the same "machine" here
            Path("/run/nslab/.ula6").write_text(ula)
        problems.append(outcome("nslab up", nslab("up", "-f", str(lab_file), check=False)))
        by_up = settled_snapshot()
        assert_sandbox_intact(name)
        if left := processes_in_lab_namespaces():
            problems.append(f"processes left running by `nslab up` (the lab has no `run:`): {left}")
        problems.append(outcome("nslab down", nslab("down", name, check=False)))
        if sorted(os.listdir("/run/netns")) != [WAN]:
            problems.append(f"`nslab down` left namespaces: {sorted(os.listdir('/run/netns'))}")

    made = json.dumps(by_up)
    if name == "fid":
        wanted: tuple[str, ...] = ("mac=02:aa:00:00:00:01", "mtu=1400", "mtu=9000", "mtu=1280",
                                   "10.99.0.0/16 via 10.61.0.1 dev eth0 proto static")
        if "net.ipv4.ip_forward=1" not in by_up.get("netns fid-peer: sysctls", []):
            problems.append("ip_forward is not 1 inside host peer")
    else:
        wanted = ("fd00:62::10/64", "fd00:62::1/64", "default via fd00:62::1 dev eth0 proto static",
                  "net.ipv6.conf.all.forwarding=1", "ip6 daddr", "addrgenmode=eui64", "<link-local>/64")
    problems += [f"`nslab up` made no {expected!r}" for expected in wanted if expected not in made]
    differences = diff(by_script, by_up, "the dry-run script", "nslab up")
    if differences:
        problems.append(f"what the dry-run script made differs from what `nslab up` made:\n{differences}")
    problems = [p for p in problems if p]
    if problems:
        pytest.fail("\n\n".join(problems) + f"\n\nthe dry-run script ({script_file}):\n{script}", pytrace=False)


def test_a_failed_converge_leaves_the_previous_lab_as_it_was(host, tmp_path):
    """A converge that fails half-way (here: net.ipv4.ip_forward cannot be written, which the new NAT
    network needs) exits 1 naming the cause and leaves the lab that was up exactly as it was: the same
    namespaces, links, addresses, routes, ruleset, /etc/netns files and hostnames, only the old hosts in
    `status`, its service still running, no new bridge or veth. Once the fault is gone the same `up` works."""
    lab_file = tmp_path / "nslab.yaml"
    lab_file.write_text(KEPT_LAB)
    Path(IP_FORWARD).write_text("0")  # this throwaway host's own value: the NAT network must have to set it
    nslab("up", "-f", str(lab_file))
    assert wait_for(lambda: services_running("keep")), f"the service never ran: {services('keep')}"
    before = settled_snapshot()
    assert_sandbox_intact("keep")
    services_before = services("keep")
    links_before = machine_lab_links()

    with read_only(IP_FORWARD):
        lab_file.write_text(GROWN_LAB)
        failed = nslab("up", "-f", str(lab_file), check=False)
        assert failed.returncode == 1, f"`nslab up` should fail with status 1:\n{failed.stdout}\n{failed.stderr}"
        assert [line for line in failed.stderr.splitlines() if "ip_forward" in line], failed.stderr
        wait_for(lambda: machine_lab_links() == links_before)  # veths of unpinned namespaces go asynchronously
        after = settled_snapshot()
        assert_sandbox_intact("keep")
        status = lab_status("keep")
        services_after = services("keep")

        report = [diff(before, after, "the lab before", "the failed converge")]
        report[0] = report[0] and f"`nslab up` said:\n{failed.stderr.strip()}\n\n{report[0]}"
        hosts = [h["name"] for h in status["hosts"]]
        if hosts != ["svc", "other"]:
            report.append(f"status --json hosts: {hosts}, expected ['svc', 'other']")
        new_links = machine_lab_links() - links_before
        if new_links:
            report.append(f"new bridges/veths left on the machine: {sorted(new_links)}")
        if [s["state"] for s in services_after] != ["running"]:
            report.append(f"the service is not running any more: {services_after}")
        same_pid = [s["pid"] for s in services_after] == [s["pid"] for s in services_before]
        print(f"\nservice before: {services_before}\nservice after:  {services_after}\nsame pid: {same_pid}")
        report = [r for r in report if r]
        if report:
            pytest.fail("the failed converge changed the lab:\n" + "\n\n".join(report), pytrace=False)

    # the fault is gone: the same converge now succeeds and adds the new host
    nslab("up", "-f", str(lab_file))
    status = lab_status("keep")
    assert [h["name"] for h in status["hosts"]] == ["svc", "other", "newcomer"]
    assert all(h["present"] for h in status["hosts"])
    assert os.path.exists("/run/netns/keep-newcomer")
    assert Path(IP_FORWARD).read_text().strip() == "1"
    nslab("down", "keep")
    assert sorted(os.listdir("/run/netns")) == [WAN]
