"""The lab's event stream: one append-only file per lab (``/run/nslab/LAB/events.jsonl``, paths.py), one JSON
line per event, written by whoever makes the change and read by ``nslab events`` (cli/ops.py, woken by inotify).

An event is ``{"time": RFC 3339 UTC, "lab", "host", "type", ...}``; the types and who emits them:

- ``service-start``, ``service-exit`` (``exit_code``, ``oom_killed``), ``service-restart``: the supervisor
  (daemons/supervise.py), with ``service`` (its id);
- ``link-down``, ``link-up``: ``nslab link`` (features/links.py), with ``interface``;
- ``impair``: ``nslab impair`` (faults.py), with ``now`` (what the interface suffers now);
- ``drift``, ``repaired``: ``up`` (lifecycle.py), with ``text`` (the difference found, then repaired);
- ``health``: the supervisor, with ``health`` (starting|healthy|unhealthy) and ``output`` (the last probe's);
- ``stop``, ``start``: ``nslab stop|start|restart`` (features/hoststate.py; ``restart`` emits both).

Call :func:`emit` after the change took effect. It never fails the change: an event that cannot be written
(the lab's directory gone, a full disk) is dropped. Lines are written with one ``write`` on an ``O_APPEND``
descriptor, so writers in several processes never interleave. Stdlib only (the supervisor imports it).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, BinaryIO

from .. import paths

TYPES = ("service-start", "service-exit", "service-restart", "health", "link-down", "link-up", "stop", "start",
         "impair", "drift", "repaired")


def rfc3339(when: float) -> str:
    """``2026-12-07T13:16:04.123456Z``: UTC, microseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1e6):06d}Z"


def emit(lab: str, type: str, host: str | None = None, **fields: Any) -> None:
    """Append one event of ``type`` (one of :data:`TYPES`) about ``host`` (None: the lab as a whole) of ``lab``;
    ``fields``: what else the type says (JSON values)."""
    if type not in TYPES:
        raise ValueError(f"no event type {type!r} (one of {', '.join(TYPES)})")  # a caller's mistake
    event = {"time": rfc3339(time.time()), "lab": lab, "host": host, "type": type, **fields}
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    try:
        fd = os.open(paths.events_file(lab), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- reading (``nslab events``) ------------------------------------------------------------------------------
IN_CREATE = 0x100
IN_MODIFY = 0x2


class Follower:
    """The events of one lab, or of every lab (``lab`` None), from now on: each lab's file is read from where
    it ended when first seen (from its start when it appeared later: a lab brought up meanwhile, or again)."""

    def __init__(self, lab: str | None) -> None:
        from .. import linux

        self.lab = lab
        self.inotify = linux.inotify_init()
        self.open: dict[str, tuple[int, BinaryIO]] = {}  # lab -> (inode of its events file, the file, open)
        self.watched: dict[str, int] = {}  # lab directory -> its inode (a lab up again has a new one)
        self.partial: dict[str, bytes] = {}
        linux.inotify_watch(self.inotify, paths.state_root(), IN_CREATE)
        self._scan(at_end=True)

    def _labs(self) -> list[str]:
        if self.lab is not None:
            return [self.lab]
        try:
            return sorted(e for e in os.listdir(paths.state_root()) if paths.is_lab_name(e))
        except OSError:
            return []

    def _scan(self, at_end: bool = False) -> None:
        """Watch every lab directory there is, and open the events files not open yet (or made anew)."""
        from .. import linux

        for lab in self._labs():
            directory = paths.lab_dir(lab)
            try:
                inode = os.stat(directory).st_ino
                if self.watched.get(directory) != inode:
                    linux.inotify_watch(self.inotify, directory, IN_CREATE | IN_MODIFY)
                    self.watched[directory] = inode
            except OSError:
                continue
            self._open(lab, at_end)

    def _open(self, lab: str, at_end: bool) -> None:
        try:
            inode = os.stat(paths.events_file(lab)).st_ino
        except OSError:
            return
        if lab in self.open and self.open[lab][0] == inode:
            return
        if lab in self.open:
            self._read(lab)  # what the old file still had
            self.open[lab][1].close()
        fh = open(paths.events_file(lab), "rb")  # kept open while followed (read after the file is gone too)
        if at_end:
            fh.seek(0, os.SEEK_END)
        self.open[lab], self.partial[lab] = (inode, fh), b""

    def _read(self, lab: str) -> list[dict[str, Any]]:
        data = self.partial.get(lab, b"") + self.open[lab][1].read()
        *lines, self.partial[lab] = data.split(b"\n")
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait(self, timeout: float = 1.0) -> list[dict[str, Any]]:
        """The events that arrived, once some did (or ``timeout`` seconds passed: maybe none), in time order."""
        import select

        ready, _, _ = select.select([self.inotify], [], [], timeout)
        if ready:
            try:
                os.read(self.inotify, 1 << 16)
            except BlockingIOError:
                pass
        self._scan()
        found = [e for lab in list(self.open) for e in self._read(lab)]
        return sorted(found, key=lambda e: str(e.get("time")))

    def close(self) -> None:
        for _inode, fh in self.open.values():
            fh.close()
        os.close(self.inotify)


def line(event: dict[str, Any]) -> str:
    """An event as one line of text: ``TIME LAB/HOST TYPE key=value...``."""
    where = event.get("lab", "?") + (f"/{event['host']}" if event.get("host") else "")
    rest = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("time", "lab", "host", "type"))
    return f"{event.get('time')} {where} {event.get('type')}" + (f" {rest}" if rest else "")
