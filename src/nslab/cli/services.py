"""Service verbs: ``logs`` (``tail [-n N] [-f]`` of a host's service logs, merged and prefixed when a host
runs several; ``-t`` and ``--since`` from the supervisor's side index of when each line arrived, see
supervise.py). Services start with ``up``, show in ``status`` and stop with ``down``."""

from __future__ import annotations

import os
import sys
import time

import click

from .. import paths
from ..errors import TargetError
from . import complete


def _log_files(lab: str, host: str | None) -> list[tuple[str, str]]:
    """(service id, log path) of every service of ``host`` (None: of the whole lab), in file order."""
    from ..drivers import files

    config = files.read_json(paths.supervisor_config(lab)) or {}
    out = [(s["id"], s["log"]) for s in config.get("services", []) if host is None or s["host"] == host]
    if not out:
        where = f"host '{host}' of lab '{lab}'" if host else f"lab '{lab}'"
        raise TargetError(f"{where} runs no services (add 'run:' to a host in the lab file)")
    return out


def _which(target: str | None, file: str | None) -> tuple[str, str | None]:
    """(lab, host or None for every service of the lab) from ``[LAB/]HOST``, ``LAB`` or the lab file."""
    from ..core.which import lab_or_host
    from ..lab import find_host

    if file is not None or target is None:
        from .labs import which_lab

        return which_lab(None, file), target
    if lab_or_host(target) is not None:
        return target, None
    return find_host(target)


def _tail(path: str, lines: int | None) -> tuple[str, int]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return "", 0
    text = data.decode(errors="replace")
    if lines is not None:
        text = "".join(text.splitlines(keepends=True)[-lines:]) if lines > 0 else ""
    return text, len(data)


class _Times:
    """When each line of a log arrived, from its side index (``paths.log_times``), read as it grows."""

    def __init__(self, log: str) -> None:
        self.path = paths.log_times(log)
        self.read_to = 0
        self.at: dict[int, float] = {}  # offset of a line's first byte -> when it arrived
        self.last = -1

    def refresh(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.read_to)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.read_to += end
        for line in data[:end].splitlines():
            fields = line.split()
            try:
                offset, when = int(fields[0]), float(fields[1])
            except (ValueError, IndexError):
                continue
            self.at[offset] = when
            self.last = max(self.last, offset)

    def of(self, offset: int) -> float | None:
        if offset > self.last:
            self.refresh()
        return self.at.get(offset)


def _timed_lines(path: str, times: _Times) -> tuple[list[tuple[float, str]], int]:
    """Every whole line of a log with when it arrived (a line the index lacks: the time of the line before it,
    the first ones: of the first indexed line, else the log's mtime), and the offset after the last whole line."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        mtime = os.path.getmtime(path)
    except FileNotFoundError:
        return [], 0
    times.refresh()
    when = times.at[min(times.at)] if times.at else mtime
    out: list[tuple[float, str]] = []
    offset = 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # a line still being written: --follow prints it once whole
        when = times.at.get(offset, when)
        out.append((when, raw.decode(errors="replace")))
        offset += len(raw)
    return out, offset


def stamp(when: float) -> str:
    """RFC 3339 in UTC, as ``docker logs -t`` prints it."""
    import datetime

    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_since(text: str, now: float) -> float:
    """``--since``: a duration back from now (``90s``, ``10m``, ``1h30m``, ``1.5h``), a Unix time, or an RFC 3339
    date and time (``2026-12-01T16:40:00Z``; without an offset: local time)."""
    import datetime
    import re

    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if parts and "".join(n + u for n, u in parts) == text:
        return now - sum(float(n) * units[u] for n, u in parts)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise click.BadParameter(f"'{text}' is neither a duration (10m, 1h30m), a Unix time nor an RFC 3339 time "
                                 "(2026-12-01T16:40:00Z)", param_hint="--since") from None


class _Printer:
    """Writes service output to stdout; with several services, whole lines prefixed ``HOST.N | ``; with
    ``times`` each line is stamped with when it arrived (a line not indexed yet: now)."""

    def __init__(self, prefixed: bool, times: dict[str, _Times] | None = None) -> None:
        self.prefixed = prefixed
        self.times = times
        self.partial: dict[str, str] = {}  # a service's last line, until its newline arrives
        self.started: dict[str, int] = {}  # the offset of that line in its log

    def line(self, service: str, text: str, when: float | None) -> None:
        """One whole line (ending with its newline), prefixed as this printer does."""
        head = f"{service} | " if self.prefixed else ""
        sys.stdout.write(head + (f"{stamp(when)} " if when is not None else "") + text)

    def emit(self, service: str, text: str, offset: int = 0) -> None:
        """``text`` appended at ``offset`` of the service's log."""
        if not text:
            return
        if not self.prefixed and self.times is None:
            sys.stdout.write(text)
        else:
            start = self.started.get(service, offset) if self.partial.get(service) else offset
            *complete, self.partial[service] = (self.partial.get(service, "") + text).split("\n")
            for line in complete:
                when = (self.times[service].of(start) or time.time()) if self.times is not None else None
                self.line(service, line + "\n", when)
                start += len((line + "\n").encode())
            self.started[service] = start
        sys.stdout.flush()


