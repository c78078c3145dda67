"""The per-user keeper of rootless labs: ``python -m nslab.daemons.keeper STATE_ROOT`` (started by the first
rootless command that needs it, :func:`join`; it leaves with the user's last lab).

A user who is not root gets labs in namespaces of their own, held by this one process:

- a **user namespace** where the user is root: with the user's subordinate ids (``/etc/subuid``,
  ``/etc/subgid``) mapped by ``newuidmap``/``newgidmap`` when there are some (0 is the user, 1.. the range),
  else only the user's own id mapped to 0;
- a **mount namespace** with a private tmpfs over ``/run/netns`` and ``/etc/netns`` (the user's hosts are named
  there, invisible to anyone else; made first when the machine has none, see :func:`_writable`) and a
  resolv.conf naming slirp4netns's resolver (10.0.2.3) bound over ``/etc/resolv.conf`` (the machine's may name
  127.0.0.53, which nothing in the lab can reach);
- a **network namespace** that plays "the machine" for the user's labs: their bridges, NAT masquerade and nft
  rules live there, and the way out (run outside, in the machine's namespaces: ``slirp4netns``, or ``pasta``
  when new enough, daemons/wayout.py) connects its ``tap0`` to the machine's network: 10.0.2.100/24, gateway
  10.0.2.2, MTU 65520, the machine's loopback not reachable.

State lives under :func:`nslab.paths.user_state_root` (mode 0700, the user's): the pid file that commands join
by, the hold lock, the way out chosen, what the keeper cannot publish now, this daemon's log.

Published ports: the keeper relays them itself (:class:`_Relays`, loopproxy.py), both families, from listening
sockets that its binder (:class:`_Binder`, a child left in the machine's namespaces) makes on the machine and
hands over, to the lab host's address from inside. Not slirp4netns's port forwarding: its API (1.2) takes no
IPv6 address (``add_hostfwd`` reads ``host_addr`` as IPv4), it moves about an eighth of what the relay does
(docs/performance.md), and pasta has no such API at all.

A keeper that died (killed, crashed) leaves its labs' state and their supervisors: :func:`join` refuses every
command in one line, and the user's ``gc`` or ``down`` cleans up (:func:`clean_orphans`).

Joining (:func:`join`, from the CLI's entry before anything else): ``setns`` into the keeper's user namespace
first, then its mount and network namespaces, in the command's own process (no fork; the process is still
single-threaded then). Inside, the command is uid 0 and runs the usual code paths; ``NSLAB_STATE_DIR`` names
the user's state root for it and everything it starts.

Leaving: every second the keeper looks for labs (a lab directory under the state root); when there are none
and it can take the hold lock exclusively (no command is inside), it removes its pid file and exits, and
slirp4netns (watching ``--exit-fd``) exits with it. The kernel drops the namespaces with their last process.
"""

from __future__ import annotations

import os
import sys

from .. import linux, paths

TYPE_CHECKING = False  # (not typing's: a command joining the keeper imports this module, `nslab exec` too)
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import Any

    from .loopproxy import LoopbackProxy
    from .wayout import WayOut

#: Where slirp4netns puts the keeper's network namespace (``--configure``'s defaults).
SLIRP_ADDRESS = "10.0.2.100"
SLIRP_GATEWAY = "10.0.2.2"
SLIRP_DNS = "10.0.2.3"
TAP = "tap0"
MTU = 65520
#: The keeper's namespaces a command joins, in this order (the user namespace first: it owns the others). UTS
#: and IPC too: code that visits a namespace goes back to its own, which must be one the user's root owns.
JOINED = (("user", linux.CLONE_NEWUSER), ("mnt", linux.CLONE_NEWNS), ("net", linux.CLONE_NEWNET),
          ("uts", linux.CLONE_NEWUTS), ("ipc", linux.CLONE_NEWIPC))
POLL = 1.0  # seconds between the keeper's looks for labs
START_TIMEOUT = 10.0  # seconds a command waits for a new keeper to be ready
SYNC_WAIT = 2.0  # seconds a command that changed the labs waits for the keeper's relays to follow


