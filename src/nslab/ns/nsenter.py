"""Entering namespaces to run a command: the primitive behind ``nslab exec``, ``shell`` and ``Lab.exec``.

Replaces ``ip netns exec NAME CMD`` and ``nsenter --net=/run/netns/NAME CMD``. The semantics are those of
``ip netns exec``: setns(net) [+ setns(uts)], then a private mount namespace (``/`` made rslave) in which
``/sys`` is remounted for the new network namespace and every file of ``/etc/netns/NAME/`` is bind-mounted
over its ``/etc`` twin (this is how a host gets its own resolv.conf and hosts).

Two ways in:

* :func:`enter_host` / :func:`enter_target` change the *calling process*; the CLI calls them right before
  ``exec`` (signals then reach the command directly).
* :func:`run_in_target` (the API) never changes the caller: a short-lived thread unshares its filesystem
  context, enters the namespaces and spawns the command from there (children inherit the namespaces of the
  thread that forks them). No ``preexec_fn``, so CPython can use vfork; no ``ip`` binary to load.
* :func:`enter` moves only the calling *thread* into a target's network namespace, and back (sockets).

This module is on the ``nslab exec`` fast path: it imports only ``os``, ``errno``, paths.py and the ctypes
wrappers at load time; ``subprocess``, ``threading``, ``pwd``/``grp`` and the target resolver are imported where
they are used.
"""

from __future__ import annotations

import errno
import os

from .. import linux, paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (fast path)
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Mapping, Sequence
    from types import ModuleType
    from typing import Any, TypeVar

    from .targets import Target

    R = TypeVar("R")


def _errors() -> ModuleType:
    """The exception tree, imported when something fails: ``nslab exec`` succeeds without loading it."""
    from .. import errors

    return errors