def _new_output(path: str, offset: int) -> tuple[str, int]:
    """What was appended to ``path`` since ``offset``, and the new offset (0 again if it was truncated)."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return "", offset
    if size < offset:
        offset = 0
    if size == offset:
        return "", offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        chunk = fh.read()
    return chunk.decode(errors="replace"), offset + len(chunk)


def _follow(lab: str, files: list[tuple[str, str]], offsets: dict[str, int], printer: _Printer) -> None:
    """``tail -f`` every log until Ctrl-C or until the lab goes down."""
    try:
        while True:
            for service, path in files:
                text, offsets[path] = _new_output(path, offsets[path])
                printer.emit(service, text, offsets[path] - len(text.encode()))
            if not os.path.exists(paths.state_file(lab)):
                return  # the lab went down
            time.sleep(0.2)
    except KeyboardInterrupt:
        return


def _elsewhere(target: str, lines: int | None, timestamps: bool) -> None:
    """``logs LAB/HOST`` of a swarm lab's host on another machine: a job there prints them (exits)."""
    from ..paths import kept_hosts
    from .engine import held, on_swarm

    lab_name, _, host_name = target.partition("/")
    if not kept_hosts(host_name, lab_name) and held(lab_name):
        argv = ["logs", target, *(["-n", str(lines)] if lines is not None else []), *(["-t"] if timestamps else [])]
        raise SystemExit(on_swarm(lab_name, host_name, argv))


@click.command()
@click.argument("target", metavar="[LAB | [LAB/]HOST]", required=False, shell_complete=complete.lab_or_host)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output (Ctrl-C to stop).")
@click.option("-n", "--lines", type=int, default=None, help="Only the last N lines of each log.")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with when it arrived (RFC 3339, UTC).")
@click.option("--since", metavar="WHEN", help="Only lines since WHEN: a duration back (10m, 1h30m), a Unix time "
              "or an RFC 3339 time (2026-12-01T16:40:00Z).")
@click.option("--file", "file", metavar="FILE", help="The lab named in this lab file (-f is --follow, as in docker).",
              shell_complete=complete.lab_files)
def logs(target: str | None, follow: bool, lines: int | None, timestamps: bool, since: str | None,
         file: str | None) -> None:
    """Show the output of a host's services, or of every service of a lab.

    Their stdout and stderr, with [nslab] lines for each start, exit and restart. With several services,
    each line is prefixed by the service's name (HOST.N); with -t or --since, the lines of all of them
    are in the order they arrived. A container host (image:): its Docker logs. Without TARGET: every service
    of the lab in the lab file (--file FILE, or nslab.yaml, nslab.yml, one *.nslab.yaml here).
    """
    from ..linux import require_root

    since_time = parse_since(since, time.time()) if since is not None else None
    require_root("service logs are kept under /run/nslab, readable by root only")
    if target is not None and "/" in target and not follow and since is None:
        _elsewhere(target, lines, timestamps)
    lab, host = _which(target, file)
    container = _container_of(lab, host) if host else None
    if container is not None:
        _docker_logs(container, follow, lines, timestamps, since_time)
        return
    files = _log_files(lab, host)
    prefixed = len(files) > 1 or host is None
    offsets: dict[str, int] = {}
    if timestamps or since_time is not None:
        times = {service: _Times(path) for service, path in files}
        printer = _Printer(prefixed, times if timestamps else None)
        _print_timed(files, times, offsets, printer, lines, since_time, timestamps)
    else:
        printer = _Printer(prefixed)
        for service, path in files:
            text, offsets[path] = _tail(path, lines)
            printer.emit(service, text)
    if follow:
        _follow(lab, files, offsets, printer)


def _print_timed(files: list[tuple[str, str]], times: dict[str, _Times], offsets: dict[str, int], printer: _Printer,
                 lines: int | None, since: float | None, timestamps: bool) -> None:
    """The whole lines of every log, since ``since``, the last ``lines`` of each, merged in arrival order."""
    merged: list[tuple[float, int, str, str]] = []
    for n, (service, path) in enumerate(files):
        timed, offsets[path] = _timed_lines(path, times[service])
        if since is not None:
            timed = [(when, text) for when, text in timed if when >= since]
        if lines is not None:
            timed = timed[-lines:] if lines > 0 else []
        merged += [(when, n, service, text) for when, text in timed]
    for when, _, service, text in sorted(merged, key=lambda item: (item[0], item[1])):
        printer.line(service, text, when if timestamps else None)
    sys.stdout.flush()


def _container_of(lab: str, host: str) -> str | None:
    """The container of a container host (``image:``), None for a light host."""
    from ..core.state import LabState

    recorded = LabState.load(lab)
    made = recorded.lab.hosts[host].container if recorded and host in recorded.lab.hosts else None
    return made.name if made is not None else None


def _docker_logs(container: str, follow: bool, lines: int | None, timestamps: bool, since: float | None) -> None:
    """``docker logs [-f] [-n N] [-t] [--since T]``: the container's stdout and stderr, from Docker."""
    from ..drivers.docker import LiveDocker

    out = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    try:
        for stream, chunk in LiveDocker().logs(container, follow=follow, tail=lines,
                                                  timestamps=timestamps, since=since):
            target = out.get(stream, sys.stdout.buffer)
            target.write(chunk)
            target.flush()
    except KeyboardInterrupt:
        return


def register(group: click.Group) -> None:
    group.add_command(logs)