def subordinate(name: str, ident: int, file: str) -> tuple[int, int] | None:
    """The first ``(start, count)`` range of ``/etc/subuid``-style ``file`` for user ``name`` or id ``ident``."""
    try:
        with open(file) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (name, str(ident)) and parts[1].isdigit() and parts[2].isdigit():
            if int(parts[2]) > 0:
                return int(parts[1]), int(parts[2])
    return None


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def subordinate_ids(uid: int, gid: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The user's subordinate uid and gid ranges, both present and ``newuidmap``/``newgidmap`` installed; else
    None (only the user's own id is mapped)."""
    import shutil

    name = _user_name(uid)
    uids, gids = subordinate(name, uid, "/etc/subuid"), subordinate(name, gid, "/etc/subgid")
    if uids is None or gids is None or not shutil.which("newuidmap") or not shutil.which("newgidmap"):
        return None
    return uids, gids


# --- what a command checks before starting a keeper (one line each, exit 1, nothing started) ---------------


def check_tun() -> None:
    """slirp4netns opens /dev/net/tun as the user: refuse early when it cannot."""
    from ..errors import EnvironmentProblem

    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except OSError as exc:
        raise EnvironmentProblem(
            f"rootless labs need /dev/net/tun for slirp4netns, and it cannot be opened ({exc.strerror}): have "
            "root make it usable (chmod 0666 /dev/net/tun, as most distributions ship it) or run nslab as "
            "root") from None


# --- joining (the command's side) ---------------------------------------------------------------------------


def state_root_ready(root: str) -> None:
    """Make the user's state root (0700) or check that an existing one is the user's own directory (no symlink)
    and closed to others; one line (exit 1) when it is not."""
    from ..errors import EnvironmentProblem

    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise EnvironmentProblem(f"cannot make {root} for your rootless labs: {exc.strerror}") from None
    st = os.lstat(root)
    if st.st_uid != os.getuid() or (st.st_mode & 0o077) or st.st_mode & 0o170000 != 0o040000:
        raise EnvironmentProblem(f"{root} is not a directory of yours closed to others (mode 0700, not a "
                                 "symlink): remove it, then run nslab again")


def running(root: str) -> int | None:
    """The pid of the user's keeper if it is alive, the user's, in the user namespace its pid file records and
    running ``nslab.daemons.keeper ROOT``; else None (a dead keeper, or its pid reused by another process)."""
    try:
        with open(paths.keeper_pid_file(root)) as fh:
            words = fh.read().split()
        pid, user_ns = int(words[0]), int(words[1])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 and _is_keeper(pid, os.getuid(), root, user_ns) else None


def _is_keeper(pid: int, uid: int, root: str, user_ns: int | None = None) -> bool:
    """Whether ``pid`` is alive as ``uid``, runs ``… -m nslab.daemons.keeper ROOT`` and (``user_ns`` given) is
    in that user namespace."""
    if not _alive(pid, uid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")[:-1]
        if user_ns is not None and os.stat(f"/proc/{pid}/ns/user").st_ino != user_ns:
            return False
    except OSError:
        return False
    module = b"nslab.daemons.keeper"
    return module in argv[:-1] and argv[argv.index(module) + 1:] == [os.fsencode(root)]


def join(start: bool) -> int | None:
    """Enter the user's keeper (started first when ``start`` and none is running): its user, mount and network
    namespaces, in this process. Returns the hold lock's fd (keep it open while inside), or None: no keeper
    and none started (nothing joined; the command runs where it is, and finds no labs)."""
    uid = os.getuid()
    root = paths.user_state_root(uid)
    if not start and not os.path.isdir(root):
        os.environ["NSLAB_STATE_DIR"] = root
        return None
    hold = _hold(root)
    pid = running(root)
    left = orphans(root) if pid is None else []
    if left:
        os.close(hold)
        from ..errors import EnvironmentProblem

        raise EnvironmentProblem(f"your rootless keeper died while {_labs_said(left)} up: their hosts are gone; "
                                 "`nslab gc` (or `nslab down LAB`) cleans up what is left, then `nslab up` "
                                 "starts afresh")
    if pid is None and start:
        pid = _start_once(root)
    if pid is None:
        os.close(hold)
        os.environ["NSLAB_STATE_DIR"] = root
        return None
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as fh:
            os.environ["NSLAB_PORT_START"] = fh.read().strip()  # the machine's, where the binder listens
    except OSError:
        pass
    _enter(pid)
    os.environ["NSLAB_STATE_DIR"] = root
    os.environ[paths.ROOTLESS_ENV] = str(uid)
    return hold


def orphans(root: str) -> list[str]:
    """The labs under the user's state root whose keeper is gone (killed, crashed): their namespaces cannot
    be joined again, what is left of them (their supervisors, state) waits for :func:`clean_orphans`."""
    if not os.path.isfile(paths.keeper_pid_file(root)) or running(root) is not None:
        return []
    return sorted(_lab_dirs(root))


def _labs_said(labs: list[str]) -> str:
    return f"lab {labs[0]} was" if len(labs) == 1 else f"labs {', '.join(labs)} were"


def clean_orphans(root: str, dry_run: bool = False) -> str | None:
    """The user's ``gc`` or ``down`` after their keeper died: kill what is left of its namespaces (the labs'
    supervisors and services hold them) and remove the state root. None: nothing of the kind (a keeper is
    running, or none died)."""
    labs = orphans(root)
    if not labs:
        return None
    if dry_run:
        return f"would clean up after your rootless keeper, which died: {', '.join(labs)}"
    own = next((u for u in users([root]) if u.uid == os.getuid()), None)
    if own is None:
        return None
    killed = _stop(own)
    return (f"cleaned up after your rootless keeper, which had died (labs: {', '.join(labs)}): {killed} "
            f"process(es) killed, {root} removed")


def _start_once(root: str) -> int:
    """Start the keeper unless another command started one meanwhile (two first `up`s at once: one keeper)."""
    import fcntl

    starting = os.open(paths.keeper_start_file(root), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(starting, fcntl.LOCK_EX)
        pid = running(root)
        if pid is not None:
            return pid
        try:
            return _start(root)
        except BaseException:
            clean(root)  # what this command made for the keeper that did not start
            raise
    finally:
        os.close(starting)


def _hold(root: str) -> int:
    """The hold lock, taken shared (blocks while a keeper is leaving); the state root made first if needed. A
    keeper that left meanwhile removed the file this locked: then again, on the new one."""
    import fcntl

    while True:
        state_root_ready(root)
        hold = os.open(paths.keeper_hold_file(root), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(hold, fcntl.LOCK_SH)
        try:
            if os.stat(paths.keeper_hold_file(root)).st_ino == os.fstat(hold).st_ino:
                return hold
        except FileNotFoundError:
            pass
        os.close(hold)


def clean(root: str) -> None:
    """Remove the user's state root when no lab is left in it (the keeper leaving, or one that never started)."""
    import shutil

    if _lab_dirs(root):
        return
    for entry in os.listdir(root) if os.path.isdir(root) else []:
        if entry.startswith(".overlay"):  # (the keeper's own: its overlays' upper layers, see _overlay)
            try:
                linux.umount(os.path.join(root, entry))
            except OSError:
                pass
    shutil.rmtree(root, ignore_errors=True)


def _enter(pid: int) -> None:
    cwd = None
    try:
        cwd = os.getcwd()
    except OSError:
        pass
    from ..errors import EnvironmentProblem

    fds: list[int] = []
    try:
        fds += [os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) for kind, _ in JOINED]
        for fd, (_, kind) in zip(fds, JOINED, strict=True):
            linux.setns(fd, kind)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot join your rootless keeper (pid {pid}): {exc.strerror}; "
                                 "`nslab down LAB` takes its labs down, the next `up` starts a new one") from None
    finally:
        for fd in fds:
            os.close(fd)
    if cwd is not None:
        try:
            os.chdir(cwd)  # joining a mount namespace moves the process to its root
        except OSError:
            pass


def _start(root: str) -> int:
    """Start the keeper and wait until it is ready: its pid, or the one line it reported as an error."""
    import select
    import subprocess

    from ..errors import EnvironmentProblem
    from .wayout import choose

    choose()  # (refused here, in one line, when there is no way out)
    check_tun()
    with open(paths.keeper_log(root), "ab") as log:
        # -S and nslab's own directory on PYTHONPATH: the keeper needs only the standard library and nslab,
        # and Python's site costs ~10 ms more of its start (which the user's first `up` waits for)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=package_root)
        proc = subprocess.Popen([sys.executable, "-S", "-m", "nslab.daemons.keeper", root], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                                cwd="/")
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
    line = proc.stdout.readline().decode(errors="replace").strip() if ready else ""
    proc.stdout.close()
    if line == "ready":
        return proc.pid
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    raise EnvironmentProblem(line or f"the rootless keeper did not start within {START_TIMEOUT:g} s "
                             f"(its log: {paths.keeper_log(root)})")


# --- the keeper itself --------------------------------------------------------------------------------------


class _Helper:
    """A child forked before the keeper leaves the machine's namespaces: it maps the new user namespace with
    newuidmap/newgidmap (when the user has subordinate ids), then becomes the way out (slirp4netns, or pasta
    when new enough: daemons/wayout.py) attached to the keeper's network namespace (a process inside a user
    namespace cannot go back to the machine's network)."""

    def __init__(self, root: str, way: WayOut):
        from .wayout import pasta_argv

        self.root, self.way = root, way
        uid, gid = os.getuid(), os.getgid()
        self.ranges = subordinate_ids(uid, gid)
        keeper = os.getpid()
        go_r, self.go = os.pipe()
        self.answer, answer_w = os.pipe()
        self.ready, ready_w = os.pipe()
        exit_r, self.exit = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            for fd in (self.go, self.answer, self.ready, self.exit):
                os.close(fd)
            if way.name == "pasta":
                _helper(go_r, answer_w, (), keeper, self.ranges,
                        pasta_argv(way.path, keeper, SLIRP_ADDRESS, SLIRP_GATEWAY, SLIRP_DNS, TAP, MTU))
            _helper(go_r, answer_w, (ready_w, exit_r), keeper, self.ranges,
                    self._slirp_argv(way.path, keeper, ready_w, exit_r))
        for fd in (go_r, answer_w, ready_w, exit_r):
            os.close(fd)

    def _slirp_argv(self, slirp: str, keeper: int, ready: int, exit_fd: int) -> list[str]:
        return [slirp, "--configure", f"--mtu={MTU}", "--disable-host-loopback", f"--ready-fd={ready}",
                f"--exit-fd={exit_fd}", str(keeper), TAP]

    def user_namespace(self) -> None:
        """unshare the user namespace and have it mapped (subordinate ids, else the user's own id as 0)."""
        from ..errors import EnvironmentProblem

        uid, gid = os.getuid(), os.getgid()
        _unshare_user()
        if self.ranges is None:
            for file, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1\n"), ("gid_map", f"0 {gid} 1\n")):
                with open(f"/proc/self/{file}", "w") as fh:
                    fh.write(text)
            return
        os.write(self.go, b"u")
        if os.read(self.answer, 1) != b"0":
            raise EnvironmentProblem(f"newuidmap/newgidmap could not map your subordinate ids (see "
                               f"{paths.keeper_log(self.root)}): check /etc/subuid and /etc/subgid")

    def connect(self) -> None:
        """Let the helper become the way out; wait until it has configured tap0 (slirp4netns says so on its
        ready fd; pasta has none: the keeper looks at tap0's address)."""
        import select

        from ..errors import EnvironmentProblem

        os.write(self.go, b"s")
        if self.way.name == "pasta":
            ready = self._pasta_ready()
        else:
            readable, _, _ = select.select([self.ready], [], [], START_TIMEOUT)
            ready = (os.read(self.ready, 1) if readable else b"") == b"1"
        if not ready:
            raise EnvironmentProblem(f"{self.way.name} did not come up (its output: {paths.keeper_log(self.root)})")

    def _pasta_ready(self) -> bool:
        import time

        from .wayout import configured

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if configured(TAP, SLIRP_ADDRESS):
                return True
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                self.pid = 0  # (pasta exited: reaped)
                return False
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        """Close slirp4netns's exit fd and the helper's pipe (either way it exits; pasta is stopped) and reap
        it."""
        import signal

        for fd in (self.exit, self.go, self.answer):
            os.close(fd)
        if self.way.name == "pasta" and self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.pid:
            os.waitpid(self.pid, 0)


def _helper(go: int, answer: int, keep: tuple[int, ...], keeper: int,
            ranges: tuple[tuple[int, int], tuple[int, int]] | None, argv: list[str]) -> None:
    """The helper's life (see :class:`_Helper`): ``argv`` the way out, ``keep`` the fds it inherits; never
    returns."""
    uid, gid = os.getuid(), os.getgid()
    try:
        step = os.read(go, 1)
        if step == b"u" and ranges is not None:
            (ustart, ucount), (gstart, gcount) = ranges
            code = 0
            for tool, own, start, count in (("newuidmap", uid, ustart, ucount), ("newgidmap", gid, gstart, gcount)):
                code = code or os.spawnvp(os.P_WAIT, tool, [tool, str(keeper), "0", str(own), "1", "1", str(start),
                                                            str(count)])
            os.write(answer, b"0" if code == 0 else b"1")
            step = os.read(go, 1)
        if step == b"s":
            for fd in keep:
                os.set_inheritable(fd, True)
            os.execv(argv[0], argv)
    finally:
        os._exit(1)


def _unshare_user() -> None:
    import errno

    from ..errors import EnvironmentProblem

    try:
        linux.unshare(linux.CLONE_NEWUSER)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EPERM, errno.EUSERS):
            raise EnvironmentProblem(
                f"rootless labs need user namespaces, and this machine refuses them ({os.strerror(exc.errno)}): "
                "have root allow them (sysctl user.max_user_namespaces=15000, or "
                "kernel.unprivileged_userns_clone=1) or run nslab as root") from None
        raise


def _mounts(root: str) -> None:
    linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWNET | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC)
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    for d in (paths.NETNS_DIR, paths.ETC_NETNS_DIR):
        if not os.path.isdir(d):
            _writable(os.path.dirname(d), root)
            os.mkdir(d, 0o755)
        linux.mount("tmpfs", d, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=755")
    resolv = paths.keeper_resolv_conf(root)
    with open(resolv, "w") as fh:
        fh.write(f"# nslab rootless: slirp4netns's resolver\nnameserver {SLIRP_DNS}\n")
    linux.mount(resolv, "/etc/resolv.conf", None, linux.MS_BIND)


def _writable(parent: str, root: str) -> None:
    """Make ``parent`` (``/run``, ``/etc``) writable in the keeper's mount namespace, so that a missing
    ``/run/netns`` or ``/etc/netns`` can be made there, showing what it showed: an overlay when the kernel
    allows one, else (``parent`` has mounts on it, which an overlay's lower layer would look beneath: EINVAL) a
    tmpfs with each entry of ``parent`` bound back."""
    import errno

    try:
        _overlay(parent, root)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        _rebuilt(parent)


def _rebuilt(parent: str) -> None:
    """A tmpfs over ``parent`` with every entry of it bound back (its symlinks copied): nothing beneath a mount
    is revealed, which is what the kernel asks of a user namespace."""
    held: list[tuple[str, str | int]] = []
    for entry in sorted(os.listdir(parent)):
        path = os.path.join(parent, entry)
        if os.path.islink(path):
            held.append((entry, os.readlink(path)))
        else:
            held.append((entry, os.open(path, os.O_PATH | os.O_CLOEXEC)))
    mode = os.stat(parent).st_mode & 0o7777
    linux.mount("tmpfs", parent, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, f"mode={mode:o}")
    for entry, what in held:
        target = os.path.join(parent, entry)
        if isinstance(what, str):
            os.symlink(what, target)
            continue
        if os.path.isdir(f"/proc/self/fd/{what}"):
            os.mkdir(target)
        else:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o600))
        linux.mount(f"/proc/self/fd/{what}", target, None, linux.MS_BIND | linux.MS_REC)
        os.close(what)


