"""Service verbs: ``logs`` (``tail [-n N] [-f]`` of a host's service logs, merged and prefixed when a host
runs several). Services start with ``up``, show in ``status`` and stop with ``down``."""

from __future__ import annotations

import os
import sys
import time

import click

from .. import paths
from ..errors import TargetError


def _log_files(lab: str, host: str) -> list[tuple[str, str]]:
    """(service id, log path) of every service of ``host``, in file order."""
    from ..drivers import files

    config = files.read_json(paths.supervisor_config(lab)) or {}
    out = [(s["id"], s["log"]) for s in config.get("services", []) if s["host"] == host]
    if not out:
        raise TargetError(f"host '{host}' of lab '{lab}' runs no services (add 'run:' to it in the lab file)")
    return out


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
@click.argument("target", metavar="[LAB/]HOST")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output (Ctrl-C to stop).")
@click.option("-n", "--lines", type=int, default=None, help="Only the last N lines of each log.")
def logs(target: str, follow: bool, lines: int | None) -> None:
    """Show the output of HOST's services.

    Their stdout and stderr, with [nslab] lines for each start, exit and restart. With several services,
    each line is prefixed by the service's name (HOST.N).
    """
    from ..lab import find_host

    lab, host = find_host(target)
    files = _log_files(lab, host)
    printer = _Printer(prefixed=len(files) > 1)
    offsets: dict[str, int] = {}
    for service, path in files:
        text, offsets[path] = _tail(path, lines)
        printer.emit(service, text)
    if follow:
        _follow(lab, files, offsets, printer)


def register(group: click.Group) -> None:
    group.add_command(logs)
