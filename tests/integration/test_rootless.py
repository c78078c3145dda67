"""Issue 26: rootless labs. nslab as uid 65534 in a throwaway host (a private 0666 /dev/net/tun node and private
/etc/subuid, /etc/subgid bound in the host's own mount namespace): the user's keeper (daemons/keeper.py) holds
the user's namespaces, slirp4netns the way out; the labs are the user's alone, and ``down`` of the last one
leaves nothing of the user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from tests.acceptance.docblocks import code_blocks

from labs import NSLAB
from sandbox import NOBODY, WAN_ADDRESS, RootlessUser, sh

#: The README's quick-start lab, as the README shows it.
QUICK_START = next(b.text for b in code_blocks("yaml") if b.text.startswith("# nslab.yaml"))

SHOP = """\
name: shop
networks:
  front: {}
hosts:
  web: {networks: [front], publish: ["6000:8080"], run: "exec python3 -m http.server 8080 --bind 0.0.0.0"}
  db: {networks: [front]}
"""


@pytest.fixture
def user(host, user_nslab):
    if not shutil.which("slirp4netns"):
        pytest.skip("slirp4netns is not installed (dev/setup.sh installs it)")
    person = RootlessUser(user_nslab).start()
    try:
        yield person
    finally:
        person.stop()


def _machine(host) -> dict[str, str]:
    """The throwaway host's own namespaces and ruleset (what a user's lab must not touch)."""
    return {"netns": sh("ip netns list").stdout, "links": sh("ip -o link show | awk -F': ' '{print $2}'").stdout,
            "nft": sh("nft list ruleset").stdout}


def _nothing_left(user: RootlessUser, user_ns: int) -> None:
    """No process of the user (keeper, services, slirp4netns), nothing in /run/user/UID (nor in the
    XDG_RUNTIME_DIR the environment named, which nslab ignores), and of the user's files only the kept lab files
    in ~/.cache/nslab (and what the test wrote)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (user.processes(user_ns) or _slirps(user) or user.started_here()):
        time.sleep(0.1)
    assert user.processes(user_ns) == [], "a process of the user's namespaces is left"
    assert _slirps(user) == [], "slirp4netns is left"
    assert user.started_here() == [], "a process of the user is left"
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and os.listdir(user.runtime_dir):
        time.sleep(0.1)
    assert os.listdir(user.runtime_dir) == [], "a file of the user is left in /run/user/UID"
    assert os.listdir(f"{user.home}/run") == []  # (XDG_RUNTIME_DIR: not where nslab keeps anything)
    kept = os.path.join(user.home, "work", ".cache", "nslab")
    for parent, dirs, files in os.walk(f"{user.home}/work"):
        for name in dirs + files:
            path = os.path.join(parent, name)
            assert path in user.written or path.startswith(kept) or kept.startswith(path + "/"), \
                f"{path} is left"


def _slirps(user: RootlessUser) -> list[int]:
    """The user's slirp4netns processes started in this throwaway host (another session's are not ours)."""
    found = []
    for pid in user.started_here():
        try:
            with open(f"/proc/{pid}/comm") as fh:
                if fh.read().strip() == "slirp4netns":
                    found.append(pid)
        except OSError:
            continue
    return found


def _keeper_ns(user: RootlessUser) -> int:
    pid = user.keeper()
    assert pid is not None

    return os.stat(f"/proc/{pid}/ns/user").st_ino


def test_quick_start_lab_comes_up_and_hosts_ping_by_name(user, host):
    before = _machine(host)
    user.write("nslab.yaml", QUICK_START)
    up = user.run("up")
    assert up.returncode == 0, up.stderr
    user_ns = _keeper_ns(user)
    ping = user.run("exec", "web1", "--", "ping", "-c1", "-W2", "web2")
    assert ping.returncode == 0 and "1 received" in ping.stdout, ping.stdout + ping.stderr
    linked = user.run("exec", "demo/db", "--", "ping", "-c1", "-W2", "web1")
    assert linked.returncode == 0, linked.stdout + linked.stderr
    whoami = user.run("exec", "web1", "--", "id", "-u")
    assert whoami.stdout.strip() == "0"  # root of the lab (the user's own uid outside)
    status = user.run("status", "demo")
    assert status.returncode == 0 and "web2" in status.stdout, status.stderr
    assert "demo" not in sh("ip netns list").stdout  # the user's hosts are in the user's namespaces
    assert _machine(host) == before
    down = user.run("down", "demo")
    assert down.returncode == 0, down.stderr
    _nothing_left(user, user_ns)
    assert _machine(host) == before