def _overlay(parent: str, root: str) -> None:
    """An overlay over ``parent`` whose upper layer is a tmpfs of the keeper's (in the user's state root), with
    the mounts that were under ``parent`` bound back on top (an overlay shows its lower directory without
    them). The kernel refuses it (EINVAL) when ``parent`` has mounts on it that the user may not look beneath;
    the scratch tmpfs is then taken away again."""
    from ..drivers.procfs import mounts

    scratch = os.path.join(root, f".overlay{parent.replace('/', '-')}")
    os.makedirs(scratch, exist_ok=True)
    linux.mount("tmpfs", scratch, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=700")
    for layer in ("upper", "work"):
        os.mkdir(os.path.join(scratch, layer))
    below = sorted({m.point for m in mounts() if m.point.startswith(parent + "/")})
    top = [p for p in below if not any(p.startswith(q + "/") for q in below)]  # (their own come with MS_REC)
    held: list[tuple[str, int]] = []  # what is seen at each point now (a mount shadowed since: not listed)
    for point in top:
        try:
            held.append((point, os.open(point, os.O_PATH | os.O_CLOEXEC)))
        except FileNotFoundError:
            continue
    try:
        try:
            linux.mount("overlay", parent, "overlay", 0,
                        f"lowerdir={parent},upperdir={scratch}/upper,workdir={scratch}/work")
        except OSError:
            linux.umount(scratch)
            os.rmdir(scratch)
            raise
        for point, fd in held:
            linux.mount(f"/proc/self/fd/{fd}", point, None, linux.MS_BIND | linux.MS_REC)
    finally:
        for _, fd in held:
            os.close(fd)


def _lo_up() -> None:
    import subprocess

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def _labs_left(root: str) -> bool:
    return bool(_lab_dirs(root))


# --- published ports: the keeper relays them from sockets made on the machine ------------------------------


def _published(root: str) -> list[dict[str, Any]]:
    """The published ports of the user's labs, as their state records them (features/firewall's record)."""
    import json

    found: list[dict[str, Any]] = []
    for lab in _lab_dirs(root):
        try:
            with open(os.path.join(root, lab, "state.json")) as fh:
                ports = (json.load(fh).get("firewall") or {}).get("ports") or []
        except (OSError, ValueError, AttributeError):
            continue
        found += [{**p, "lab": lab} for p in ports if isinstance(p, dict) and p.get("host_port")]
    return found


def wanted_relays(root: str) -> list[dict[str, Any]]:
    """What the keeper relays from the machine for the user's published ports (loopproxy entries, and the lab
    of each). IPv4: on the address written (``0.0.0.0``: all of the machine's) to the host's IPv4 address. IPv6
    (hosts with an IPv6 address): ``PORT`` and ``[::]:PORT`` on every IPv6 address of the machine,
    ``[::1]:PORT`` and ``127.0.0.1:PORT`` on ``::1`` (as root's relay does), an IPv6 address on itself."""
    wanted = []
    for p in _published(root):
        host_ip = p.get("host_ip", "")
        if ":" not in host_ip:
            wanted.append({"listen": host_ip, "port": int(p["host_port"]), "proto": p["proto"],
                           "to": p["address"], "to_port": int(p["port"]), "lab": p["lab"]})
        if not p.get("address6"):
            continue
        if host_ip in ("0.0.0.0", "::"):
            listen = "::"
        elif host_ip == "::1" or host_ip.startswith("127."):
            listen = "::1"
        elif ":" in host_ip:
            listen = host_ip
        else:
            continue  # (one IPv4 address of the machine: nothing of IPv6)
        wanted.append({"listen": listen, "port": int(p["host_port"]), "proto": p["proto"], "to": p["address6"],
                       "to_port": int(p["port"]), "lab": p["lab"]})
    return wanted


def sync_now(root: str) -> None:
    """A command's part once it changed the labs: the keeper nudged (SIGUSR1) to make its relays those of the
    labs at once; returns once it has (at most :data:`SYNC_WAIT` seconds), so the labs' ports answer when the
    command is done."""
    import signal
    import time

    pid = running(root)
    if pid is None:
        return
    before = _synced(root)
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError:
        return
    deadline = time.monotonic() + SYNC_WAIT
    while _synced(root) == before and time.monotonic() < deadline:
        time.sleep(0.002)


def _synced(root: str) -> str:
    try:
        with open(paths.keeper_synced(root)) as fh:
            return fh.read()
    except OSError:
        return ""


def _lab_dirs(root: str) -> list[str]:
    try:
        entries = os.listdir(root)
    except OSError:
        return []
    return [e for e in entries if paths.is_lab_name(e) and os.path.isdir(os.path.join(root, e))]


class _Binder:
    """A child forked before the keeper leaves the machine's namespaces: on the keeper's request it makes a
    listening socket in the machine's network namespace, as the user, and hands it over (SCM_RIGHTS). The
    keeper relays what arrives there to the lab hosts' addresses from inside (slirp4netns 1.2's ``add_hostfwd``
    parses ``host_addr`` as IPv4, and refuses ``::`` or ``::1``; pasta has no such API)."""

    def __init__(self) -> None:
        import socket

        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            self.sock.close()
            _bind_for_keeper(theirs)
        theirs.close()

    def listen(self, entry: dict[str, Any]) -> socket.socket:
        """A socket listening on the machine at ``entry``'s ``listen``, ``port`` and ``proto``; OSError saying
        why not."""
        import json
        import socket

        self.sock.send(json.dumps({k: entry[k] for k in ("listen", "port", "proto")}).encode())
        said, fds, _, _ = socket.recv_fds(self.sock, 4096, 1)
        if not fds:
            raise OSError(said.decode(errors="replace") or "the keeper's binder is gone")
        return socket.socket(fileno=fds[0])

    def stop(self) -> None:
        self.sock.close()  # (the binder reads the end of its socket and exits)
        os.waitpid(self.pid, 0)


def _bind_for_keeper(sock: socket.socket) -> None:
    import json
    import socket

    from .loopproxy import listener

    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        while data := sock.recv(4096):
            entry: dict[str, Any] = {}
            try:
                entry = json.loads(data)
                made = listener(entry)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                where = str(entry.get("listen"))
                where = f"[{where}]" if ":" in where else where
                sock.send(f"cannot listen on the machine's {where}:{entry.get('port')}/{entry.get('proto')}: "
                          f"{why}".encode())
                continue
            socket.send_fds(sock, [b"ok"], [made.fileno()])
            made.close()
    finally:
        os._exit(0)


def _write_unrelayed(root: str, failing: dict[str, list[str]]) -> None:
    import json

    path = paths.keeper_unrelayed(root)
    if not failing:
        if os.path.exists(path):
            os.unlink(path)
        return
    with open(path + ".new", "w") as fh:
        json.dump(failing, fh)
    os.replace(path + ".new", path)


def unrelayed(root: str) -> dict[str, list[str]]:
    """The published ports the keeper cannot relay now, by lab: one line each (``status`` says them)."""
    import json

    try:
        with open(paths.keeper_unrelayed(root)) as fh:
            found = json.load(fh)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _drained(fd: int) -> bool:
    """Read what waits on the non-blocking ``fd``; False once there is nothing (more)."""
    try:
        return bool(os.read(fd, 512))
    except BlockingIOError:
        return False


class _Relays:
    """The keeper's published ports: one loopproxy relay per port and family, listening on the machine (sockets
    from the :class:`_Binder`), connecting to the lab host's address in the keeper's network namespace."""

    def __init__(self, binder: _Binder):
        import selectors
        import signal

        self.binder = binder
        self.selector = selectors.DefaultSelector()
        # a command's nudge (SIGUSR1, :func:`sync_now`) wakes the loop through this pipe: sync at once
        self.woken, wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake)
        signal.signal(signal.SIGUSR1, lambda _signum, _frame: None)
        self.selector.register(self.woken, selectors.EVENT_READ, ("nudge", None))
        self.proxies: dict[str, LoopbackProxy] = {}
        self.said: set[str] = set()  # failures already logged (they are tried again each second)

    def sync(self, root: str) -> list[str]:
        """Relays for the user's labs' published ports, no others; one line per new failure (all of them, by
        lab, in the state root for ``up`` and ``status``: :func:`unrelayed`)."""
        import json

        from .loopproxy import LoopbackProxy

        wanted = {json.dumps(e, sort_keys=True): e for e in wanted_relays(root)}
        for key in set(self.proxies) - set(wanted):
            self.proxies.pop(key).close()
        failing: dict[str, list[str]] = {}
        for key, entry in wanted.items():
            if key in self.proxies:
                continue
            try:
                self.proxies[key] = LoopbackProxy([entry], self.selector, self.binder.listen)
            except OSError as exc:
                failing.setdefault(entry["lab"], []).append(str(exc))
        new = [line for lines in failing.values() for line in lines if line not in self.said]
        self.said = {line for lines in failing.values() for line in lines}
        _write_unrelayed(root, failing)
        return new

    def wait(self, timeout: float) -> bool:
        """Relay what comes within ``timeout`` seconds; True when a command nudged the keeper meanwhile."""
        nudged = False
        for key, _ in self.selector.select(timeout):
            kind, sock = key.data
            if kind == "nudge":
                while _drained(self.woken):
                    nudged = True
                continue
            for proxy in list(self.proxies.values()):
                if proxy.owns(sock):
                    proxy.dispatch(kind, sock)
                    break
        for proxy in self.proxies.values():
            proxy.expire()
        return nudged

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()
        self.proxies = {}
        self.selector.close()