def _open_ns(path: str, what: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _errors().TargetError(f"{what} does not exist ({path})") from None
    except OSError as exc:
        raise _errors().TargetError(f"cannot open {what} ({path}): {exc.strerror}") from None


def _need_root() -> None:
    if os.geteuid() != 0:
        from ..errors import EnvironmentProblem

        raise EnvironmentProblem("entering another network namespace needs root (CAP_SYS_ADMIN): "
                                 "run it with sudo, e.g. sudo nslab exec ...")


def enter_host(namespace: str, uts_path: str | None = None) -> None:
    """Make the calling (single-threaded) process live in host ``namespace`` as ``ip netns exec`` does."""
    _need_root()
    net_fd = _open_ns(paths.netns_path(namespace), f"namespace {namespace}")
    try:
        uts_fd = _open_ns(uts_path, f"hostname namespace of {namespace}") if uts_path else None
    except BaseException:
        os.close(net_fd)
        raise
    try:
        linux.setns(net_fd, linux.CLONE_NEWNET)
        if uts_fd is not None:
            linux.setns(uts_fd, linux.CLONE_NEWUTS)
    except OSError as exc:
        raise _errors().KernelError(f"cannot enter {namespace}: {exc.strerror}") from None
    finally:
        os.close(net_fd)
        if uts_fd is not None:
            os.close(uts_fd)
    _private_mounts(namespace, _etc_entries(namespace))


def _etc_entries(name: str | None) -> list[str]:
    if not name:
        return []
    try:
        return os.listdir(paths.etc_netns_dir(name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _private_mounts(namespace: str | None, etc_entries: Sequence[str]) -> None:
    try:
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount("none", "/", None, linux.MS_SLAVE | linux.MS_REC)
    except OSError as exc:
        raise _errors().KernelError(f"cannot make a private mount namespace: {exc.strerror}") from None
    # /sys shows the network namespace of whoever mounted it: remount it so /sys/class/net is ours.
    try:
        linux.umount("/sys")
        linux.mount(namespace or "sysfs", "/sys", "sysfs", 0)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT, errno.EPERM):
            raise _errors().KernelError(f"cannot remount /sys: {exc.strerror}") from None
    etc_dir = paths.etc_netns_dir(namespace or "")
    for entry in etc_entries:
        source = os.path.join(etc_dir, entry)
        target = os.path.join("/etc", entry)
        if not os.path.exists(target):
            continue  # ip netns exec skips these too; there is nothing to bind over
        try:
            linux.mount(source, target, "none", linux.MS_BIND)
        except OSError as exc:
            raise _errors().KernelError(f"cannot bind {source} over {target}: {exc.strerror}") from None


# ----------------------------------------------------------------------------------------------
# Any target (nslab.ns.targets): net of A [+ uts of A] [+ mount of B] [+ pid of C]
# ----------------------------------------------------------------------------------------------


class ExecOptions:
    """What ``nslab exec`` enters and how it starts the command (the flags of the CLI)."""

    __slots__ = ("uts", "mount_from", "pid_from", "user", "env", "workdir", "detach")

    def __init__(
        self,
        uts: bool = False,
        mount_from: Target | None = None,
        pid_from: Target | None = None,
        user: str | None = None,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        detach: bool = False,
    ) -> None:
        self.uts = uts
        self.mount_from = mount_from
        self.pid_from = pid_from
        self.user = user
        self.env = dict(env or {})
        self.workdir = workdir
        self.detach = detach


def _open_target(target: Target, options: ExecOptions) -> list[tuple[int, int, str]]:
    """Open every namespace file first: a bad target fails before anything changes."""
    fds: list[tuple[int, int, str]] = []
    try:
        fds.append((target.open("net"), linux.CLONE_NEWNET, "network"))
        if options.uts or target.uts_path:
            fds.append((target.open("uts"), linux.CLONE_NEWUTS, "hostname"))
        if options.pid_from is not None:
            fds.append((options.pid_from.open("pid"), linux.CLONE_NEWPID, "PID"))
        mount_from = options.mount_from or (target if target.inside else None)
        if mount_from is not None:
            fds.append((mount_from.open("mnt"), linux.CLONE_NEWNS, "mount"))
    except BaseException:
        for fd, _, _ in fds:
            os.close(fd)
        raise
    return fds


def _enter_opened(target: Target, options: ExecOptions, fds: list[tuple[int, int, str]]) -> None:
    try:
        for fd, nstype, what in fds:
            try:
                linux.setns(fd, nstype)
            except OSError as exc:
                raise _errors().KernelError(
                    f"cannot enter the {what} namespace of {target.text}: {exc.strerror}") from None
    finally:
        for fd, _, _ in fds:
            os.close(fd)
    if options.mount_from is None and not target.inside:
        _private_mounts(target.netns_name, _etc_entries(target.netns_name))
    else:
        # Their filesystem; our own copy of its mount table so /sys can show *this* network namespace.
        _private_mounts(None, [])


def enter_target(target: Target, options: ExecOptions | None = None) -> None:
    """Move the calling (single-threaded) process into ``target`` as ``ip netns exec`` / ``nsenter`` do.

    Network always; UTS when asked (lab hosts: whenever their UTS namespace is kept); the mount namespace of
    ``mount_from`` (else a private copy of ours with /sys remounted and /etc/netns/NAME/* bound over /etc);
    the PID namespace of ``pid_from`` for the children forked afterwards. Every file is opened (and checked)
    before anything changes, so a bad target fails with the process untouched.
    """
    _need_root()
    options = options or ExecOptions()
    _enter_opened(target, options, _open_target(target, options))


def _user_ids(user: str) -> tuple[int, int, list[int], dict[str, str]]:
    """``USER[:GROUP]`` (names looked up in the current mount namespace's /etc) -> uid, gid, groups, env."""
    import pwd

    name, _, group = user.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        entry = None
        if not name.isdigit():
            raise _errors().TargetError(f"--user: no user '{name}' in the target's /etc/passwd") from None
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
                raise _errors().TargetError(f"--user: no group '{group}' in the target's /etc/group") from None
    groups = os.getgrouplist(entry.pw_name, gid) if entry else [gid]
    env = {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name} if entry else {}
    return uid, gid, groups, env


def prepare_process(options: ExecOptions, base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """After entering: user, working directory, environment. Returns the environment for exec."""
    env = dict(os.environ if base_env is None else base_env)
    if options.user:
        uid, gid, groups, user_env = _user_ids(options.user)
        try:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
        except OSError as exc:
            raise _errors().KernelError(f"cannot become user {options.user}: {exc.strerror}") from None
        env.update(user_env)
    if options.workdir:
        try:
            os.chdir(options.workdir)
        except OSError as exc:
            raise _errors().TargetError(f"--workdir {options.workdir}: {exc.strerror}") from None
    env.update(options.env)
    return env


def exec_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """``execvp`` with nslab's errors: returns only by raising."""
    try:
        _execvp(list(argv), dict(os.environ if env is None else env))
    except OSError as exc:
        raise _errors().CommandError(argv[0], exc.errno or errno.ENOENT) from None


def _execvp(argv: list[str], env: dict[str, str]) -> None:
    """``os.execvpe`` without its ``warnings`` import (~0.4 ms of every ``nslab exec``): the first of ``PATH``'s
    directories (of ``env``) that holds ``argv[0]``; the first error other than not-found is the one raised."""
    name = argv[0]
    if "/" in name:
        os.execve(name, argv, env)
    first: OSError | None = None
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        try:
            os.execve(os.path.join(directory, name), argv, env)
        except (FileNotFoundError, NotADirectoryError) as exc:
            first = first or exc
        except OSError as exc:
            if first is None or isinstance(first, (FileNotFoundError, NotADirectoryError)):
                first = exc
    raise first or FileNotFoundError(errno.ENOENT, "no PATH", name)


def where_command_is(target: Target, argv: Sequence[str], options: ExecOptions) -> Target:
    """A container host (``target.inside``) runs a command from its own files, with its environment and working
    directory added to ours (``options`` takes them); a command it does not have runs with the machine's tools
    instead, as on a light host: in its network and hostname, with the lab's ``/etc/netns/<namespace>/*``
    over ``/etc`` (its /etc/hosts and resolv.conf say the same)."""
    if not target.inside or target.pid is None or not argv or options.mount_from is not None:
        return target
    name = str(argv[0])
    root = f"/proc/{target.pid}/root"
    found = [os.path.join(root, name.lstrip("/"))] if "/" in name else [
        os.path.join(root, d.lstrip("/"), name) for d in os.environ.get("PATH", "/usr/bin:/bin").split(":") if d]
    if any(os.path.exists(path) for path in found):
        # as docker exec: the container's environment (ours for what it does not set; -e wins), its workdir
        options.env = {**dict(e.split("=", 1) for e in target.env if "=" in e), **options.env}
        options.workdir = options.workdir or target.workdir
        return target
    from .targets import Target as Made

    return Made(target.text, target.label, target.net_path, pid=target.pid,
                netns_name=os.path.basename(target.net_path), uts_path=target.uts_path, lab=target.lab,
                host=target.host, container=target.container)


def exec_in_target(target: Target, argv: Sequence[str], options: ExecOptions | None = None) -> int:
    """Run ``argv`` in ``target``: replaces this process (signals reach the command directly), except with
    ``pid_from`` (a new PID namespace only applies to children) or ``detach``, which fork. Returns the exit
    status in the forked cases (for ``detach``: 0 once the command started; its pid is printed)."""
    options = options or ExecOptions()
    if options.user:
        _load_user_modules()
    target = where_command_is(target, argv, options)
    enter_target(target, options)
    env = prepare_process(options)
    if not options.detach and options.pid_from is None:
        exec_command(argv, env)
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
        raise _errors().CommandError(argv[0], int(report))
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


# ----------------------------------------------------------------------------------------------
# The API: spawn from a thread that is inside the target; the caller never moves
# ----------------------------------------------------------------------------------------------


def spawn_in_target(
    target: Target, argv: Sequence[str], options: ExecOptions | None = None, **popen_kwargs: Any
) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` inside a target, without touching the calling thread's namespaces.

    A new thread unshares its filesystem context (so it may get a mount namespace of its own), enters the
    target exactly as :func:`enter_target` does and starts the command; the child inherits that thread's
    namespaces. The thread then exits, dropping its private mount namespace while the caller already has
    the Popen. ``user`` and ``workdir`` are applied in the child by Popen (``user=``/``group=``/``cwd=``).
    """
    import subprocess

    options = options or ExecOptions()
    if options.detach:
        raise _errors().TargetError("detach is a CLI option; use start_new_session=True with the API")
    if options.user:
        _load_user_modules()
    command = argv if isinstance(argv, str | bytes) else list(argv)  # a string with shell=True stays one
    if isinstance(command, list):
        target = where_command_is(target, command, options)
    given_env = popen_kwargs.pop("env", None)
    env = {**(os.environ if given_env is None else given_env), **options.env}
    if options.workdir:
        popen_kwargs["cwd"] = options.workdir
    fds = _open_target(target, options)  # errors surface here, in the caller's thread

    def inside() -> subprocess.Popen[Any]:
        _enter_from_thread(target, options, fds)
        if options.user:  # names resolve against the target's /etc (mount_from)
            uid, gid, groups, user_env = _user_ids(options.user)
            popen_kwargs.update(user=uid, group=gid, extra_groups=groups)
            env.update({k: v for k, v in user_env.items() if k not in options.env})
        return subprocess.Popen(command, env=env, **popen_kwargs)

    return _spawn_from_thread(inside, fds, f"nslab-enter {target.text}")


def _enter_from_thread(target: Target, options: ExecOptions, fds: list[tuple[int, int, str]]) -> None:
    """Enter the opened namespaces from a thread of its own; the rest of the process stays where it is."""
    try:
        linux.unshare(linux.CLONE_FS)  # this thread alone may now change mount namespace and root
    except OSError as exc:
        for fd, _, _ in fds:
            os.close(fd)
        raise _errors().KernelError(f"cannot enter {target.text}: {exc.strerror}") from None
    _enter_opened(target, options, fds)


def _spawn_from_thread(
    spawn: Callable[[], subprocess.Popen[Any]], fds: list[tuple[int, int, str]], name: str
) -> subprocess.Popen[Any]:
    """Run ``spawn`` in a short-lived daemon thread and hand back its Popen, or raise what it raised.

    Not :func:`nslab.linux.in_thread`: a Ctrl-C while the command starts must not leave it running unseen,
    so the thread is waited for once more and what it started is killed before the interrupt goes on.
    """
    import threading

    outcome: list[subprocess.Popen[Any] | BaseException] = []

    def body() -> None:
        try:
            outcome.append(spawn())
        except BaseException as exc:  # handed to the caller, raised there
            outcome.append(exc)

    thread = threading.Thread(target=body, name=name, daemon=True)
    try:
        thread.start()
    except BaseException:
        for fd, _, _ in fds:
            os.close(fd)
        raise
    try:
        thread.join()
    except BaseException:  # Ctrl-C while the command starts: let it start, then do not leave it behind
        thread.join()
        if outcome and not isinstance(outcome[0], BaseException):
            outcome[0].kill()
            outcome[0].wait()
        raise
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result  # Popen's own errors (e.g. FileNotFoundError) unchanged, as subprocess.run raises them
    return result


def _load_user_modules() -> None:
    """``pwd``/``grp`` come from this machine's Python: import them before entering another filesystem
    (``--mount-from``), where ``grp``'s shared object would be looked up in the target's files."""
    for name in ("grp", "pwd"):
        __import__(name)


def run_in_target(
    target: Target,
    argv: Sequence[str],
    options: ExecOptions | None = None,
    *,
    input: str | bytes | None = None,  # (subprocess.run's name for it)
    timeout: float | None = None,
    check: bool = False,
    capture_output: bool = False,
    **popen_kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` in a target (the API form of ``nslab exec``; no ``detach``); same keywords."""
    import subprocess

    if input is not None:
        if popen_kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used")
        popen_kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        if popen_kwargs.get("stdout") is not None or popen_kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output")
        popen_kwargs["stdout"] = popen_kwargs["stderr"] = subprocess.PIPE
    with spawn_in_target(target, argv, options, **popen_kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        except BaseException:
            process.kill()
            raise
        code = process.poll()
    assert code is not None
    if check and code:
        raise subprocess.CalledProcessError(code, process.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(process.args, code, stdout, stderr)


class _Entered:
    """:func:`enter`: a :class:`nslab.linux.Visit` of the target's network namespace, its failure said as ours."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._visit: linux.Visit | None = None

    def __enter__(self) -> Target:
        fd = self.target.open("net")
        try:
            visit = linux.Visit(fd)
            visit.__enter__()
        except OSError as exc:
            raise _errors().KernelError(f"cannot enter {self.target.text}: {exc.strerror}") from None
        finally:
            os.close(fd)  # (a namespace entered stays while the thread is in it)
        self._visit = visit
        return self.target

    def __exit__(self, *exc: object) -> None:
        if self._visit is not None:
            self._visit.__exit__()
            self._visit = None


def run_in(target: Target, work: Callable[[], R], name: str) -> R:
    """``work()`` in the target's network namespace, from a short-lived thread (the caller never moves)."""

    def inside() -> R:
        with enter(target):
            return work()

    return linux.in_thread(inside, name)


def enter(target: Target | str) -> _Entered:
    """Switch the *calling thread* into the target's network namespace; back on exit.

    Sockets opened inside belong to the target's network (e.g. connect to its 127.0.0.1)::

        with nslab.enter("container:app"):
            socket.create_connection(("127.0.0.1", 8080))
    """
    if isinstance(target, str):
        from .targets import resolve

        target = resolve(target)
    return _Entered(target)
