"""Entering namespaces to run a command: the primitive behind ``nslab exec``, ``shell`` and ``Lab.exec``.

Replaces ``ip netns exec NAME CMD`` and ``nsenter --net=/run/netns/NAME CMD``. The semantics are those of
``ip netns exec``: setns(net) [+ setns(uts)], then a private mount namespace (``/`` made rslave) in which
``/sys`` is remounted for the new network namespace and every file of ``/etc/netns/NAME/`` is bind-mounted
over its ``/etc`` twin (this is how a host gets its own resolv.conf and hosts).

:func:`enter_host` changes the *calling process*, so it is used right before ``exec`` (the CLI) or in a
freshly forked child (``preexec_fn``, the API). It imports nothing heavy: the exec path stays fast.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from . import linux
from .errors import KernelError, TargetError
from .targets import Target

NETNS_DIR = "/run/netns"
ETC_NETNS_DIR = "/etc/netns"


def _open_ns(path: str, what: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TargetError(f"{what} does not exist ({path})") from None
    except OSError as exc:
        raise TargetError(f"cannot open {what} ({path}): {exc.strerror}") from None


def enter_host(namespace: str, uts_path: str | None = None) -> None:
    """Make the calling (single-threaded) process live in host ``namespace`` as ``ip netns exec`` does."""
    net_fd = _open_ns(os.path.join(NETNS_DIR, namespace), f"namespace {namespace}")
    uts_fd = _open_ns(uts_path, f"hostname namespace of {namespace}") if uts_path else None
    try:
        linux.setns(net_fd, linux.CLONE_NEWNET)
        if uts_fd is not None:
            linux.setns(uts_fd, linux.CLONE_NEWUTS)
    except OSError as exc:
        raise KernelError(f"cannot enter {namespace}: {exc.strerror}") from None
    finally:
        os.close(net_fd)
        if uts_fd is not None:
            os.close(uts_fd)
    etc_dir = os.path.join(ETC_NETNS_DIR, namespace)
    try:
        entries = os.listdir(etc_dir)
    except FileNotFoundError:
        entries = []
    _private_mounts(namespace, entries)


def _etc_entries(name: str | None) -> list[str]:
    if not name:
        return []
    try:
        return os.listdir(os.path.join(ETC_NETNS_DIR, name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _private_mounts(namespace: str | None, etc_entries: Sequence[str]) -> None:
    try:
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount("none", "/", None, linux.MS_SLAVE | linux.MS_REC)
    except OSError as exc:
        raise KernelError(f"cannot make a private mount namespace: {exc.strerror}") from None
    # /sys shows the network namespace of whoever mounted it: remount it so /sys/class/net is ours.
    try:
        linux.umount("/sys")
        linux.mount(namespace or "sysfs", "/sys", "sysfs", 0)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT, errno.EPERM):
            raise KernelError(f"cannot remount /sys: {exc.strerror}") from None
    etc_dir = os.path.join(ETC_NETNS_DIR, namespace or "")
    for entry in etc_entries:
        source = os.path.join(etc_dir, entry)
        target = os.path.join("/etc", entry)
        if not os.path.exists(target):
            continue  # ip netns exec skips these too; there is nothing to bind over
        try:
            linux.mount(source, target, "none", linux.MS_BIND)
        except OSError as exc:
            raise KernelError(f"cannot bind {source} over {target}: {exc.strerror}") from None


def exec_in_host(
    namespace: str,
    argv: Sequence[str],
    uts_path: str | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Replace this process with ``argv`` running inside the host. Returns only by raising."""
    enter_host(namespace, uts_path)
    try:
        if env is None:
            os.execvp(argv[0], list(argv))
        os.execvpe(argv[0], list(argv), dict(env))
    except FileNotFoundError:
        raise TargetError(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise TargetError(f"permission denied: {argv[0]}") from None


def run_in_host(
    namespace: str,
    argv: Sequence[str],
    uts_path: str | None = None,
    **popen_kwargs: object,
) -> subprocess.CompletedProcess:
    """``subprocess.run`` inside the host: the child enters the namespaces before it execs."""
    if not os.path.exists(os.path.join(NETNS_DIR, namespace)):
        raise TargetError(f"namespace {namespace} does not exist")

    def child() -> None:
        enter_host(namespace, uts_path)

    return subprocess.run(list(argv), preexec_fn=child, **popen_kwargs)  # type: ignore[call-overload]


# ----------------------------------------------------------------------------------------------
# Any target (nslab.targets): net of A [+ uts of A] [+ mount of B] [+ pid of C]
# ----------------------------------------------------------------------------------------------


@dataclass
class ExecOptions:
    """What ``nslab exec`` enters and how it starts the command (the flags of the CLI)."""

    uts: bool = False
    mount_from: Target | None = None
    pid_from: Target | None = None
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    detach: bool = False


def enter_target(target: Target, options: ExecOptions | None = None) -> None:
    """Move the calling (single-threaded) process into ``target`` as ``ip netns exec`` / ``nsenter`` do.

    Network always; UTS when asked (lab hosts: whenever their UTS namespace is kept); the mount namespace of
    ``mount_from`` (else a private copy of ours with /sys remounted and /etc/netns/NAME/* bound over /etc);
    the PID namespace of ``pid_from`` for the children forked afterwards. Every file is opened (and checked)
    before anything changes, so a bad target fails with the process untouched.
    """
    options = options or ExecOptions()
    fds: list[tuple[int, int, str]] = []
    try:
        fds.append((target.open("net"), linux.CLONE_NEWNET, "network"))
        if options.uts or target.uts_path:
            fds.append((target.open("uts"), linux.CLONE_NEWUTS, "hostname"))
        if options.pid_from is not None:
            fds.append((options.pid_from.open("pid"), linux.CLONE_NEWPID, "PID"))
        if options.mount_from is not None:
            fds.append((options.mount_from.open("mnt"), linux.CLONE_NEWNS, "mount"))
        for fd, nstype, what in fds:
            try:
                linux.setns(fd, nstype)
            except OSError as exc:
                raise KernelError(f"cannot enter the {what} namespace of {target.text}: {exc.strerror}") from None
    finally:
        for fd, _, _ in fds:
            os.close(fd)
    if options.mount_from is None:
        _private_mounts(target.netns_name, _etc_entries(target.netns_name))
    else:
        # Their filesystem; our own copy of its mount table so /sys can show *this* network namespace.
        _private_mounts(None, [])


def _switch_user(user: str, env: dict[str, str]) -> None:
    import pwd

    name, _, group = user.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        entry = None
        if not name.isdigit():
            raise TargetError(f"--user: no user '{name}' in the target's /etc/passwd") from None
    uid = entry.pw_uid if entry else int(name)
    gid = entry.pw_gid if entry else uid
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            import grp

            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise TargetError(f"--user: no group '{group}' in the target's /etc/group") from None
    try:
        os.setgroups(os.getgrouplist(entry.pw_name, gid) if entry else [gid])
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        raise KernelError(f"cannot become user {user}: {exc.strerror}") from None
    if entry:
        env.setdefault("HOME", entry.pw_dir)
        env.setdefault("USER", entry.pw_name)
        env.setdefault("LOGNAME", entry.pw_name)


def prepare_process(options: ExecOptions, base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """After entering: user, working directory, environment. Returns the environment for exec."""
    env = dict(os.environ if base_env is None else base_env)
    wanted = dict(options.env)
    if options.user:
        _switch_user(options.user, wanted)
    if options.workdir:
        try:
            os.chdir(options.workdir)
        except OSError as exc:
            raise TargetError(f"--workdir {options.workdir}: {exc.strerror}") from None
    env.update(wanted)
    return env


def _exec(argv: Sequence[str], env: Mapping[str, str]) -> None:
    try:
        os.execvpe(argv[0], list(argv), dict(env))
    except FileNotFoundError:
        raise TargetError(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise TargetError(f"permission denied: {argv[0]}") from None
    except OSError as exc:
        raise TargetError(f"cannot run {argv[0]}: {exc.strerror}") from None


def exec_in_target(target: Target, argv: Sequence[str], options: ExecOptions | None = None) -> int:
    """Run ``argv`` in ``target``: replaces this process (signals reach the command directly), except with
    ``pid_from`` (a new PID namespace only applies to children) or ``detach``, which fork. Returns the exit
    status in the forked cases (for ``detach``: 0 once the command started; its pid is printed)."""
    options = options or ExecOptions()
    enter_target(target, options)
    env = prepare_process(options)
    if not options.detach and options.pid_from is None:
        _exec(argv, env)
    return _fork_exec(argv, env, options.detach)


def _fork_exec(argv: Sequence[str], env: Mapping[str, str], detach: bool) -> int:
    import signal
    import sys

    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: exec, or report why not through the pipe
        try:
            os.close(read_end)
            if detach:
                os.setsid()
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
            os.execvpe(argv[0], list(argv), dict(env))
        except OSError as exc:
            os.write(write_end, str(exc.errno).encode())
        finally:
            os._exit(127)
    os.close(write_end)
    report = os.read(read_end, 64)
    os.close(read_end)
    if report:
        os.waitpid(pid, 0)
        code = int(report)
        if code == errno.ENOENT:
            raise TargetError(f"command not found: {argv[0]}")
        raise TargetError(f"cannot run {argv[0]}: {os.strerror(code)}")
    if detach:
        print(pid, flush=True)
        return 0
    # The terminal's Ctrl-C / Ctrl-\ reach the child (same process group): we only wait for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    _, status = os.waitpid(pid, 0)
    sys.stdout.flush()
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def run_in_target(
    target: Target,
    argv: Sequence[str],
    options: ExecOptions | None = None,
    **popen_kwargs: object,
) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a target (the API form of ``nslab exec``; no ``detach``/``pid_from``)."""
    options = options or ExecOptions()
    # Open everything now: a bad target is reported here, not as a failing preexec_fn.
    for kind in ("net", *(("uts",) if options.uts or target.uts_path else ())):
        os.close(target.open(kind))
    if options.mount_from is not None:
        os.close(options.mount_from.open("mnt"))
    env = dict(popen_kwargs.pop("env", None) or os.environ)  # type: ignore[call-overload]
    env.update(options.env)

    def child() -> None:
        enter_target(target, options)
        if options.user:
            _switch_user(options.user, {})
        if options.workdir:
            os.chdir(options.workdir)

    return subprocess.run(list(argv), preexec_fn=child, env=env, **popen_kwargs)  # type: ignore[call-overload]


@contextlib.contextmanager
def enter(target: Target | str) -> Iterator[Target]:
    """Switch the *calling thread* into the target's network namespace; back on exit.

    Sockets opened inside belong to the target's network (e.g. connect to its 127.0.0.1)::

        with nslab.enter("container:app"):
            socket.create_connection(("127.0.0.1", 8080))
    """
    if isinstance(target, str):
        from .targets import resolve

        target = resolve(target)
    fd = target.open("net")
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            linux.setns(fd, linux.CLONE_NEWNET)
        except OSError as exc:
            raise KernelError(f"cannot enter {target.text}: {exc.strerror}") from None
        finally:
            os.close(fd)
        try:
            yield target
        finally:
            linux.setns(home, linux.CLONE_NEWNET)
    finally:
        os.close(home)