def serve(root: str, labs_left: Callable[[str], bool] = _labs_left, relays: _Relays | None = None) -> None:
    """Wait until the user's last lab is gone and no command is inside, then leave; meanwhile keep the port
    relays (``relays``) those of the user's labs' published ports, and relay."""
    import fcntl
    import time

    hold = os.open(paths.keeper_hold_file(root), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    tick = time.monotonic() + POLL
    while True:
        now = time.monotonic()
        if now < tick:
            if relays is None:
                time.sleep(tick - now)
            elif relays.wait(tick - now):
                tick = time.monotonic()  # (a command changed the labs: their ports now)
            continue
        tick = now + POLL
        _sync(root, relays)
        if labs_left(root):
            continue
        try:
            fcntl.flock(hold, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        if labs_left(root):
            fcntl.flock(hold, fcntl.LOCK_UN)
            continue
        clean(root)  # under the lock: a command waiting for it then starts a new keeper
        return


def _sync(root: str, relays: _Relays | None) -> None:
    """The relays made to match the labs' published ports; new failures to the keeper's log; then the mark a
    command's :func:`sync_now` waits for."""
    import time

    try:
        for line in relays.sync(root) if relays is not None else []:
            print(line, file=sys.stderr, flush=True)
        with open(paths.keeper_synced(root) + ".new", "w") as fh:
            fh.write(str(time.monotonic_ns()))
        os.replace(paths.keeper_synced(root) + ".new", paths.keeper_synced(root))  # (what sync_now waits for)
    except OSError as exc:  # (the state root taken away under the keeper: it leaves at the next look)
        print(f"cannot sync the published ports: {exc}", file=sys.stderr, flush=True)


# --- root's view of the users' labs (``nslab ls``, ``nslab gc --user``) ------------------------------------


class UserLabs:
    """One user's rootless labs as root sees them: the user's state root, its keeper's pid (None: gone) and
    the inode of the keeper's user namespace (0: unknown). (A plain class: no typing import on this path.)"""

    def __init__(self, user: str, uid: int, state: str, keeper: int | None, user_ns: int, labs: list[str]):
        self.user, self.uid, self.state, self.keeper, self.user_ns, self.labs = user, uid, state, keeper, user_ns, labs

    def as_dict(self) -> dict[str, object]:
        return {"user": self.user, "uid": self.uid, "state": self.state, "keeper": self.keeper,
                "labs": self.labs}


def users(roots: list[str] | None = None) -> list[UserLabs]:
    """Each user's rootless labs (root's ``ls`` and ``gc --user``), from the state roots
    :func:`nslab.paths.user_state_roots` finds, or ``roots``: only those :func:`nslab.paths.state_root_owner`
    accepts (``/run/user/UID/nslab`` or ``/tmp/nslab-UID``, owned by UID, no symlink), never a path that a
    process's environment or command line names. The pid file is the user's to write: its keeper counts only
    when :func:`_is_keeper` says so, and its user namespace only picks among the user's own (:func:`victims`)."""
    found: list[UserLabs] = []
    for root in roots if roots is not None else paths.user_state_roots():
        uid = paths.state_root_owner(root)
        recorded = _read_pid_file(root) if uid is not None else None
        if uid is None or recorded is None:
            continue
        pid, user_ns = recorded
        keeper = pid if pid > 0 and _is_keeper(pid, uid, root) else None
        if keeper is not None:
            try:
                user_ns = os.stat(f"/proc/{keeper}/ns/user").st_ino  # (the live keeper's own, whatever was written)
            except OSError:
                keeper = None
        found.append(UserLabs(_user_name(uid), uid, root, keeper, user_ns, sorted(_lab_dirs(root))))
    return found


def _read_pid_file(root: str) -> tuple[int, int] | None:
    """``(pid, user namespace inode)`` from the pid file: a regular file, not followed if a symlink, never
    waited on (a FIFO is refused), at most a line read."""
    try:
        fd = os.open(paths.keeper_pid_file(root), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_mode & 0o170000 != 0o100000:
            return None
        words = os.read(fd, 64).split()
        return int(words[0]), int(words[1]) if len(words) > 1 else 0
    except (OSError, ValueError, IndexError):
        return None
    finally:
        os.close(fd)


def _alive(pid: int, uid: int) -> bool:
    """Whether ``pid`` runs, as ``uid`` (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
        return state != "Z" and os.stat(f"/proc/{pid}").st_uid == uid
    except (OSError, IndexError):
        return False


class Proc:
    """A process as root's gc judges it: its pid, real uid, user namespace (inode) and that namespace's owner
    (NS_GET_OWNER_UID; None: not asked, or unknown)."""

    def __init__(self, pid: int, uid: int, user_ns: int, owner: int | None):
        self.pid, self.uid, self.user_ns, self.owner = pid, uid, user_ns, owner


def victims(entry: UserLabs, procs: list[Proc], machine: set[int], subids: tuple[int, int] | None) -> set[int]:
    """What root's gc kills of ``entry``'s: the processes in the user namespace its keeper holds (or, the keeper
    dead, the one its pid file records), only if that namespace is not the machine's (``machine``: the inodes of
    /proc/1/ns/user and of the caller's own, :func:`_machine_namespaces`) and is owned by the user, and only
    those whose real uid is the user's or one of the user's subordinate ids (``subids``: ``(start, count)`` of
    /etc/subuid). A pid file naming the machine's namespace, another user's, or a pid reused since, targets
    nothing that is not the user's own."""
    def ours(uid: int) -> bool:
        return uid == entry.uid or (subids is not None and subids[0] <= uid < subids[0] + subids[1])

    if not entry.user_ns or entry.user_ns in machine:
        return set()
    return {p.pid for p in procs
            if p.user_ns == entry.user_ns and p.owner == entry.uid and ours(p.uid) and p.pid != os.getpid()}


def _processes(user_ns: int, machine: set[int]) -> list[Proc]:
    """The processes in user namespace ``user_ns`` (not the machine's), with their real uid and that namespace's
    owner asked of the kernel."""
    import fcntl

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                uid = int(next(line.split()[1] for line in fh if line.startswith("Uid:")))
            fd = os.open(f"/proc/{entry}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, StopIteration, ValueError, IndexError):
            continue
        try:
            inode = os.fstat(fd).st_ino
            if inode != user_ns or inode in machine:
                continue
            owner = bytearray(4)
            fcntl.ioctl(fd, NS_GET_OWNER_UID, owner, True)
            found.append(Proc(int(entry), uid, inode, int.from_bytes(owner, sys.byteorder)))
        except OSError:
            continue
        finally:
            os.close(fd)
    return found


#: ioctl on a user namespace file: the uid of its owner (linux/nsfs.h).
NS_GET_OWNER_UID = 0xB704


def stop_user(entry: UserLabs) -> str:
    """Root's ``gc --user``: kill what runs in a user's keeper's namespaces (:func:`victims`; slirp4netns exits
    with the keeper) and remove the user's state root as the user. Returns what was done, one line."""
    killed = _stop(entry)
    return (f"stopped the rootless labs of {entry.user} (uid {entry.uid}; labs: {', '.join(entry.labs) or 'none'}):"
            f" {killed} process(es) killed, {entry.state} removed")


def _stop(entry: UserLabs) -> int:
    """Kill the processes of a user's keeper's namespaces (:func:`victims`), then remove the state root in a
    child that became the user (:func:`_remove_as`)."""
    import signal

    machine = _machine_namespaces()
    name = _user_name(entry.uid)
    chosen = victims(entry, _processes(entry.user_ns, machine), machine, subordinate(name, entry.uid, "/etc/subuid"))
    for victim in chosen:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if not _remove_as(entry.uid, _group_of(entry), entry.state):
        print(f"nslab: {entry.state} could not be removed as {entry.user} (uid {entry.uid}): what is left there "
              "is not the user's to remove", file=sys.stderr)
    return len(chosen)


def _machine_namespaces() -> set[int]:
    """The user namespaces that are not a user's: the machine's (/proc/1/ns/user, when this process may look:
    inside a container it may not) and the caller's own (root's gc runs in the machine's)."""
    found = {os.stat("/proc/self/ns/user").st_ino}
    try:
        found.add(os.stat("/proc/1/ns/user").st_ino)
    except OSError:
        pass
    return found


def _group_of(entry: UserLabs) -> int:
    import pwd

    try:
        return pwd.getpwuid(entry.uid).pw_gid
    except KeyError:
        return os.lstat(entry.state).st_gid


def _remove_as(uid: int, gid: int, root: str) -> bool:
    """Remove ``root`` in a child that dropped to ``uid``/``gid`` (no supplementary groups, none of this process's
    files open; a caller that is not root must be ``uid`` already): root never deletes on a user's behalf, so a
    symlink the user swaps in leads nowhere the user could not already remove. Whether it is gone."""
    import shutil

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd in [int(f) for f in os.listdir("/proc/self/fd") if int(f) > 2]:
                try:
                    os.close(fd)
                except OSError:
                    pass
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
            if os.geteuid() == uid and os.getuid() == uid:
                shutil.rmtree(root, ignore_errors=True)
                code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)
    return not os.path.lexists(root)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m nslab.daemons.keeper STATE_ROOT", file=sys.stderr)
        return 2
    from ..errors import EnvironmentProblem
    from .wayout import choose, record

    root = argv[0]
    helper = None
    binder = _Binder()  # (first: the helper's pipes are not the binder's to hold)
    try:
        way = choose()
        helper = _Helper(root, way)
        helper.user_namespace()
        _mounts(root)
        _lo_up()
        helper.connect()
        record(root, way)
    except Exception as exc:  # one line to the command that started us; a traceback to the log if unexpected
        if not isinstance(exc, EnvironmentProblem):
            import traceback

            traceback.print_exc()
        if helper is not None:
            helper.stop()
        binder.stop()
        print(str(exc) if isinstance(exc, EnvironmentProblem) else
              f"the rootless keeper failed: {exc} (its log: {paths.keeper_log(root)})", flush=True)
        return 1
    relays = _Relays(binder)  # (before the pid file: a command's nudge is caught)
    with open(paths.keeper_pid_file(root), "w") as fh:
        fh.write(f"{os.getpid()} {os.stat('/proc/self/ns/user').st_ino}\n")  # (root's gc: what to kill)
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        serve(root, relays=relays)
    finally:
        relays.close()
        binder.stop()
        helper.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
