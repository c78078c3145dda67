"""``nslab run``: one command in a fresh network namespace that lives exactly as long as the command;
``nslab gc``: remove what a killed run or lab left behind.

``--network none`` (the default) is ``unshare -n``: nslab itself moves into a new network namespace (and a
private mount namespace with /sys remounted), brings ``lo`` up and execs the command, so the namespace dies
with the command and nothing can be left behind, whatever kills it.

``--network nat|internal`` generates a one-host throwaway lab ``run-<pid>`` (network ``net``, host ``main``)
brought up the way ``nslab up`` does it (core/load.py, core/lifecycle.py), so NAT, ``internal``, ``--publish``
and ``--dns`` behave exactly as in lab files. nslab stays as the parent: it forwards SIGTERM/SIGHUP to the
command (Ctrl-C reaches it through the terminal's process group), returns its exit status and takes the lab
down afterwards. If nslab itself is killed (SIGKILL), ``nslab gc`` finds the lab by its name and dead owner
(``run.json`` in its state dir records the owner's pid and start time, so a reused pid does not keep it alive).

``gc`` removes what a killed run or lab left: a state whose namespaces are gone, links whose alias names a
lab without state (naming.py's ownership marks), ``/run/netns/run-*-main`` names without state — the
``ip netns del`` / ``ip link del`` a person would type after reading ``ip netns`` and ``ip -d link``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import linux, naming, paths
from ..core import state
from ..drivers import files, procfs
from ..errors import CommandError, NslabError, Problem, ResolveError, SpecError, TargetError
from ..model import NO_CONTAINMENT, Containment
from ..ns import nsenter
from ..values import replace

if TYPE_CHECKING:
    from ..ns.targets import Target

RUN_NAME = re.compile(r"^run-(\d+)([a-z]?)$")
OWNER_FILE = "run.json"
HOST = "main"
NETWORK = "net"
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 1
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def loopback_up() -> None:
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack_from("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0)))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def enter_fresh() -> None:
    """Move the calling (single-threaded) process into a new network namespace with only ``lo`` (up)."""
    try:
        linux.unshare(linux.CLONE_NEWNET)
    except OSError as exc:
        from ..errors import KernelError

        raise KernelError(f"cannot make a network namespace: {exc.strerror}") from None
    nsenter._private_mounts(None, [])
    loopback_up()


def lab_document(name: str, network: str, publish: Sequence[str] = (), dns: Sequence[str] = ()) -> dict[str, Any]:
    host: dict[str, Any] = {"networks": [NETWORK]}
    if publish:
        host["publish"] = list(publish)
    if dns:
        host["dns"] = list(dns)
    return {"name": name, "networks": {NETWORK: {"internal": network == "internal"}}, "hosts": {HOST: host}}


def _free_name() -> str:
    base = f"run-{os.getpid()}"
    taken = set(state.lab_names())
    suffixes: list[str] = ["", *"abcdefghijklmnopqrstuvwxyz"]
    for suffix in suffixes:
        if base + suffix not in taken:
            return base + suffix
    raise TargetError("too many runs at once in this process")


class Throwaway:
    """A one-host lab for one command: ``up()``, then :attr:`target`, then ``down()`` (always)."""

    def __init__(self, network: str, publish: Sequence[str] = (), dns: Sequence[str] = ()):
        if network not in ("nat", "internal"):
            raise TargetError(f"--network {network}: use none, nat or internal")
        self.network, self.publish, self.dns = network, list(publish), list(dns)
        self.name = ""
        self.is_up = False

    def up(self) -> None:
        from ..core import lifecycle, load

        with state.machine_lock():
            self.name = _free_name()
            os.makedirs(paths.lab_dir(self.name), exist_ok=True)  # reserve the name (gc: owner check)
            self._write_owner()
        doc = lab_document(self.name, self.network, self.publish, self.dns)
        self.is_up = True  # from here on down() must run, even if up() fails half-way
        try:
            lab_file = load.from_text(json.dumps(doc), f"<nslab run {self.name}>")  # (no path: no file to clash with)
            lifecycle.up(lab_file)
        except (SpecError, ResolveError) as exc:
            raise ResolveError([self._as_option(p) for p in exc.problems]) from None
        self._write_owner()  # up() may have replaced the directory's contents

    def _as_option(self, problem: Problem) -> Problem:
        """A problem of the one-host lab, told in ``run``'s terms: the option it comes from, no lab file."""
        field = problem.field
        if field.startswith(f"hosts.{HOST}.publish[") and field.endswith("]"):
            index = int(field[len(f"hosts.{HOST}.publish["):-1])
            field = f"-p {self.publish[index]}" if index < len(self.publish) else "-p"
        elif ".dns" in f".{field}":
            field = "--dns"
        else:
            field = ""
        return Problem(problem.message, field)

    def _write_owner(self) -> None:
        owner = {"pid": os.getpid(), "start": procfs.start_time(os.getpid())}
        files.write_json(os.path.join(paths.lab_dir(self.name), OWNER_FILE), owner)

    def picked_ports(self) -> list[str]:
        """Ports published on host ports nslab picked (``-p 80``), as ``docker port`` prints them."""
        from ..core.features.firewall.record import FirewallRecord, docker_port_lines

        recorded = state.LabState.load(self.name) if self.is_up else None
        record = FirewallRecord.from_json(recorded.extra.get("firewall") if recorded else None)
        return [line for p in record.ports if p.picked for line in docker_port_lines(p)]

    @property
    def target(self) -> Target:
        from ..ns.targets import resolve

        return resolve(f"{self.name}/{HOST}")

    def down(self) -> None:
        if not self.is_up:
            return
        from ..core.lifecycle import down

        try:
            down(self.name)
        finally:
            if not os.path.exists(paths.state_file(self.name)):
                state.remove(self.name)  # the reservation (run.json) of a lab that never got a state
            self.is_up = False


