"""The per-lab supervisor: ``python -m nslab.daemons.supervise LAB`` (started by ``nslab up``, stopped by ``down``).

One small process per lab that has services (or needs a DNS forwarder); idle hosts have no process at all.
What it runs comes from ``services.json`` (built by features/services.py, written by drivers/process.py).
It runs in the machine's namespaces and:

- forks each service of ``/run/nslab/LAB/services.json`` into its own cgroup, enters the host (network,
  ``/etc/netns`` files, hostname) with :func:`nslab.ns.nsenter.enter_host` and execs ``sh -c COMMAND`` with
  stdout+stderr appended to the service's log file;
- restarts services per policy (``no``, ``on-failure``, ``always``, ``unhealthy``) with a growing delay
  (0.2 s .. 5 s, reset after 10 s of running), killing what the old run left in its cgroup first;
- probes each host's ``healthcheck`` from inside it (health.py) and writes ``starting|healthy|unhealthy``;
  starts a service with ``depends_on`` once those hosts are started, healthy or completed, and stops the
  services in reverse order of that;
- relays DNS queries (UDP and TCP) that hosts send to their gateway to the machine's loopback resolver (only
  when the machine's resolv.conf names nothing but a loopback stub, see features/dns/; the relay: dnsforward.py);
- relays the lab's ports published on the machine's IPv6 loopback (``[::1]:PORT``) to its hosts
  (loopproxy.py: the kernel cannot DNAT those);
- keeps, beside each service log, when each of its lines arrived (``HOST.N.log.times``: ``OFFSET UNIX_TIME``
  per line, for ``nslab logs -t`` and ``--since``), woken by inotify when a log grows; the log itself stays
  the plain output, and the services write it directly (they never depend on this process to be heard);
- writes what it does to ``services.status.json`` (with the ``hash`` of the config it runs);
- on SIGHUP reads its config again (a converging ``nslab up`` rewrote it): services whose definition changed
  or that are gone stop (whole trees), new and changed ones start, the others keep running untouched;
- on SIGTERM stops every service tree (SIGTERM, SIGKILL after the timeout), removes the cgroups and exits.

:class:`Supervisor` holds the loop's state; signals only wake the loop (through a pipe), the loop acts.
Replaces a service manager unit or a ``while true; do ip netns exec NS CMD; sleep 1; done`` per service.
"""

from __future__ import annotations

import os
import selectors
import signal
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from .. import linux, paths
from ..core import dotenv
from ..core import events as event_stream
from ..drivers import files, process, procfs
from ..ns import nsenter
from . import health
from .contain import PidNamespaces, private_hosts
from .dnsforward import Forwarder

RESTART_MIN, RESTART_MAX, RESET_AFTER = 0.2, 5.0, 10.0


