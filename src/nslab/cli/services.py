"""Service verbs: ``logs`` (``tail [-n N] [-f]`` of a host's service logs, merged and prefixed when a host
runs several). Services start with ``up``, show in ``status`` and stop with ``down``."""

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
    from ..lab import find_host
    from ..state import lab_names

    if file is not None or target is None:
        from .labs import lab_name_from

        lab = lab_name_from(file)
        return (lab, target) if target else (lab, None)
    if "/" not in target and target in lab_names():
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


class _Printer:
    """Writes service output to stdout; with several services, whole lines prefixed ``HOST.N | ``."""

    def __init__(self, prefixed: bool) -> None:
        self.prefixed = prefixed
        self.partial: dict[str, str] = {}  # a service's last line, until its newline arrives

    def emit(self, service: str, text: str) -> None:
        if not text:
            return
        if not self.prefixed:
            sys.stdout.write(text)
        else:
            *complete, self.partial[service] = (self.partial.get(service, "") + text).split("\n")
            for line in complete:
                sys.stdout.write(f"{service} | {line}\n")
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
                printer.emit(service, text)
            if not os.path.exists(paths.state_file(lab)):
                return  # the lab went down
            time.sleep(0.2)
    except KeyboardInterrupt:
        return


@click.command()
@click.argument("target", metavar="[LAB | [LAB/]HOST]", required=False, shell_complete=complete.lab_or_host)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output (Ctrl-C to stop).")
@click.option("-n", "--lines", type=int, default=None, help="Only the last N lines of each log.")
@click.option("--file", "file", metavar="FILE", help="The lab named in this lab file (-f is --follow, as in docker).",
              shell_complete=complete.lab_files)
def logs(target: str | None, follow: bool, lines: int | None, file: str | None) -> None:
    """Show the output of a host's services, or of every service of a lab.

    Their stdout and stderr, with [nslab] lines for each start, exit and restart. With several services,
    each line is prefixed by the service's name (HOST.N). A container host (image:): its Docker logs.
    Without TARGET: every service of the lab in the lab file (--file FILE, or nslab.yaml, nslab.yml, one
    *.nslab.yaml here).
    """
    lab, host = _which(target, file)
    container = _container_of(lab, host) if host else None
    if container is not None:
        _docker_logs(container, follow, lines)
        return
    files = _log_files(lab, host)
    printer = _Printer(prefixed=len(files) > 1 or host is None)
    offsets: dict[str, int] = {}
    for service, path in files:
        text, offsets[path] = _tail(path, lines)
        printer.emit(service, text)
    if follow:
        _follow(lab, files, offsets, printer)


def _container_of(lab: str, host: str) -> str | None:
    """The container of a container host (``image:``), None for a light host."""
    from ..state import LabState

    recorded = LabState.load(lab)
    made = recorded.lab.hosts[host].container if recorded and host in recorded.lab.hosts else None
    return made.name if made is not None else None


def _docker_logs(container: str, follow: bool, lines: int | None) -> None:
    """``docker logs [-f] [-n N]``: the container's stdout and stderr, from Docker."""
    from ..drivers.docker import LiveDocker

    out = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    try:
        for stream, chunk in LiveDocker().logs(container, follow=follow, tail=lines):
            target = out.get(stream, sys.stdout.buffer)
            target.write(chunk)
            target.flush()
    except KeyboardInterrupt:
        return


def register(group: click.Group) -> None:
    group.add_command(logs)