def confine(contain: Containment, close: tuple[int, ...] = ()) -> dict[str, str]:
    """After entering the command's namespaces: a PID namespace of its own, mounts, user and capabilities
    (ns/contain.py); the environment to exec with. ``close``: see :func:`contain.fork_pid_namespace`."""
    from ..ns import contain as confinement

    if not contain.active():
        return dict(os.environ)
    if contain.pid == "private":
        confinement.fork_pid_namespace(close)
    return {**os.environ, **confinement.apply(contain)}


def containment(options: dict[str, Any]) -> Containment:
    """``nslab run``'s --user, --cap-drop.. as a containment (core/features/contain.py: as a lab file's host);
    bad values raise one ResolveError naming each option (exit 2)."""
    from ..core.features import contain

    problems: list[Problem] = []
    written = {key: value for key, value in options.items() if key in contain.FIELDS and value not in (None, (), False)}
    written = {key: value for key, value in written.items() if (key, value) != ("pid", "host")}
    built = contain.build(written, lambda path, message: problems.append(
        Problem(message, "--" + str(path[0]).replace("_", "-"))))
    if problems:
        raise ResolveError(problems)
    return built


def run_cli(argv: list[str], network: str, publish: Sequence[str] = (), dns: Sequence[str] = (),
            contain: Containment = NO_CONTAINMENT) -> int:
    """``nslab run``: returns the command's exit status (128+N if a signal N ended it); ``contain``: what
    confines the command (its ``private_tmp`` is a tmpfs of its own: the namespace is the command's alone)."""
    if contain.private_tmp and "/tmp" not in contain.mounts():
        contain = replace(contain, tmpfs=(*contain.mounts(), "/tmp"))
    if network == "none":
        enter_fresh()
        nsenter.exec_command(argv, confine(contain))  # returns only by raising
    pending: list[int] = []
    child = 0

    def on_signal(signum: int, _frame: object) -> None:
        pending.append(signum)
        # Ctrl-C typed on a terminal reaches the child itself (same process group); any other SIGINT (kill -INT
        # of nslab) is forwarded like SIGTERM and SIGHUP
        if child and (signum != signal.SIGINT or not os.isatty(0)):
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, on_signal) for sig in _FORWARDED}
    throwaway = Throwaway(network, publish, dns)
    try:
        throwaway.up()
        _rootless_forwards(throwaway.name)
        if pending:
            return 128 + pending[0]
        for line in throwaway.picked_ports():  # -p 80: say where it went (also `nslab port LAB/main`)
            os.write(2, f"nslab: published {line} ({throwaway.name}/{HOST})\n".encode())
        target = throwaway.target
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        child = os.fork()
        if child == 0:
            _child(target, argv, (read_end, write_end), previous, contain)
        os.close(write_end)
        report = os.read(read_end, 4096)
        os.close(read_end)
        _, status = os.waitpid(child, 0)
        if report.startswith(b"errno:"):
            raise CommandError(argv[0], int(report[6:]))
        if report:
            raise TargetError(report.decode(errors="replace"))
        return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    finally:
        throwaway.down()
        _rootless_forwards(None)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _rootless_forwards(lab: str | None) -> None:
    """Rootless (joined the user's keeper): the keeper's relays made to match the labs' published ports now
    (the run's command may need them at once); what cannot be published for ``lab`` said as a warning."""
    from ..core.rootless import joined

    if joined():
        from ..daemons.keeper import sync_now, unrelayed

        sync_now(paths.state_root())
        for line in unrelayed(paths.state_root()).get(lab or "", []):
            os.write(2, f"nslab: warning: not published: {line}\n".encode())


