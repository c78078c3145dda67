"""The throwaway host that nslab's own tests and benchmarks run in: a new network + mount namespace that plays
"the machine" (tests/ and bench/ both use it; it is here so that bench/ needs nothing from tests/).

``ThrowawayHost.enter()`` moves the calling (single-threaded) process into a fresh network namespace and a
private mount namespace with tmpfs over /run/netns, /etc/netns and /run/nslab, ``lo`` up, and an uplink
``eth0`` to a ``wan`` namespace that plays the internet (198.51.100.1 in wan, 198.51.100.2 here, default
route via wan). ``leave()`` kills every process started inside, and returns the process to the namespaces
it came from; with nothing referencing them any more, the kernel drops every namespace, link and nft rule
the test made.

Nothing here talks to a real address: 198.51.100.0/24 is TEST-NET-2 and exists only between this host and
its own ``wan``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from .. import linux

WAN = "wan"
WAN_ADDRESS = "198.51.100.1"
UPLINK_ADDRESS = "198.51.100.2"
PRIVATE_DIRS = ("/run/netns", "/etc/netns", "/run/nslab")
MARKER = ".nslab-sandbox"  # in a mount point a sandbox made (under its tmpfs: invisible inside)


def sh(cmd: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", cmd], check=check, capture_output=True, text=True, **kwargs)


@dataclass
class ThrowawayHost:
    net_home: int = -1
    mnt_home: int = -1
    net_ns_inode: int = 0
    started: list[subprocess.Popen[Any]] = field(default_factory=list)
    lock: int = -1
    cgroups_before: set[str] = field(default_factory=set)

    def enter(self) -> ThrowawayHost:
        self.net_home = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.mnt_home = os.open("/proc/self/ns/mnt", os.O_RDONLY)
        # Mount points on the real filesystem: made if missing (marked as ours), removed by the last sandbox to
        # leave. Removing a directory detaches the mounts on it in EVERY mount namespace, so a sandbox of
        # another test session running meanwhile would lose its private tmpfs: a shared lock on /run counts us.
        self.lock = os.open("/run", os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.lock, fcntl.LOCK_SH)
        self.cgroups_before = nslab_cgroups()  # cgroups are not namespaced here: services' go on the machine
        for d in PRIVATE_DIRS:
            if not os.path.isdir(d):
                os.makedirs(d)
                open(os.path.join(d, MARKER), "w").close()
        linux.unshare(linux.CLONE_NEWNET | linux.CLONE_NEWNS)
        linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
        for d in PRIVATE_DIRS:
            linux.mount("tmpfs", d, "tmpfs", 0, "mode=755")
        self.net_ns_inode = os.stat("/proc/self/ns/net").st_ino
        sh(
            f"""
            ip link set lo up
            ip netns add {WAN}
            ip link add eth0 type veth peer name eth0 netns {WAN}
            ip addr add {UPLINK_ADDRESS}/24 dev eth0
            ip link set eth0 up
            ip -n {WAN} addr add {WAN_ADDRESS}/24 dev eth0
            ip -n {WAN} link set eth0 up
            ip -n {WAN} link set lo up
            ip route add default via {WAN_ADDRESS}
            """
        )
        return self

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a background process that leave() will kill (its whole process group)."""
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.started.append(proc)
        return proc

    def in_wan(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", WAN, *argv]

    def leave(self) -> None:
        for proc in self.started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        self._kill_stragglers()
        linux.setns(self.net_home, linux.CLONE_NEWNET)
        _back_to_mounts(self.mnt_home)
        os.close(self.net_home)
        os.close(self.mnt_home)
        fcntl.flock(self.lock, fcntl.LOCK_UN)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another sandbox still uses the mount points: the last one out removes them
        else:
            for d in reversed(PRIVATE_DIRS):
                if os.path.isdir(d) and os.listdir(d) == [MARKER]:
                    os.unlink(os.path.join(d, MARKER))
                    os.rmdir(d)
        os.close(self.lock)
        for path in sorted(nslab_cgroups() - self.cgroups_before, key=len, reverse=True):
            try:
                os.rmdir(path)  # a lab whose test died before `down`: its services are killed above
            except OSError:
                pass

    def _kill_stragglers(self) -> None:
        """Any process still in this host's network namespace or in one of the namespaces named inside it
        (a daemon a test forgot, the services of a lab a failed test never took down) is killed."""
        inodes = {self.net_ns_inode}
        for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
            try:
                inodes.add(os.stat(os.path.join("/run/netns", name)).st_ino)
            except OSError:
                continue
        _kill_in(inodes, spare=set())


def nslab_cgroups() -> set[str]:
    """nslab's cgroups on the machine (services of labs, see nslab.drivers.process), with their cgroup v1
    mirrors (the limits of ``resources:``)."""
    from ..drivers.process import cgroup2_mount, v1_mounts

    roots = [root for root in (cgroup2_mount(), *set(v1_mounts().values())) if root]
    out: set[str] = set()
    for root in roots:
        for dirpath, dirnames, _files in os.walk(os.path.join(root, "nslab")):
            out.update(os.path.join(dirpath, d) for d in dirnames)
    return out


def machine_snapshot() -> dict[str, list[str]]:
    """What the real machine holds that a test could leave behind."""

    def lines(cmd: str) -> list[str]:
        out = sh(cmd, check=False).stdout
        return sorted(line for line in out.splitlines() if line.strip())

    def entries(path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []

    return {
        "netns": lines("ip netns list | awk '{print $1}'"),
        "links": lines("ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//'"),
        "nft tables": lines("nft list tables 2>/dev/null"),
        "/etc/netns": entries("/etc/netns"),
        "/run/nslab": [e for e in entries("/run/nslab") if not e.startswith(".")],
        "cgroups": sorted(nslab_cgroups()),
    }


def _back_to_mounts(mnt_home: int, patience: float = 2.0) -> None:
    """setns into the mount namespace ``mnt_home``. The kernel refuses it (EINVAL) while another thread of this
    process shares its filesystem context, and a worker thread that has just handed back its result (an
    ``in_namespace`` call of the test) may not have finished exiting yet: wait for it a little."""
    deadline = time.monotonic() + patience
    while True:
        try:
            linux.setns(mnt_home, linux.CLONE_NEWNS)
            return
        except OSError as exc:
            if exc.errno != errno.EINVAL or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


#: The underlay every machine of a :class:`Machines` set hangs from: 198.18.0.0/15 is the benchmarking range,
#: here only inside the throwaway host. The throwaway host itself is ``.254`` and forwards to ``wan`` for the
#: machines that have a way out.
UNDERLAY = "198.18.0"
UNDERLAY6 = "2001:db8:18::"
UNDERLAY_BRIDGE = "ul"
#: What each machine gets fresh (tmpfs, shared propagation so a bind mount of it sees later mounts, as Swarm's
#: tasks need for /run/netns).
MACHINE_DIRS = ("/run/netns", "/etc/netns", "/run/nslab", "/var/lib/nslab")


@dataclass
class Machine:
    """One "machine" inside a throwaway host: a network + mount + UTS namespace held by a sleeping process, with
    its own /run/netns, /etc/netns, /run/nslab and hostname, and ``eth0`` on the underlay bridge."""

    name: str
    address: str  # its underlay address (eth0)
    address6: str  # its IPv6 underlay address (eth0)
    holder: subprocess.Popen[Any]

    @property
    def pid(self) -> int:
        return self.holder.pid

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` as run on this machine (its network, mount and UTS namespaces)."""
        return ["nsenter", "-t", str(self.pid), "-m", "-u", "-n", "--", *argv]

    def run(self, argv: list[str], check: bool = False, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(argv), check=check, capture_output=True, text=True, **kwargs)

    def sh(self, cmd: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", cmd], check=check, **kwargs)

    def path(self, path: str) -> str:
        """``path`` as this machine sees it, readable from the throwaway host."""
        return f"/proc/{self.pid}/root{path}"

    def namespace_inodes(self) -> set[int]:
        """The machine's own network namespace and every one named in its /run/netns."""
        inodes = {os.stat(f"/proc/{self.pid}/ns/net").st_ino}
        netns = self.path("/run/netns")
        for entry in os.listdir(netns):
            try:
                inodes.add(os.stat(os.path.join(netns, entry)).st_ino)
            except OSError:
                continue
        return inodes


@dataclass
class Machines:
    """N machines in the current throwaway host (``ThrowawayHost.enter()`` first), joined by the underlay bridge
    ``ul`` (MTU ``mtu``, 198.18.0.0/24 and 2001:db8:18::/64); the machines named in ``way_out`` get a default
    route through the throwaway host, which forwards to ``wan``; the others reach only the underlay.

    ``stop()`` kills every process in a machine's namespaces (its own and those named in its /run/netns), then
    the machines: the kernel drops what they held."""

    host: ThrowawayHost
    names: tuple[str, ...] = ("a", "b", "c")
    way_out: tuple[str, ...] = ("a",)
    mtu: int = 1500
    machines: dict[str, Machine] = field(default_factory=dict)

    def start(self) -> Machines:
        sh(
            f"""
            ip link add {UNDERLAY_BRIDGE} mtu {self.mtu} type bridge
            ip addr add {UNDERLAY}.254/24 dev {UNDERLAY_BRIDGE}
            ip addr add {UNDERLAY6}fe/64 dev {UNDERLAY_BRIDGE} nodad
            ip link set {UNDERLAY_BRIDGE} up
            sysctl -qw net.ipv4.ip_forward=1
            ip netns exec {WAN} ip route add {UNDERLAY}.0/24 via {UPLINK_ADDRESS}
            """
        )
        for index, name in enumerate(self.names, start=1):
            self.machines[name] = self._start_one(name, index)
        return self

    def _start_one(self, name: str, index: int) -> Machine:
        holder = self.host.popen(
            ["unshare", "--mount", "--net", "--uts", "--propagation", "private", "--", "sleep", "infinity"]
        )
        mine = os.stat("/proc/self/ns/net").st_ino
        deadline = time.monotonic() + 10
        while os.stat(f"/proc/{holder.pid}/ns/net").st_ino == mine:  # until unshare has made them
            if time.monotonic() > deadline:
                raise RuntimeError(f"machine {name}: unshare did not start")
            time.sleep(0.005)
        machine = Machine(name, f"{UNDERLAY}.{index}", f"{UNDERLAY6}{index}", holder)
        # What the throwaway host has mounted on a directory goes first (in the machine only): the machine's
        # tmpfs is then the only mount there, as dockerd's check of a shared bind source expects.
        mounts = "; ".join(
            f"mkdir -p {d}; while mountpoint -q {d}; do umount -l {d}; done; "
            f"mount -t tmpfs -o mode=755 tmpfs {d}; mount --make-shared {d}"
            for d in MACHINE_DIRS
        )
        way_out = f"ip route add default via {UNDERLAY}.254" if name in self.way_out else "true"
        sh(f"ip link add u-{name} mtu {self.mtu} type veth peer name eth0 netns {holder.pid}")
        sh(f"ip link set u-{name} master {UNDERLAY_BRIDGE} up")
        machine.sh(
            f"""
            hostname {name}; {mounts}
            ip link set lo up
            ip addr add {machine.address}/24 dev eth0
            ip addr add {machine.address6}/64 dev eth0 nodad
            ip link set eth0 up
            {way_out}
            """
        )
        return machine

    def __getitem__(self, name: str) -> Machine:
        return self.machines[name]

    def __iter__(self) -> Any:
        return iter(self.machines.values())

    def stop(self) -> None:
        for machine in self.machines.values():
            _kill_in(machine.namespace_inodes(), spare={machine.pid})
            try:
                os.kill(machine.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            machine.holder.wait()
        self.machines.clear()
        sh(f"ip link del {UNDERLAY_BRIDGE}", check=False)


def _kill_in(inodes: set[int], spare: set[int]) -> None:
    """Kill every process (but ours and ``spare``) whose network namespace is one of ``inodes``."""
    me = os.getpid()
    for _ in range(50):
        left: list[int] = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            pid = int(entry)
            if pid == me or pid in spare:
                continue
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    left.append(pid)
            except (FileNotFoundError, PermissionError, ProcessLookupError):
                continue
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


@dataclass
class Dockerd:
    """One machine's own dockerd: its data root, exec root, socket and pid file on a tmpfs mounted (inside the
    machine only) over ``workdir``, a directory made on the real filesystem (empty from outside, removed by
    ``Swarm.stop``). Its containers' cgroups go under ``/CGROUP`` (removed at the end too)."""

    machine: Machine
    workdir: str
    cgroup: str
    proc: subprocess.Popen[Any] | None = None

    @property
    def socket(self) -> str:
        """The socket as the machine sees it (``DOCKER_HOST=unix://...`` on the machine)."""
        return f"{self.workdir}/docker.sock"

    @property
    def outside(self) -> str:
        """The socket as the throwaway host reaches it (through the holder's /proc/PID/root)."""
        return self.machine.path(self.socket)

    def env(self, inside: bool = False) -> dict[str, str]:
        """The environment with DOCKER_HOST naming this dockerd (``inside``: for a command run on the machine)."""
        return dict(os.environ, DOCKER_HOST=f"unix://{self.socket if inside else self.outside}")

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this dockerd (tests only: nslab itself talks to the Engine API)."""
        done = subprocess.run(["docker", *args], env=self.env(), capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} on {self.machine.name}: {done.stderr.strip()}")
        return done

    def start(self, host: ThrowawayHost) -> Dockerd:
        self.machine.sh(f"mount -t tmpfs -o mode=700 tmpfs {self.workdir}")
        argv = ["dockerd", "--data-root", f"{self.workdir}/root", "--exec-root", f"{self.workdir}/exec",
                "-H", f"unix://{self.socket}", "--pidfile", f"{self.workdir}/docker.pid", "--iptables=false",
                "--ip6tables=false", "--bridge=none", "--cgroup-parent", f"/{self.cgroup}"]
        log = open(os.path.join(tempfile.gettempdir(), f"{self.cgroup}.log"), "w")  # read by failures below
        # No registry is reachable from a machine: a pull (Swarm tries one before each task) is refused at once by
        # a proxy nothing listens on, instead of waiting ~20 s for a connection that never comes.
        refused = dict(os.environ, HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
        self.proc = host.popen(self.machine.argv(argv), stdout=log, stderr=subprocess.STDOUT, env=refused)
        log.close()
        deadline = time.monotonic() + 60
        while self.docker("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd on {self.machine.name} did not start: {self.log()[-800:]}")
            time.sleep(0.2)
        return self

    def log(self) -> str:
        try:
            with open(os.path.join(tempfile.gettempdir(), f"{self.cgroup}.log"), encoding="utf-8") as fh:
                return fh.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.unlink(os.path.join(tempfile.gettempdir(), f"{self.cgroup}.log"))
        except OSError:
            pass


@dataclass
class Swarm:
    """A Docker Swarm over a :class:`Machines` set: one :class:`Dockerd` per machine, ``swarm init`` on the first
    (advertising its underlay address), the others joined as workers; the machines' hostnames are the node
    names. ``stop()``: ``swarm leave --force`` on each, each dockerd stopped, its tmpfs, cgroups and directory
    gone (the machines themselves are stopped by ``Machines.stop``)."""

    host: ThrowawayHost
    machines: Machines
    daemons: dict[str, Dockerd] = field(default_factory=dict)
    workdir: str = ""

    def start(self) -> Swarm:
        self.workdir = tempfile.mkdtemp(prefix="nslab-swarm-")
        tag = os.path.basename(self.workdir)
        try:
            for machine in self.machines:
                path = os.path.join(self.workdir, machine.name)
                os.mkdir(path)
                self.daemons[machine.name] = Dockerd(machine, path, f"{tag}-{machine.name}").start(self.host)
            manager, *workers = self.daemons.values()
            manager.docker("swarm", "init", "--advertise-addr", manager.machine.address)
            token = manager.docker("swarm", "join-token", "-q", "worker").stdout.strip()
            for worker in workers:
                worker.docker("swarm", "join", "--token", token, f"{manager.machine.address}:2377")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def manager(self) -> Dockerd:
        return next(iter(self.daemons.values()))

    def __getitem__(self, name: str) -> Dockerd:
        return self.daemons[name]

    def stop(self) -> None:
        for daemon in reversed(list(self.daemons.values())):
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.docker("swarm", "leave", "--force", check=False)
        for daemon in self.daemons.values():
            daemon.stop()
        self.daemons.clear()
        if self.workdir:
            _remove_cgroups(os.path.basename(self.workdir))
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = ""


def _remove_cgroups(prefix: str) -> None:
    """The cgroups the swarm's dockerds made (``/PREFIX-MACHINE`` in each hierarchy), deepest first."""
    from ..drivers.process import cgroup2_mount, v1_mounts

    for root in {r for r in (cgroup2_mount(), *v1_mounts().values()) if r}:
        try:
            tops = [os.path.join(root, d) for d in os.listdir(root) if d.startswith(prefix)]
        except OSError:
            continue
        for top in tops:
            for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass


# --- a user without root in the throwaway host (rootless labs: daemons/keeper.py) ---------------------------

NOBODY = 65534


def user_venv(directory: str) -> str:
    """A virtual environment in ``directory`` (under /tmp: any user can run it) with Debian's /usr/bin/python3
    and this nslab: its sources and the running environment's packages named by .pth files (pyenv's
    interpreter under /root is not the user's to run). Returns its ``nslab`` command."""
    import sys

    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", directory], check=True)
    minor = sys.version_info[1]
    site = os.path.join(directory, "lib", f"python3.{minor}", "site-packages")
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(linux.__file__)))
    ours = os.path.join(sys.prefix, "lib", f"python3.{minor}", "site-packages")
    with open(os.path.join(site, "nslab-here.pth"), "w") as fh:
        fh.write(f"{package_root}\n{ours}\n")
    command = os.path.join(directory, "bin", "nslab")
    with open(os.path.join(os.path.dirname(sys.executable), "nslab")) as src:
        body = src.read().split("\n", 1)[1]
    with open(command, "w") as fh:
        fh.write(f"#!{directory}/bin/python\n{body}")
    os.chmod(command, 0o755)
    subprocess.run(["chmod", "-R", "a+rX", directory], check=True)
    return command


@dataclass
class RootlessUser:
    """A user who is not root (uid 65534 unless ``uid`` says otherwise) in the throwaway host (call
    :meth:`start` after the host's ``enter``, :meth:`stop` in the reverse order): a home on a tmpfs of its own,
    ``XDG_RUNTIME_DIR`` there, a private ``/dev/net/tun`` node (mode 0666) bound over the machine's, and private
    /etc/subuid and /etc/subgid (``subids``: give the user a range). Everything is a mount of the throwaway
    host's mount namespace: the machine is untouched."""

    nslab: str
    subids: bool = False
    uid: int = NOBODY  # (and its gid)
    home: str = ""
    mounts: list[str] = field(default_factory=list)

    def start(self) -> RootlessUser:
        import tempfile

        self.home = tempfile.mkdtemp(prefix="nslab-home-")
        self._mount("tmpfs", self.home, "tmpfs", "mode=755")
        os.mknod(f"{self.home}/tun", 0o20666, os.makedev(10, 200))
        os.chmod(f"{self.home}/tun", 0o666)
        self._mount(f"{self.home}/tun", "/dev/net/tun", None)
        ids = f"{self.uid}:100000:65536\n" if self.subids else ""
        for name in ("subuid", "subgid"):
            with open(f"{self.home}/{name}", "w") as fh:
                fh.write(ids)
            if not os.path.exists(f"/etc/{name}"):
                continue  # (nothing to bind over: without the file the user has no subordinate ids anyway)
            self._mount(f"{self.home}/{name}", f"/etc/{name}", None)
        for d in ("run", "work"):
            os.mkdir(f"{self.home}/{d}", 0o700)
            os.chown(f"{self.home}/{d}", self.uid, self.uid)
        return self

    def _mount(self, source: str, target: str, fstype: str | None, data: str | None = None) -> None:
        linux.mount(source, target, fstype, 0 if fstype else linux.MS_BIND, data)
        self.mounts.append(target)

    @property
    def state_root(self) -> str:
        return f"{self.home}/run/nslab"

    def env(self, path: str | None = None) -> dict[str, str]:
        return {"HOME": f"{self.home}/work", "XDG_RUNTIME_DIR": f"{self.home}/run", "LANG": "C.UTF-8",
                "PATH": path or f"{os.path.dirname(self.nslab)}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

    def run(self, *args: str, path: str | None = None, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """``nslab ARGS`` as the user, in its home (``path``: another PATH)."""
        env = [f"{k}={v}" for k, v in self.env(path).items()]
        argv = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "env", "-i", *env,
                self.nslab, *args]
        return subprocess.run(argv, capture_output=True, text=True, cwd=f"{self.home}/work", timeout=timeout,
                              input=input)

    def write(self, name: str, text: str) -> str:
        path = f"{self.home}/work/{name}"
        with open(path, "w") as fh:
            fh.write(text)
        os.chown(path, self.uid, self.uid)
        return path

    def keeper(self) -> int | None:
        try:
            with open(f"{self.state_root}/.keeper.pid") as fh:
                return int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def processes(self, user_ns: int) -> list[int]:
        """Live processes (zombies left out) in the user namespace ``user_ns`` (an inode)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if fh.read().rpartition(")")[2].split()[0] == "Z":
                        continue
                if os.stat(f"/proc/{entry}/ns/user").st_ino == user_ns:
                    found.append(int(entry))
            except (OSError, IndexError):
                continue
        return found

    def stop(self) -> None:
        """Kill what the user left (the keeper's user namespace: keeper, services; slirp4netns, the keeper's
        child outside it), then undo the mounts."""
        pid = self.keeper()
        if pid is not None:
            try:
                user_ns = os.stat(f"/proc/{pid}/ns/user").st_ino
                children = [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
            except OSError:
                user_ns, children = 0, []
            for victim in self.processes(user_ns) + children if user_ns else []:
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for target in reversed(self.mounts):
            linux.umount(target)
        os.rmdir(self.home)