class LogTimes:
    """The side index of one service log: the offset of each line's first byte and when that byte was seen."""

    BLOCK = 1 << 16

    def __init__(self, log: str) -> None:
        self.log = log
        self.path = paths.log_times(log)
        self.offset, self.at_start = self._resume()

    def _last_indexed(self) -> int | None:
        """The offset of the last line the index has (None: it has none)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 4096))
                tail = fh.read().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(tail):
            fields = line.split()
            if len(fields) == 2 and fields[0].isdigit():
                return int(fields[0])
        return None

    def _resume(self) -> tuple[int, bool]:
        """Where indexing goes on (a supervisor started again): after the end of the last line indexed."""
        last = self._last_indexed()
        if last is None:
            return 0, True
        try:
            with open(self.log, "rb") as fh:
                fh.seek(last)
                pos = last
                while block := fh.read(self.BLOCK):
                    newline = block.find(b"\n")
                    if newline >= 0:
                        return pos + newline + 1, True
                    pos += len(block)
                return pos, False
        except FileNotFoundError:
            return 0, True

    def catch_up(self) -> None:
        """Index the lines that started since the last call, all as arriving now."""
        try:
            size = os.path.getsize(self.log)
        except OSError:
            return
        if size < self.offset:  # the log was truncated: its index starts over
            self.offset, self.at_start = 0, True
            open(self.path, "wb").close()
        if size == self.offset:
            return
        starts: list[int] = []
        with open(self.log, "rb") as fh:
            fh.seek(self.offset)
            pos = self.offset
            while pos < size and (block := fh.read(min(self.BLOCK, size - pos))):
                if self.at_start:
                    starts.append(pos)
                newline = block.find(b"\n")
                while 0 <= newline < len(block) - 1:
                    starts.append(pos + newline + 1)
                    newline = block.find(b"\n", newline + 1)
                self.at_start = block.endswith(b"\n")
                pos += len(block)
        self.offset = pos
        if starts:
            now = f"{time.time():.6f}"
            with open(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as fh:
                fh.write("".join(f"{offset} {now}\n" for offset in starts))


class Service:
    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.id: str = spec["id"]
        self.tracker = process.Tracker(spec.get("cgroup"), spec["token"])
        self.pid: int | None = None
        self.state = "starting"
        self.exit_code: int | None = None
        self.restarts = 0
        self.streak = 0
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.error: str | None = None
        self.stopping = False
        self.oom_killed = False  # the last run ended by the kernel's OOM killer (kept through restarts)
        self.oom_seen = 0  # the cgroup's OOM kill count when the last run started
        self.started = False  # ever (``depends_on: {HOST: {condition: started}}``)
        if spec.get("depends_on"):
            self.state = "waiting"  # for the hosts it depends on (Supervisor._start_ready)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "host": self.spec["host"], "n": self.spec["n"], "command": self.spec["command"],
            "restart": self.spec["restart"], "log": self.spec["log"], "cgroup": self.spec.get("cgroup"),
            "state": self.state, "pid": self.pid, "exit_code": self.exit_code, "restarts": self.restarts,
            "processes": len(self.tracker.members()), "error": self.error, "oom_killed": self.oom_killed,
        }

    def note(self, text: str) -> None:
        try:
            with open(os.open(self.spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as fh:
                fh.write(f"[nslab {time.strftime('%H:%M:%S')}] {text}\n")
        except OSError:
            pass

    def start(self, fork: Callable[[], int] = os.fork) -> None:
        """Fork and exec the service; ``fork``: into its host's PID namespace (``pid: private``, contain.py)."""
        if self.tracker.cgroup:
            os.makedirs(self.tracker.cgroup, exist_ok=True)
            self._limit(self.tracker.cgroup)
        self.note(f"start: {self.spec['command']}")
        pid = fork()
        if pid == 0:  # the child: never returns
            _child(self.spec)
        self.pid, self.state, self.started_at, self.restart_at = pid, "running", time.monotonic(), None
        self.exit_code, self.started = None, True
        self.event("service-start", pid=pid)

    def event(self, type: str, **fields: Any) -> None:
        """One line of the lab's event stream about this service (core/events.py)."""
        event_stream.emit(self.spec["lab"], type, self.spec["host"], service=self.id, **fields)

    def _limit(self, cgroup: str) -> None:
        """Write the host's ``resources:`` to the service's cgroup (drivers/process.py); note what failed."""
        for failure in process.limit(cgroup, self.spec.get("resources") or {}):
            self.note(f"limit not set: {failure}")
        self.oom_seen = process.oom_kills(cgroup)

    def _oom(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this run (then ``exit: oom-killed``)."""
        if "resources" not in self.spec:
            return False
        killed = process.oom_kills(self.tracker.cgroup) > self.oom_seen
        if killed:
            self.oom_killed = True
            self.note("killed by the kernel: out of memory (resources: memory)")
        return killed

    def exited(self, code: int) -> None:
        self.pid, self.exit_code = None, code
        self.event("service-exit", exit_code=code, oom_killed=self._oom())
        if self.stopping:
            self.state = "stopped"
            return
        policy = self.spec["restart"]
        again = policy == "always" or (policy in ("on-failure", "unhealthy") and code != 0)
        described = f"exited with code {code}" if code >= 0 else f"killed by signal {-code}"
        if not again:
            self.state = "exited"
            self.note(described + ("" if policy == "no" else f" (restart: {policy})"))
            return
        self.streak = 0 if time.monotonic() - self.started_at > RESET_AFTER else self.streak + 1
        delay = min(RESTART_MIN * 2 ** max(self.streak - 1, 0), RESTART_MAX)
        self.state, self.restart_at = "restarting", time.monotonic() + delay
        self.note(f"{described}; restarting in {delay:.1f}s (restart: {policy})")


def _child(spec: dict[str, Any]) -> None:
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.setsid()
        if spec.get("cgroup"):
            with open(os.path.join(spec["cgroup"], "cgroup.procs"), "w") as fh:
                fh.write("0")
            if "resources" in spec:
                process.join_mirrors(spec["cgroup"])
        log = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 65536)
        nsenter.enter_host(spec["namespace"], spec.get("uts"))
        confined = _confine(spec)
        os.chdir(spec.get("cwd") or "/")
        env = {**os.environ, **_environment(spec), process.SERVICE_ENV: spec["token"], "NSLAB_LAB": spec["lab"],
               "NSLAB_HOST": spec["host"], **confined}
        env.pop("NSLAB_STATE_DIR", None)
        os.execvpe("/bin/sh", ["sh", "-c", spec["command"]], env)
    except BaseException as exc:  # report anything, then leave without running Python cleanup
        try:
            os.write(2, f"[nslab] cannot start: {exc}\n".encode())
        finally:
            os._exit(127)


def _environment(spec: dict[str, Any]) -> dict[str, str]:
    """A service's ``env_file`` variables (read now, never written anywhere else), then its ``env:`` over them."""
    out: dict[str, str] = {}
    for path, _stamp in spec.get("env_file") or ():
        out.update(dotenv.read(path))
    return {**out, **(spec.get("env") or {})}


def _confine(spec: dict[str, Any]) -> dict[str, str]:
    """A contained service's mounts, user and capabilities (ns/contain.py); the environment it adds."""
    if "contain" not in spec:
        return {}
    from ..model import Containment
    from ..ns import contain
    from ..records import decode

    return contain.apply(decode(Containment, spec["contain"]), spec.get("private_tmp"))


class Supervisor:
    """The loop state of one lab's supervisor: its services, the DNS forwarder and the signal wake-up pipe."""

    def __init__(self, lab: str) -> None:
        self.lab = lab
        self.config: dict[str, Any] = files.read_json(paths.supervisor_config(lab)) or {}
        self.status_file = paths.services_status(lab)
        self.me = {"pid": os.getpid(), "start": procfs.start_time(os.getpid())}
        self.selector = selectors.DefaultSelector()
        self.wake = self._catch_signals()
        self.services = [Service(s) for s in self.config.get("services", [])]
        self.times: dict[str, LogTimes] = {}  # log path -> its index
        self.watched: dict[int, LogTimes] = {}  # inotify watch descriptor -> the index of the log it watches
        self.inotify = self._open_inotify()
        self.forwarder: Forwarder | None = None
        self.proxy: Any = None  # a loopproxy.LoopbackProxy while the config has ``proxy`` entries
        self.error: str | None = None
        self.dns_error: str | None = None  # the last unexpected failure of the forwarder (it went on)
        self.stopping = False
        self.pid_namespaces = PidNamespaces()  # of the hosts with `pid: private`
        self.health_wake = self._health_pipe()
        self.healths: dict[str, health.HostHealth] = self._healths({})

    # --- health and start order (daemons/health.py) ----------------------------------------------------------
    def _health_pipe(self) -> int:
        """A probe thread's byte on this pipe wakes the loop to take its result."""
        read, write = os.pipe()
        os.set_blocking(read, False)
        self.health_wake_read = read
        self.selector.register(read, selectors.EVENT_READ, ("health", None))
        return write

    def _healths(self, kept: dict[str, health.HostHealth]) -> dict[str, health.HostHealth]:
        """One :class:`health.HostHealth` per host whose services have a healthcheck; ``kept``: the former ones,
        kept where the check is the same."""
        out: dict[str, health.HostHealth] = {}
        for spec in self.config.get("services", []):
            check = spec.get("health")
            if not check or spec["host"] in out:
                continue
            former = kept.get(spec["host"])
            if former is not None and former.check == check:
                out[spec["host"]] = former
                continue
            target = {k: spec.get(k) for k in ("namespace", "uts", "lab", "host")}
            out[spec["host"]] = health.HostHealth(spec["host"], check, {**target, "address": check.get("address")},
                                                  self.health_wake)
        return out

    def _ready(self, s: Service) -> bool:
        """Whether every host ``s`` depends on is as its condition asks."""
        for host, condition in s.spec.get("depends_on") or ():
            others = [o for o in self.services if o.spec["host"] == host]
            if condition == "started" and not all(o.started for o in others):
                return False
            if condition == "healthy" and (host not in self.healths or self.healths[host].status != "healthy"):
                return False
            if condition == "completed" and not all(o.state == "exited" and o.exit_code == 0 for o in others):
                return False
        return True

    def _start_ready(self) -> bool:
        """Start the services waiting for their dependencies that now may; True if one started."""
        ready = [s for s in self.services if s.state == "waiting" and not self.stopping and self._ready(s)]
        for s in ready:
            s.note("start: what it depends on is " + ", ".join(f"{h} {c}" for h, c in s.spec["depends_on"]))
            self._start(s)
        return bool(ready)

    def _health_step(self) -> bool:
        """Start due probes, take finished ones; restart the services of a host turned unhealthy whose policy
        says so. True when a status changed."""
        try:
            os.read(self.health_wake_read, 4096)
        except BlockingIOError:
            pass
        now = time.monotonic()
        changed = False
        for h, before in health.collect_all(list(self.healths.values())):
            changed = True
            if h.status != before:
                self._note_health(h)
            if h.status == "unhealthy":
                self._restart_unhealthy(h.host)
        for h in self.healths.values():
            changed |= h.changed
            h.changed = False
            h.start_due(now)
        return changed

    def _note_health(self, h: health.HostHealth) -> None:
        """A change of a host's health: a line in its services' logs and an event (``nslab events``)."""
        event_stream.emit(self.lab, "health", h.host, health=h.status, output=h.output)
        for s in self.services:
            if s.spec["host"] == h.host:
                s.note(f"health: {h.status}" + (f" ({h.output})" if h.status == "unhealthy" else ""))

    def _restart_unhealthy(self, host: str) -> None:
        """``restart: unhealthy``: the host's services stopped (SIGTERM, SIGKILL after the timeout), then
        started again by the usual back-off of a failure."""
        doomed = [s for s in self.services if s.spec["host"] == host and s.spec["restart"] == "unhealthy" and s.pid]
        if doomed:
            for s in doomed:
                s.note("unhealthy: restarting (restart: unhealthy)")
            self.healths[host].halt()
            process.stop_trees([s.tracker for s in doomed], timeout=2.0, reap=self.reap)

    def _stop_in_order(self, doomed: list[Service]) -> None:
        """Stop ``doomed`` services, the hosts others depend on last (``depends_on`` in reverse)."""
        for wave in reversed(start_waves([s.spec for s in doomed])):
            process.stop_trees([s.tracker for s in doomed if s.spec["host"] in wave], reap=self.reap)

    def _catch_signals(self) -> int:
        """Signals only wake the loop (their numbers arrive on a pipe), so the loop is the one place that acts."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)
        signal.set_wakeup_fd(wake_w)
        self.selector.register(wake_r, selectors.EVENT_READ, ("signal", None))
        return wake_r

    def _open_inotify(self) -> int:
        try:
            fd = linux.inotify_init()
        except OSError:
            return -1  # no inotify: logs are indexed when the supervisor wakes for something else
        self.selector.register(fd, selectors.EVENT_READ, ("inotify", None))
        return fd

    def _start(self, s: Service) -> None:
        """Start a service and keep the index of its log (watched from now on); its host's health starts over."""
        s.start(self.pid_namespaces.fork_for(s.spec))
        if s.spec["host"] in self.healths:
            self.healths[s.spec["host"]].reset(time.monotonic())
        log = s.spec["log"]
        times = self.times.get(log)
        if times is None:
            times = self.times[log] = LogTimes(log)
        if self.inotify >= 0:
            try:
                self.watched[linux.inotify_watch(self.inotify, log)] = times
            except OSError:
                pass
        times.catch_up()

    def _on_inotify(self) -> None:
        try:
            data = os.read(self.inotify, 1 << 16)
        except BlockingIOError:
            return
        due: set[int] = set()
        pos = 0
        while pos + 16 <= len(data):
            wd, mask, _cookie, length = struct.unpack_from("iIII", data, pos)
            pos += 16 + length
            if mask & 0x8000:  # IN_IGNORED: the file is gone, and its watch with it
                self.watched.pop(wd, None)
            else:
                due.add(wd)
        for wd in due:
            if wd in self.watched:
                self.watched[wd].catch_up()

    def _index_all(self) -> None:
        for times in self.times.values():
            times.catch_up()

    def _start_forwarder(self) -> None:
        forward = self.config.get("forward")
        if not forward:
            return
        try:
            self.forwarder = Forwarder(forward["listen"], forward["upstreams"], self.selector)
        except OSError as exc:
            self.error = f"cannot start the DNS forwarder on port 53 of {forward['listen']}: {exc.strerror}"

    def _start_proxy(self) -> None:
        entries = self.config.get("proxy")
        if not entries:
            return
        from .loopproxy import LoopbackProxy

        try:
            self.proxy = LoopbackProxy(entries, self.selector)
        except OSError as exc:
            self.error = f"cannot relay the ports published on [::1]: {exc.strerror}"

    def write_status(self, stopped: bool = False) -> None:
        files.write_json(
            self.status_file,
            {
                **self.me,
                "ready": True,
                "stopped": stopped,
                "error": self.error,
                "dns_error": self.dns_error,
                "services": [s.to_json() for s in self.services],
                "health": {host: h.to_json() for host, h in self.healths.items()},
                "forwarder": self.config.get("forward"),
                "hash": self.config.get("hash"),
            },
        )

    def reap(self) -> bool:
        """Collect every exited child; True if one of them was a service."""
        changed = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return changed
            if pid == 0:
                return changed
            self.pid_namespaces.exited(pid)
            for s in self.services:
                if s.pid == pid:
                    s.exited(os.waitstatus_to_exitcode(status))
                    changed = True

    def _timeout(self) -> float | None:
        """Until the next restart is due (at most 1 s while DNS queries wait for an answer); None: no limit."""
        now = time.monotonic()
        due = [s.restart_at - now for s in self.services if s.restart_at is not None]
        probe = health.timeout_until(list(self.healths.values()), now)
        due += [probe] if probe is not None else []
        timeout = max(0.0, min(due)) if due else None
        if (self.forwarder is not None and self.forwarder.busy()) or (self.proxy is not None and self.proxy.waiting):
            timeout = 1.0 if timeout is None else min(timeout, 1.0)
        return timeout

    def _read_signals(self) -> None:
        try:
            signals = os.read(self.wake, 512)
        except BlockingIOError:
            return
        if signal.SIGTERM in signals or signal.SIGINT in signals:
            self.stopping = True
        elif signal.SIGHUP in signals:
            self.reload()

    def reload(self) -> None:
        """Run the config as it is now: stop what changed or went, start what changed or is new."""
        config: dict[str, Any] = files.read_json(paths.supervisor_config(self.lab)) or {}
        wanted = {spec["id"]: spec for spec in config.get("services", [])}
        kept = {s.id: s for s in self.services if wanted.get(s.id) == s.spec}
        self._stop([s for s in self.services if s.id not in kept])
        old, self.config = self.config, config
        self._restart_relays(old)  # before any fork: a new child holds the old listeners until it closes them
        self.services = [kept.get(i) or Service(spec) for i, spec in wanted.items()]
        self.healths = self._healths(self.healths)
        for s in self.services:
            if s.id not in kept and s.state != "waiting":
                self._start(s)
        self._start_ready()
        self.pid_namespaces.keep(private_hosts(wanted.values()))
        self._index_all()
        self.write_status()

    def _restart_relays(self, old: dict[str, Any]) -> None:
        """The DNS forwarder and the [::1] relay started again if their part of the config changed from ``old``."""
        if self.config.get("forward") != old.get("forward"):
            if self.forwarder is not None:
                self.forwarder.close()
                self.forwarder = None
            self._start_forwarder()
        if self.config.get("proxy") != old.get("proxy"):
            if self.proxy is not None:
                self.proxy.close()
                self.proxy = None
            self._start_proxy()

    def _stop(self, doomed: list[Service]) -> None:
        """Stop services for good (no restart) and remove their cgroups."""
        for s in doomed:
            s.restart_at, s.stopping = None, True
        process.stop_trees([s.tracker for s in doomed], reap=self.reap)
        for s in doomed:
            s.note("stopped: its definition changed or it left the lab (nslab up)")
            if s.tracker.cgroup:
                process.remove_cgroup(s.tracker.cgroup)

    def _dispatch(self, key: selectors.SelectorKey, events: int) -> None:
        kind, obj = key.data
        if kind == "signal":
            self._read_signals()
        elif kind == "inotify":
            self._on_inotify()
        elif kind == "health":
            pass  # (the loop takes the results: Supervisor._health_step)
        elif kind == "dns" and self.forwarder is not None:
            try:
                obj(events)  # the forwarder's callback for that socket (dnsforward.py)
            except Exception as exc:  # a flaw in one DNS exchange must not stop the services
                self.dns_error = f"{type(exc).__name__}: {exc}"
                self.forwarder.drop(key.fileobj)  # that exchange ends (it would fail again at once)
                self.write_status()
        elif self.proxy is not None:
            self.proxy.dispatch(kind, obj)

    def _restart_due(self) -> bool:
        now = time.monotonic()
        changed = False
        for s in self.services:
            if s.restart_at is not None and s.restart_at <= now and not self.stopping:
                # What the last run left behind (a daemonized child holding the port) goes first.
                process.stop_trees([s.tracker], timeout=1.0)
                s.restarts += 1
                s.event("service-restart", restarts=s.restarts)
                self._start(s)
                changed = True
        return changed

    def step(self) -> None:
        """One turn of the loop: wait for a signal, a DNS packet or the next restart, then act on it."""
        for key, events in self.selector.select(self._timeout()):
            self._dispatch(key, events)
        if self.forwarder is not None:
            self.forwarder.expire()
        if self.proxy is not None:
            self.proxy.expire()
        changed = self.reap()
        changed |= self._restart_due()
        changed |= self._health_step()
        changed |= self._start_ready()
        if changed:
            self._index_all()  # the [nslab] lines about exits and restarts
            self.write_status()

    def shutdown(self) -> None:
        """SIGTERM every service tree (SIGKILL after the timeout), remove the cgroups, say so in the status."""
        for s in self.services:
            s.restart_at, s.stopping = None, True
        for h in self.healths.values():
            h.halt()
        self._stop_in_order(self.services)
        self.pid_namespaces.close()
        if self.proxy is not None:
            self.proxy.close()
        for s in self.services:
            if s.state in ("running", "restarting", "starting", "waiting"):
                s.state = "stopped"
            s.note("stopped by nslab down")
        self._index_all()
        self._remove_cgroups()
        self.write_status(stopped=True)

    def _remove_cgroups(self) -> None:
        cgroup = self.config.get("cgroup")
        if cgroup:
            process.remove_cgroup(cgroup)
            process.remove_parent(cgroup)

    def abandon(self) -> None:
        """After a failure the loop cannot go on from (its status cannot be written: the state directory is
        full): every service tree stops and the cgroups go, so nothing of the lab runs without a supervisor
        (``nslab up`` then rolls back; nothing is left for ``down``)."""
        for s in self.services:
            s.restart_at, s.stopping = None, True
        process.stop_trees([s.tracker for s in self.services], reap=self.reap)
        self._remove_cgroups()

    def run(self) -> int:
        self._start_forwarder()
        self._start_proxy()
        if self.config.get("cgroup"):
            os.makedirs(self.config["cgroup"], exist_ok=True)
        if self.error is None:
            for s in self.services:
                if s.state != "waiting":
                    self._start(s)
            self._start_ready()  # (those waiting only for services that just started)
        self.write_status()
        self.stopping = self.error is not None
        while not self.stopping:
            self.step()
        self.shutdown()
        return 0


def start_waves(services: list[dict[str, Any]]) -> list[set[str]]:
    """The hosts of ``services`` in waves: each wave's hosts depend only on earlier waves' (a lab without
    ``depends_on``: one wave, all stopped at once)."""
    depends = {s["host"]: {h for h, _ in s.get("depends_on") or ()} for s in services}
    waves: list[set[str]] = []
    placed: set[str] = set()
    while len(placed) < len(depends):
        wave = {h for h, d in depends.items() if h not in placed and d & depends.keys() <= placed}
        wave = wave or set(depends) - placed  # (a circle: resolve refuses it; never loop forever)
        waves.append(wave)
        placed |= wave
    return waves


def run(lab: str) -> int:
    supervisor = Supervisor(lab)
    try:
        return supervisor.run()
    except BaseException:
        supervisor.abandon()
        raise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m nslab.daemons.supervise LAB", file=sys.stderr)
        return 2
    lab = argv[0]
    if not os.path.isfile(paths.supervisor_config(lab)):
        print(f"no {paths.supervisor_config(lab)}", file=sys.stderr)
        return 2
    if os.fork() > 0:  # the parent returns to `nslab up` at once; the child is reparented and lives on
        os._exit(0)
    os.environ.pop(process.SUPERVISOR_ENV, None)  # (its mark is for `nslab up` to find it, not for services)
    os.chdir("/")
    sys.stdout.flush()
    return run(lab)


if __name__ == "__main__":
    sys.exit(main())