def _child(target: Target, argv: list[str], pipe: tuple[int, int], handlers: dict[signal.Signals, Any],
           contain: Containment) -> None:
    message = "cannot start the command"
    read_end, write_end = pipe
    try:
        os.close(read_end)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        nsenter.enter_target(target)
        os.execvpe(argv[0], argv, confine(contain, (write_end,)))
    except NslabError as exc:
        message = str(exc)
    except OSError as exc:
        message = f"errno:{exc.errno}"  # run_cli raises CommandError (exit 127 or 126)
    finally:
        try:
            os.write(write_end, message.encode())
        finally:
            os._exit(127)


def run(
    argv: Sequence[str],
    network: str = "none",
    publish: Sequence[str] = (),
    dns: Sequence[str] = (),
    **popen_kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """Run ``argv`` in a fresh namespace that exists only while it runs; ``subprocess.run`` keywords apply.

    ``network="none"``: loopback only. ``"nat"`` / ``"internal"``: one host on a throwaway lab network
    (egress NAT, ``publish`` and ``dns`` as in lab files). Nothing is left behind.
    """
    if network == "none":
        if publish or dns:
            raise TargetError("publish and dns need network='nat' or 'internal'")
        return subprocess.run(list(argv), preexec_fn=enter_fresh, **popen_kwargs)
    throwaway = Throwaway(network, publish, dns)
    try:
        throwaway.up()
        return nsenter.run_in_target(throwaway.target, argv, **popen_kwargs)
    finally:
        throwaway.down()


# ----------------------------------------------------------------------------------------------
# gc
# ----------------------------------------------------------------------------------------------


def _run_owner_alive(name: str) -> bool:
    """Whether the ``nslab run`` that made lab ``name`` still runs. Only its owner file (written before the run
    made anything) proves that a lab is a run at all: a lab without one — whatever its name, ``run-99999``
    too — is never judged a dead run."""
    owner = files.read_json(os.path.join(paths.lab_dir(name), OWNER_FILE))
    try:
        pid, start = int(owner["pid"]), owner.get("start")
    except (ValueError, KeyError, TypeError, AttributeError):
        return True
    return procfs.is_running(pid, start)


def _namespaces_gone(st: state.LabState) -> bool:
    hosts = list(st.lab.hosts.values())
    return bool(hosts) and not any(os.path.exists(paths.netns_path(h.namespace)) for h in hosts)


def _stale_labs(recorded: dict[str, state.LabState]) -> dict[str, str]:
    """Labs with a state whose owner or namespaces are gone -> why."""
    victims = {}
    for name, st in recorded.items():
        if RUN_NAME.match(name) and not _run_owner_alive(name):
            victims[name] = "its 'nslab run' is gone"
        elif _namespaces_gone(st):
            victims[name] = "its namespaces are gone"
    return victims


def _orphan_link_owners(recorded: dict[str, state.LabState]) -> set[str]:
    """Labs without a state that still own links on the machine (by the ownership mark in the alias)."""
    from ..drivers import rtnl

    sock = rtnl.open_socket()
    try:
        links = rtnl.links(sock, with_addresses=False)
    finally:
        sock.close()
    owners = {owner.lab for owner in map(naming.parse_owner, (lk.alias for lk in links)) if owner is not None}
    # a foreign alias that only looks like ours names no lab; a lab that is up is not an orphan
    return {lab for lab in owners if paths.is_lab_name(lab) and lab not in recorded}


def _orphan_run_namespaces(recorded: dict[str, state.LabState]) -> set[str]:
    """Runs without a state whose host namespace (``/run/netns/run-PID-main``) is still named."""
    try:
        entries = os.listdir(paths.NETNS_DIR)
    except FileNotFoundError:
        return set()
    suffix = naming.namespace_name("", HOST)  # "-main"
    runs = {entry[: -len(suffix)] for entry in entries if entry.endswith(suffix)}
    return {run for run in runs if RUN_NAME.match(run) and run not in recorded}


def _interrupted_ups(recorded: dict[str, state.LabState]) -> set[str]:
    """Labs without a state whose ``up`` was killed (its intent file names a process that is gone)."""
    out = set()
    for lab in state.labs_with_intent():
        intent = files.read_json(paths.intent_file(lab)) or {}
        pid, start = intent.get("pid"), intent.get("start")
        if lab not in recorded and isinstance(pid, int) and not procfs.is_running(pid, start):
            out.add(lab)
    return out


def _find_leftovers() -> tuple[list[str], dict[str, str]]:
    """(reserved run names to forget, labs to take down -> why); under the machine lock."""
    recorded = {st.lab.name: st for st in state.all_states()}
    reserved = [e for e in _dirs() if RUN_NAME.match(e) and e not in recorded and not _run_owner_alive(e)]
    victims = _stale_labs(recorded)
    for lab in sorted(_interrupted_ups(recorded)):
        victims.setdefault(lab, "its 'nslab up' was killed")
    for lab in sorted(_orphan_link_owners(recorded)):
        if not RUN_NAME.match(lab) or not _run_owner_alive(lab):
            victims.setdefault(lab, "its links outlived its state")
    for run in sorted(_orphan_run_namespaces(recorded)):
        if not _run_owner_alive(run):
            victims.setdefault(run, "its namespace outlived its state")
    return reserved, victims


def gc(dry_run: bool = False) -> list[str]:
    """Remove what is certainly orphaned; one line per thing removed (``dry_run``: would remove). Never touches
    a live run, a lab that is up, or anything whose owner cannot be proven gone."""
    from ..core.lifecycle import down

    verb = "would remove" if dry_run else "removed"
    with state.machine_lock():
        reserved, victims = _find_leftovers()
    done = []
    for name in reserved:
        if name not in victims:
            if not dry_run:
                state.remove(name)
            done.append(f"{verb} the state of run {name} (its 'nslab run' is gone)")
    for name, why in sorted(victims.items()):
        if not dry_run:
            down(name)
            state.remove(name)
        done.append(f"{verb} lab {name} ({why})")
    return done


def _dirs() -> list[str]:
    try:
        return sorted(os.listdir(paths.state_root()))
    except FileNotFoundError:
        return []
