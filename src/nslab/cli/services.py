"""Service verbs: ``logs``. (Services start with ``up``, show in ``status``, stop with ``down``.)"""

from __future__ import annotations

import os
import sys
import time

import click

from .. import paths
from ..errors import TargetError


def _log_files(lab: str, host: str) -> list[tuple[str, str]]:
    """(service id, log path) of every service of ``host``, in file order."""
    from ..drivers import process

    config = process.read_json(process.config_path(lab)) or {}
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
    prefix = len(files) > 1
    offsets: dict[str, int] = {}
    partial: dict[str, str] = {}

    def emit(service: str, text: str) -> None:
        if not text:
            return
        if not prefix:
            sys.stdout.write(text)
        else:
            *complete, partial[service] = (partial.get(service, "") + text).split("\n")
            for line in complete:
                sys.stdout.write(f"{service} | {line}\n")
        sys.stdout.flush()

    for service, path in files:
        text, size = _tail(path, lines)
        offsets[path] = size
        emit(service, text)
    if not follow:
        return
    try:
        while True:
            for service, path in files:
                try:
                    size = os.path.getsize(path)
                except FileNotFoundError:
                    continue
                if size < offsets[path]:
                    offsets[path] = 0
                if size > offsets[path]:
                    with open(path, "rb") as fh:
                        fh.seek(offsets[path])
                        chunk = fh.read()
                    offsets[path] += len(chunk)
                    emit(service, chunk.decode(errors="replace"))

            if not os.path.exists(paths.state_file(lab)):
                return  # the lab went down
            time.sleep(0.2)
    except KeyboardInterrupt:
        return


def register(group: click.Group) -> None:
    group.add_command(logs)