def test_nat_egress_and_published_port(user, host):
    before = _machine(host)
    host.popen(host.in_wan(["python3", "-m", "http.server", "80", "--bind", WAN_ADDRESS, "--directory", "/etc"]),
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    user.write("nslab.yaml", SHOP)
    up = user.run("up", "--wait", "--timeout", "20")
    assert up.returncode == 0, up.stderr
    user_ns = _keeper_ns(user)
    fetch = user.run("exec", "db", "--", "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
                     f"http://{WAN_ADDRESS}/hostname")
    assert fetch.stdout == "200", fetch.stdout + fetch.stderr
    answered = ""
    for _ in range(50):  # the service listens a moment after `up`
        answered = sh("curl -sS -m 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:6000/", check=False).stdout
        if answered == "200":
            break
        time.sleep(0.1)
    assert answered == "200"
    resolver = user.run("exec", "db", "--", "cat", "/etc/resolv.conf")
    assert "127.0.0.53" not in resolver.stdout
    down = user.run("down", "shop")
    assert down.returncode == 0, down.stderr
    _nothing_left(user, user_ns)
    assert _machine(host) == before


@pytest.mark.parametrize(("extra", "field", "said"), [
    ("resources: {memory: 64M}", "hosts.a.resources", "root's cgroups"),
    ("image: alpine", "hosts.a.image", "Docker"),
    ("user: nobody\n    run: exec sleep 100", "hosts.a.user", "subordinate ids"),
    ("publish: ['80:80']", "hosts.a.publish[0]", "net.ipv4.ip_unprivileged_port_start"),
    ("macvlan: {parent: eth0}", "hosts.a.macvlan[0]", "macvlan: on eth0 needs the machine's interfaces"),
    ("", "networks.n.external", "external: eth1 puts one of the machine's interfaces on the lab"),
])
def test_what_needs_root_is_refused_before_any_change(user, extra, field, said):
    network = "{external: eth1, subnet: 192.168.7.0/24}" if "external" in field else "{}"
    user.write("nslab.yaml", f"name: r\nnetworks: {{n: {network}}}\nhosts:\n  a:\n    networks: [n]\n    {extra}\n")
    result = user.run("up")
    assert result.returncode == 2, result.stderr
    assert field in result.stderr and said in result.stderr, result.stderr
    assert "has no interface" not in result.stderr and result.stderr.count(field) == 1, result.stderr
    assert "Traceback" not in result.stderr
    time.sleep(1.5)  # the keeper started for this `up` leaves with no lab
    _nothing_left(user, 0)


def test_no_slirp4netns_is_one_line_and_nothing_left(user, host):
    user.write("nslab.yaml", "name: x\nhosts: {a: {}}\n")
    bare = f"{user.home}/bin"
    sh(f"mkdir {bare} && ln -s /usr/bin/python3 {bare}/python3")
    for tool in ("ip", "nft", "setpriv", "env"):
        found = shutil.which(tool)
        if found:
            sh(f"ln -s {found} {bare}/{tool}")
    result = user.run("up", path=f"{bare}")
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "slirp4netns" in result.stderr and "install" in result.stderr
    _nothing_left(user, 0)


def test_tun_without_access_is_one_line_and_nothing_left(user, host):

    os.chmod(f"{user.home}/tun", 0o600)
    user.write("nslab.yaml", "name: x\nhosts: {a: {}}\n")
    result = user.run("up")
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "/dev/net/tun" in result.stderr, result.stderr
    _nothing_left(user, 0)


def test_a_user_sees_only_their_own_labs(user, labs):
    labs.up("name: rootlab\nhosts: {a: {}}\n")
    user.write("nslab.yaml", "name: mine\nhosts: {a: {}}\n")
    assert user.run("up").returncode == 0
    user_ns = _keeper_ns(user)
    quiet = user.run("status", "-q")
    assert quiet.stdout.split() == ["mine"], quiet.stderr
    other = user.run("exec", "rootlab/a", "--", "true")
    assert other.returncode != 0 and "rootlab" in other.stderr and other.stderr.count("\n") == 1, other.stderr
    assert user.run("down", "mine").returncode == 0
    _nothing_left(user, user_ns)


def test_user_namespaces_refused_is_one_line_and_nothing_left(user):
    """In a user namespace made by root whose own user.max_user_namespaces is 0 (that limit is per user
    namespace: the machine's stays as it is)."""
    user.write("nslab.yaml", "name: x\nhosts: {a: {}}\n")
    env = " ".join(f"{k}={v}" for k, v in user.env().items())
    inner = (f"echo 0 > /proc/sys/user/max_user_namespaces && cd {user.home}/work && exec setpriv "
             f"--reuid={NOBODY} --regid={NOBODY} --clear-groups env -i {env} {user.nslab} up")
    proc = subprocess.Popen(["unshare", "-U", "sh", "-c", f"read go; exec sh -c '{inner}'"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(100):  # mapped once unshare has made the namespace (its sh then waits on stdin)
        if _own_user_ns(proc.pid):
            break
        time.sleep(0.02)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{proc.pid}/{name}", "w") as fh:
            fh.write("0 0 65535\n")
    _, stderr = proc.communicate("go\n", timeout=60)
    assert proc.returncode == 1, stderr
    assert stderr.count("\n") == 1 and "user namespaces" in stderr and "max_user_namespaces" in stderr, stderr
    _nothing_left(user, 0)


def _own_user_ns(pid: int) -> bool:

    return os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino


def test_connect_is_refused(user):
    user.write("nslab.yaml", "name: c\nnetworks: {n: {}}\nhosts: {a: {networks: [n]}}\n")
    assert user.run("up").returncode == 0
    user_ns = _keeper_ns(user)
    result = user.run("connect", "c/n", "container:nope")
    assert result.returncode == 2 and "root" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert user.run("down", "c").returncode == 0
    _nothing_left(user, user_ns)


def test_root_sees_users_labs_and_gc_stops_them(user, host):
    user.write("nslab.yaml", "name: mine\nnetworks: {n: {}}\nhosts: {a: {networks: [n], run: exec sleep 1000}}\n")
    assert user.run("up").returncode == 0
    user_ns = _keeper_ns(user)
    listed = subprocess.run([NSLAB, "ls", "-o", "json"], capture_output=True, text=True)
    users = json.loads(listed.stdout)["users"]
    assert [(u["user"], u["labs"]) for u in users] == [("nobody", ["mine"])], listed.stderr
    table = subprocess.run([NSLAB, "ls"], capture_output=True, text=True).stdout
    assert "user nobody (uid 65534" in table and "mine" in table
    dry = subprocess.run([NSLAB, "gc", "--dry-run", "--user", "nobody"], capture_output=True, text=True)
    assert "would stop the rootless labs of nobody" in dry.stdout, dry.stderr
    assert user.processes(user_ns)  # nothing done by the dry run
    done = subprocess.run([NSLAB, "gc", "--user", "nobody"], capture_output=True, text=True)
    assert done.returncode == 0 and "stopped the rootless labs of nobody" in done.stdout, done.stderr
    _nothing_left(user, user_ns)


@pytest.fixture
def user_with_subids(host, user_nslab):
    if not shutil.which("slirp4netns") or not shutil.which("newuidmap"):
        pytest.skip("slirp4netns and newuidmap are needed (dev/setup.sh installs them)")
    person = RootlessUser(user_nslab, subids=True).start()
    try:
        yield person
    finally:
        person.stop()


def test_subordinate_ids_are_mapped_and_a_service_runs_as_another_user(user_with_subids):
    user = user_with_subids
    user.write("nslab.yaml", "name: s\nnetworks: {n: {}}\nhosts:\n  a:\n    networks: [n]\n    user: nobody\n"
                             "    run: exec sleep 1000\n")
    up = user.run("up", "--wait", "--timeout", "10")
    assert up.returncode == 0, up.stderr
    user_ns = _keeper_ns(user)
    keeper = user.keeper()
    with open(f"/proc/{keeper}/uid_map") as fh:
        assert fh.read().split() == ["0", str(NOBODY), "1", "1", "100000", "65536"]
    sleepers = [p for p in user.processes(user_ns) if open(f"/proc/{p}/comm").read().strip() == "sleep"]
    assert len(sleepers) == 1
    with open(f"/proc/{sleepers[0]}/status") as fh:
        uid = next(line.split()[1] for line in fh if line.startswith("Uid:"))
    assert uid == str(100000 + NOBODY - 1)  # nobody (65534) of the lab: the user's subordinate id
    assert user.run("down", "s").returncode == 0
    _nothing_left(user, user_ns)


def test_the_usual_commands_work_rootless(user):
    user.write("nslab.yaml", "name: u\nnetworks: {front: {}}\nhosts:\n  web: {networks: [front], run: "
                             "\"exec python3 -m http.server 8080\"}\n  db: {networks: [front]}\n")
    assert user.run("up", "--wait", "--timeout", "10").returncode == 0
    user_ns = _keeper_ns(user)
    status = user.run("status")
    assert "rootless (uid 65534): services in process groups" in status.stdout, status.stdout + status.stderr
    for args, said in ((["logs", "web", "-n", "1"], "start: exec python3"),
                       (["check", "u"], "6/6 cells as the lab implies"),
                       (["graph", "u"], "graph TD"),
                       (["impair", "web", "--delay", "20"], "delay 20ms"),
                       (["partition", "web", "db"], "cut web <-> db"),
                       (["heal", "u"], "healed 1 partition"),
                       (["link", "u/db", "down"], "down"),
                       (["link", "u/db", "up"], "up"),
                       (["trace", "db", "web:8080"], "verdict: reached"),
                       (["exec", "db", "--", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://web:8080/"],
                        "200")):
        result = user.run(*args)
        assert result.returncode == 0 and said in result.stdout, (args, result.stdout, result.stderr)
    shell = user.run("shell", "web", input="hostname\n")
    assert shell.stdout.strip() == "web", shell.stderr
    assert user.run("down", "u").returncode == 0
    _nothing_left(user, user_ns)


def test_an_old_pasta_is_passed_over_for_slirp4netns(user):
    """Debian 12's passt says ``pasta unknown version`` (older than 2023_12_04, the minimum): a pasta on PATH
    that says so (a script) leaves the way out to slirp4netns, and ``status`` says why."""
    bin_dir = f"{user.home}/bin"
    sh(f"mkdir {bin_dir} && printf '#!/bin/sh\\necho pasta unknown version\\n' > {bin_dir}/pasta && "
       f"chmod 755 {bin_dir}/pasta")
    user.write("nslab.yaml", "name: p\nnetworks: {n: {}}\nhosts: {a: {networks: [n]}}\n")
    up = user.run("up", path=f"{bin_dir}:{user.env()['PATH']}")
    assert up.returncode == 0, up.stderr
    user_ns = _keeper_ns(user)
    status = user.run("status", "p")
    assert ("the way out through slirp4netns (pasta unknown version is older than 2023_12_04)"
            in status.stdout), status.stdout + status.stderr
    assert _slirps(user), "slirp4netns is the way out"
    assert user.run("down", "p").returncode == 0
    _nothing_left(user, user_ns)


def test_without_run_netns_and_etc_netns_on_the_machine(user):
    """A machine where nobody ever ran `ip netns add` (no /run/netns) and without /etc/netns: the keeper makes
    them in its own mount namespace (an overlay over /run and /etc). Here they are hidden by root's overlays
    in the throwaway host's mount namespace (the user's /etc/subuid, /etc/subgid bound again on top)."""

    from nslab import linux

    hidden = []
    try:
        runtime = f"{user.home}/runtime"  # (the host's /run/user, bound back over the overlay on /run below)
        os.mkdir(runtime)
        linux.mount("/run/user", runtime, None, linux.MS_BIND | linux.MS_REC)
        hidden.append(runtime)
        for parent in ("/etc", "/run"):
            scratch = f"{user.home}/hide{parent.replace('/', '-')}"
            os.mkdir(scratch)
            linux.mount("tmpfs", scratch, "tmpfs", 0, "mode=700")
            hidden.append(scratch)
            os.mkdir(f"{scratch}/upper")
            os.mkdir(f"{scratch}/work")
            linux.mount("overlay", parent, "overlay", 0,
                        f"lowerdir={parent},upperdir={scratch}/upper,workdir={scratch}/work")
            hidden.append(parent)
            sh(f"rm -rf {parent}/netns")
        linux.mount(runtime, "/run/user", None, linux.MS_BIND | linux.MS_REC)
        hidden.append("/run/user")
        for name in ("subuid", "subgid"):
            if os.path.exists(f"/etc/{name}"):
                linux.mount(f"{user.home}/{name}", f"/etc/{name}", None, linux.MS_BIND)
                hidden.append(f"/etc/{name}")
        assert not os.path.exists("/run/netns") and not os.path.exists("/etc/netns")
        user.write("nslab.yaml", QUICK_START)
        up = user.run("up")
        assert up.returncode == 0, up.stderr
        user_ns = _keeper_ns(user)
        ping = user.run("exec", "web1", "--", "ping", "-c1", "-W2", "web2")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert not os.path.exists("/run/netns") and not os.path.exists("/etc/netns")  # only in the keeper's
        assert user.run("down", "demo").returncode == 0
        _nothing_left(user, user_ns)
    finally:
        for target in reversed(hidden):
            linux.umount(target)


DUAL = """\
name: six
networks:
  front: {ipv6: true}
hosts:
  web: {networks: [front], publish: ["6000:8080", "[::1]:6100:8080"], run: "exec python3 -m http.server 8080 --bind ::"}
"""


def _answer(url: str) -> str:
    answered = ""
    for _ in range(50):  # the service listens, and the keeper relays, a moment after `up`
        answered = sh(f"curl -sS -m 5 -o /dev/null -w '%{{http_code}}' '{url}'", check=False).stdout
        if answered == "200":
            break
        time.sleep(0.1)
    return answered


def test_dual_stack_published_port_answers_on_ipv6_loopback(user, host):
    """The keeper relays both families from sockets its binder made in the machine's namespace (slirp4netns
    1.2's port forwarding is IPv4-only): the IPv6 side reaches the host's IPv6 address."""
    before = _machine(host)
    user.write("nslab.yaml", DUAL)
    up = user.run("up", "--wait", "--timeout", "20")
    assert up.returncode == 0, up.stderr
    user_ns = _keeper_ns(user)
    listening = sh("ss -Hltn").stdout  # `up` nudged the keeper and waited: its relays are there
    assert "[::]:6000" in listening and "[::1]:6100" in listening, listening
    assert _answer("http://127.0.0.1:6000/") == "200"
    assert _answer("http://[::1]:6000/") == "200"
    assert _answer("http://[::1]:6100/") == "200"
    listening = sh("ss -Hltn").stdout
    assert "[::]:6000" in listening and "[::1]:6100" in listening, listening
    down = user.run("down", "six")
    assert down.returncode == 0, down.stderr
    _nothing_left(user, user_ns)
    assert ":6000 " not in sh("ss -Hltn").stdout
    assert _machine(host) == before


def test_run_publishes_ports_from_the_machine(user, host):
    """``nslab run -p`` as the user: its throwaway lab's port answers on the machine's 127.0.0.1 while the
    command runs, and nothing is left once it is stopped."""
    import os
    import signal

    before = _machine(host)
    env = [f"{k}={v}" for k, v in user.env().items()]
    run = subprocess.Popen(["setpriv", f"--reuid={user.uid}", f"--regid={user.uid}", "--clear-groups", "env", "-i",
                            *env, user.nslab, "run", "--network", "nat", "-p", "6200:8080", "--", "python3", "-m",
                            "http.server", "8080"], cwd=f"{user.home}/work", stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert _answer("http://127.0.0.1:6200/") == "200"
        user_ns = _keeper_ns(user)
    finally:
        os.kill(run.pid, signal.SIGTERM)
        _, stderr = run.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr
    _nothing_left(user, user_ns)
    assert ":6200 " not in sh("ss -Hltn").stdout
    assert _machine(host) == before


UDP_ECHO = ("import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(('::', 5353))\n"
            "while True:\n    d, peer = s.recvfrom(2048); s.sendto(b'echo ' + d, peer)")


def test_udp_published_port_answers_on_both_families(user):
    """A UDP port relayed by the keeper: a datagram to 127.0.0.1 and to [::1] comes back from the host."""
    import socket

    user.write("echo.py", UDP_ECHO)
    user.write("nslab.yaml", "name: udp\nnetworks: {n: {ipv6: true}}\nhosts:\n  a: {networks: [n], publish: "
                             f"[\"6500:5353/udp\"], run: \"exec python3 {user.home}/work/echo.py\"}}\n")
    up = user.run("up", "--wait", "--timeout", "20")
    assert up.returncode == 0, up.stderr
    user_ns = _keeper_ns(user)
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family, socket.SOCK_DGRAM) as client:
            client.settimeout(0.2)
            got = b""
            for _ in range(50):  # (the service binds a moment after `up`)
                client.sendto(b"ping", (address, 6500))
                try:
                    got = client.recv(2048)
                    break
                except TimeoutError:
                    continue
            assert got == b"echo ping", address
    assert user.run("down", "udp").returncode == 0
    _nothing_left(user, user_ns)


def test_an_ipv6_port_the_machine_uses_is_said_by_status(user):
    """The machine already listens on [::]:6300 (IPv6 only): the lab's IPv4 side answers, and ``status`` says
    the IPv6 side is not published, why, until the port is free (the keeper tries again every second)."""
    import socket

    busy = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    busy.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    busy.bind(("::", 6300))
    busy.listen(1)
    try:
        user.write("nslab.yaml", "name: busy\nnetworks: {n: {ipv6: true}}\nhosts:\n  web: {networks: [n], publish: "
                                 "[\"6300:8080\"], run: \"exec python3 -m http.server 8080 --bind ::\"}\n")
        up = user.run("up", "--wait", "--timeout", "20")
        assert up.returncode == 0, up.stderr
        assert ("nslab: warning: not published: cannot listen on the machine's [::]:6300/tcp: Address already in "
                "use") in up.stderr, up.stderr
        user_ns = _keeper_ns(user)
        assert _answer("http://127.0.0.1:6300/") == "200"
        status = user.run("status", "busy")
        assert ("not published: cannot listen on the machine's [::]:6300/tcp: Address already in use"
                in status.stdout), status.stdout + status.stderr
    finally:
        busy.close()
    assert _answer("http://[::1]:6300/") == "200"  # taken up again once free
    assert "not published" not in user.run("status", "busy").stdout
    assert user.run("down", "busy").returncode == 0
    _nothing_left(user, user_ns)


@pytest.mark.parametrize("cleanup", [["gc"], ["down", "k"]])
def test_a_keeper_that_died_is_said_and_cleaned_by_the_user(user, cleanup):
    import os
    import signal

    user.write("nslab.yaml", "name: k\nnetworks: {n: {}}\nhosts: {a: {networks: [n], run: exec sleep 1000}}\n")
    assert user.run("up").returncode == 0
    user_ns = _keeper_ns(user)
    keeper = user.keeper()
    assert keeper is not None
    os.kill(keeper, signal.SIGKILL)  # a crash: its services and state stay behind
    time.sleep(0.3)
    assert user.processes(user_ns)
    for args in (["status"], ["exec", "a", "--", "true"], ["up"]):
        said = user.run(*args)
        assert said.returncode == 1, (args, said.stdout, said.stderr)
        assert said.stderr.count("\n") == 1 and "keeper died while lab k was up" in said.stderr, said.stderr
        assert "`nslab gc`" in said.stderr and "nslab down LAB" in said.stderr, said.stderr
    dry = user.run("gc", "--dry-run")
    assert dry.returncode == 0 and "would clean up" in dry.stdout and user.processes(user_ns), dry.stderr
    done = user.run(*cleanup)
    assert done.returncode == 0 and "cleaned up after your rootless keeper" in done.stdout, done.stdout + done.stderr
    _nothing_left(user, user_ns)
    again = user.run("up")  # afresh: a new keeper
    assert again.returncode == 0, again.stderr
    fresh = _keeper_ns(user)
    assert user.run("down", "k").returncode == 0
    _nothing_left(user, fresh)


def test_gc_cleans_after_a_keeper_that_died(user):
    import signal

    user.write("nslab.yaml", "name: k\nnetworks: {n: {}}\nhosts: {a: {networks: [n], run: exec sleep 1000}}\n")
    assert user.run("up").returncode == 0
    user_ns = _keeper_ns(user)
    keeper = user.keeper()
    assert keeper is not None
    os.kill(keeper, signal.SIGKILL)  # a crash: its services and state stay behind
    time.sleep(0.3)
    assert user.processes(user_ns)
    listed = subprocess.run([NSLAB, "ls"], capture_output=True, text=True).stdout
    assert "keeper gone" in listed
    done = subprocess.run([NSLAB, "gc"], capture_output=True, text=True)
    assert done.returncode == 0 and "stopped the rootless labs of nobody" in done.stdout, done.stdout + done.stderr
    _nothing_left(user, user_ns)


def test_two_users_labs_are_apart(user, user_nslab):
    """Another user (uid 65533) with a lab of the same name and subnet: neither sees nor enters the other's."""
    other = RootlessUser(user_nslab, uid=65533).start()
    try:
        lab = "name: same\nnetworks: {n: {subnet: 10.60.0.0/24}}\nhosts: {%s: {networks: [n]}}\n"
        user.write("nslab.yaml", lab % "alpha")
        other.write("nslab.yaml", lab % "beta")
        assert user.run("up").returncode == 0
        up = other.run("up")
        assert up.returncode == 0, up.stderr  # same name, same subnet: no collision
        mine, theirs = _keeper_ns(user), _keeper_ns(other)
        assert user.run("status", "same").stdout.count("alpha") and "beta" not in user.run("status").stdout
        peek = other.run("exec", "alpha", "--", "true")
        assert peek.returncode != 0 and "alpha" in peek.stderr, peek.stderr
        own = other.run("exec", "beta", "--", "ping", "-c1", "-W2", "10.60.0.1")
        assert own.returncode == 0, own.stdout + own.stderr
        snoop = subprocess.run(["setpriv", "--reuid=65533", "--regid=65533", "--clear-groups", "ls",
                                user.state_root], capture_output=True, text=True)
        assert snoop.returncode != 0 and "Permission denied" in snoop.stderr
        users = json.loads(subprocess.run([NSLAB, "ls", "-o", "json"], capture_output=True, text=True).stdout)["users"]
        assert sorted((u["uid"], u["labs"]) for u in users) == [(65533, ["same"]), (65534, ["same"])]
        assert other.run("down", "same").returncode == 0
        _nothing_left(other, theirs)
        assert user.run("down", "same").returncode == 0
        _nothing_left(user, mine)
    finally:
        other.stop()


ANSWERS = r'''
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(65535)
    i = 12
    while q[i]:
        i += 1 + q[i]
    known = q[13:i].lower().startswith(b"small") and struct.unpack("!H", q[i + 1:i + 3])[0] == 1
    record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 7]) if known else b""
    s.sendto(q[:2] + struct.pack("!HHHHH", 0x8180 if known else 0x8183, 1, int(known), 0, 0) + q[12:i + 5]
             + record, peer)
'''


@pytest.mark.parametrize("nameserver", [WAN_ADDRESS, "127.0.0.53"])
def test_hosts_resolve_through_slirp4netns(user, host, tmp_path, nameserver):
    """The machine's resolver, wherever it is (wan, or a loopback stub as systemd-resolved's), answers the
    user's hosts through slirp4netns's 10.0.2.3: a tiny server that knows small.example (192.0.2.7)."""
    from labs import private_resolver

    private_resolver(tmp_path, nameserver)
    script = tmp_path / "answers.py"
    script.write_text(ANSWERS)
    if nameserver == WAN_ADDRESS:
        server = host.popen(host.in_wan([sys.executable, str(script), nameserver]), stdout=subprocess.PIPE, text=True)
    else:  # (127.0.0.0/8 is the throwaway host's lo)
        server = host.popen([sys.executable, str(script), nameserver], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    user.write("nslab.yaml", "name: d\nnetworks: {n: {}}\nhosts: {a: {networks: [n]}}\n")
    assert user.run("up").returncode == 0
    user_ns = _keeper_ns(user)
    found = user.run("exec", "a", "--", "getent", "hosts", "small.example")
    assert found.returncode == 0 and found.stdout.split()[0] == "192.0.2.7", found.stdout + found.stderr
    assert user.run("down", "d").returncode == 0
    _nothing_left(user, user_ns)


def test_gc_trusts_nothing_the_user_wrote(user, host):
    """A pid file naming the machine's user namespace and a pid that is not the keeper's, then a state root
    swapped for a symlink to a directory of root's: root's gc kills nothing outside the user's namespaces and
    deletes nothing of root's."""
    import signal

    user.write("nslab.yaml", "name: k\nnetworks: {n: {}}\nhosts: {a: {networks: [n], run: exec sleep 1000}}\n")
    assert user.run("up").returncode == 0
    keeper = user.keeper()
    assert keeper is not None
    os.kill(keeper, signal.SIGKILL)
    roots = host.popen(["sleep", "1000"])
    plain = host.popen(["setpriv", f"--reuid={user.uid}", f"--regid={user.uid}", "--clear-groups", "sleep", "1000"])
    machine_ns = os.stat("/proc/self/ns/user").st_ino
    sh(f"setpriv --reuid={user.uid} --regid={user.uid} --clear-groups sh -c "
       f"'echo {plain.pid} {machine_ns} > {user.state_root}/.keeper.pid'")
    done = subprocess.run([NSLAB, "gc"], capture_output=True, text=True)
    assert done.returncode == 0 and "0 process(es) killed" in done.stdout, done.stdout + done.stderr
    time.sleep(0.2)
    assert roots.poll() is None and plain.poll() is None  # neither root's process nor the user's outside
    assert not os.path.exists(user.state_root)
    precious = f"{user.home}/precious"
    os.mkdir(precious)
    open(f"{precious}/.keeper.pid", "w").write(f"{plain.pid} {machine_ns}\n")
    open(f"{precious}/keep", "w").close()
    os.symlink(precious, user.state_root)
    os.lchown(user.state_root, user.uid, user.uid)
    listed = json.loads(subprocess.run([NSLAB, "ls", "-o", "json"], capture_output=True, text=True).stdout)
    assert listed["users"] == []
    done = subprocess.run([NSLAB, "gc", "--user", "nobody"], capture_output=True, text=True)
    assert done.returncode == 2 and "no rootless labs of user nobody" in done.stderr, done.stdout + done.stderr
    assert sorted(os.listdir(precious)) == [".keeper.pid", "keep"] and plain.poll() is None
    os.unlink(user.state_root)


def test_a_reused_keeper_pid_is_a_dead_keeper(user):
    """The keeper killed and its pid taken by another process of the user, here a container's (a user namespace
    of its own, as podman or rootlesskit make): no command joins that process's namespaces."""
    import signal

    user.write("nslab.yaml", "name: k\nnetworks: {n: {}}\nhosts: {a: {networks: [n]}}\n")
    assert user.run("up").returncode == 0
    user_ns = _keeper_ns(user)
    os.kill(user.keeper() or 0, signal.SIGKILL)
    container = subprocess.Popen(["setpriv", f"--reuid={user.uid}", f"--regid={user.uid}", "--clear-groups",
                                  "unshare", "-U", "-r", "sleep", "1000"])
    try:
        for _ in range(100):
            if os.stat(f"/proc/{container.pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino:
                break
            time.sleep(0.02)
        sh(f"setpriv --reuid={user.uid} --regid={user.uid} --clear-groups sh -c "
           f"'echo {container.pid} {user_ns} > {user.state_root}/.keeper.pid'")
        status = user.run("status")
        assert "cannot join" not in status.stderr and "Invalid argument" not in status.stderr, status.stderr
        assert "Traceback" not in status.stderr, status.stderr
    finally:
        container.kill()
        container.wait()
