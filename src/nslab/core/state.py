"""What is up: ``/run/nslab/<lab>/state.json``, the lock, and the JSON form of a resolved lab.

This module owns the on-disk record that makes teardown independent of the lab file: ``down`` works from
here (and from ownership marks in the kernel), never from the YAML alone. ``/run`` is a tmpfs, so state
vanishes on reboot together with the namespaces it describes.

Writes are atomic (write + rename). Mutating operations hold one machine-wide lock
(``/run/nslab/.lock``, flock), which serializes operations on a lab and keeps two labs' automatic subnets
from racing each other.
"""

from __future__ import annotations

import _thread
import fcntl
import os

from ..paths import intent_file, lab_dir, lock_file, state_file, state_root
from ..paths import kept_hosts as kept_hosts  # (which labs are up: read from the layout, in paths.py)
from ..paths import lab_names as lab_names
from ..paths import labs_with_intent as labs_with_intent

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (down and status import this)
if TYPE_CHECKING:
    from typing import Any

    from ..model import Lab

#: The state file's format: ``"format": 2`` (``records.encode`` of the model). Format 1, the hand-written form of
#: earlier releases, had ``"version": 1`` instead; it is still read (a lab brought up before an upgrade must
#: still converge and go down). A change that makes old readers misread a record takes the next number.
FORMAT = 2
MAX_STATE_BYTES = 256 << 20  # a record longer than this is damaged, not read into memory whole


class _MachineLock:
    """flock on ``/run/nslab/.lock``. Re-entrant within a thread: `up` rolls a failed fresh lab back with
    `down` while holding the lock (a second flock on a new file description would wait for ourselves)."""

    _depth = _thread._local()  # threading.local's C type, without importing threading (exec imports us)

    def __init__(self) -> None:
        self._fd = -1

    def __enter__(self) -> None:
        if getattr(self._depth, "n", 0):
            self._depth.n += 1
            return
        os.makedirs(state_root(), exist_ok=True)
        fd = os.open(lock_file(), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._depth.n = 1

    def __exit__(self, *exc: object) -> None:
        self._depth.n -= 1
        if self._depth.n == 0 and self._fd >= 0:
            os.close(self._fd)


def machine_lock() -> _MachineLock:
    """``with machine_lock():`` — the one lock every mutating operation holds (a class, not a
    contextlib generator: this module is imported by `nslab exec`, which cannot afford contextlib)."""
    return _MachineLock()


def lab_to_dict(lab: Lab) -> dict[str, Any]:
    """The lab's record in today's format (:data:`FORMAT`), derived from the model's types."""
    from ..records import encode

    return encode(lab)


def lab_from_dict(data: dict[str, Any], format: int = 0) -> Lab:
    """The lab :func:`lab_to_dict` wrote; ``format``: the record's when older than today's. Fields a record
    lacks (it was written before they existed) take their defaults."""
    from ..model import Lab
    from ..records import decode

    if format == 1:
        data = _from_format_1(data)
    return decode(Lab, data)


def _from_format_1(lab: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (releases up to commit 5369676, written by hand): networks and hosts without their own name
    (only as the key), routes as ``[to, via]`` pairs. Everything else reads as today's."""
    hosts = {}
    for name, host in lab["hosts"].items():
        routes = [{"to": to, "via": via} for to, via in host.get("routes", ())]
        hosts[name] = {**host, "name": name, "routes": routes}
    networks = {name: {**network, "name": name} for name, network in lab["networks"].items()}
    return {**lab, "networks": networks, "hosts": hosts}


class LabState:
    """The record of one lab that is up (or partly up)."""

    def __init__(self, lab: Lab, extra: dict[str, Any] | None = None):
        self.lab = lab
        self.extra = extra or {}  # each feature's record (JSON), under the feature's KEY

    def save(self) -> None:
        """Written atomically, root's alone (0600 in a 0700 directory). Fails as :class:`StateError`."""
        from ..drivers.files import private_dir, write_json

        path = state_file(self.lab.name)
        try:
            private_dir(lab_dir(self.lab.name))
            write_json(path, {"format": FORMAT, "lab": lab_to_dict(self.lab), **self.extra})
        except OSError as exc:
            from ..errors import StateError

            raise StateError(f"cannot write {path}: {exc.strerror}") from None

    @classmethod
    def load(cls, name: str) -> LabState | None:
        """The lab's record; None if it has none. A damaged one raises :class:`StateError` naming the file."""
        import json

        path = state_file(name)
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read(MAX_STATE_BYTES))
            lab = lab_from_dict(data.pop("lab"), _format(data))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            from ..errors import StateError

            why = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise StateError(
                f"{path} is damaged ({why}); 'nslab down {name}' removes the lab from its ownership marks"
            ) from None
        return cls(lab, data)

    @classmethod
    def load_or_none(cls, name: str) -> LabState | None:
        """:meth:`load`, with a damaged record taken as none (for what must work anyway: down, gc, other labs)."""
        from ..errors import StateError

        try:
            return cls.load(name)
        except StateError:
            return None


def _format(data: dict[str, Any]) -> int:
    """The record's format (taken out of ``data``): one this release reads, or ValueError."""
    number = data.pop("format", None)
    if number is None and data.pop("version", None) == 1:
        return 1
    if number != FORMAT:
        raise ValueError(f"format {number!r}, not one this nslab reads (1 or {FORMAT}): written by a later release?")
    return FORMAT


def remove(name: str) -> None:
    """Forget a lab. Features must have unmounted what they keep under its directory first."""
    # (not shutil.rmtree: shutil imports fnmatch, zlib, bz2 and lzma, ~4 ms of every `down`)
    top = lab_dir(name)
    for root, dirs, names in os.walk(top, topdown=False):  # never follows a symlink
        for entry in names + dirs:
            path = os.path.join(root, entry)
            try:
                if entry in dirs and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)
            except OSError:
                pass
    try:
        os.rmdir(top)
    except OSError:
        pass


def all_states() -> list[LabState]:
    """Every lab that is up and readable (damaged records are skipped)."""
    return [s for s in (LabState.load_or_none(n) for n in lab_names()) if s is not None]


# --- intent: what a running `up` is about to create -------------------------------------------------------
def write_intent(lab: str, namespaces: list[str], bridges: list[str], command: str = "up") -> None:
    """Made durable before the first kernel change of an ``up`` (or ``down``): if the run is killed, ``down``,
    ``gc`` and the next ``up`` know what it may have left (the namespaces by name, the bridges by name and link
    group); while it runs, ``status``, ``check``, ``doctor`` and ``graph`` say the lab is being changed
    (:func:`changing`): its pid, start time and ``command`` (``up``, ``down``; ``run`` for a throwaway lab)."""
    import time

    from ..drivers.files import private_dir, write_json
    from ..naming import is_run_lab

    path = intent_file(lab)
    try:
        private_dir(lab_dir(lab))
        from ..drivers.procfs import start_time

        me = os.getpid()
        write_json(path, {"pid": me, "start": start_time(me), "command": "run" if is_run_lab(lab) else command,
                          "since": time.time(), "namespaces": namespaces, "bridges": bridges})
    except OSError as exc:
        from ..errors import StateError

        raise StateError(f"cannot write {path}: {exc.strerror}") from None


def changing(lab: str) -> str | None:
    """``lab X is being changed by nslab up (pid N, since HH:MM:SS)`` while the lab's intent file names a live
    nslab process (``up``, ``run`` or ``down`` at work); None otherwise. Read without the machine lock: a
    reader never waits for the change to end, it says so instead of reporting a half-made lab as drift."""
    import time

    from ..drivers.files import read_json
    from ..drivers.procfs import is_running

    data = read_json(intent_file(lab))
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    if not is_running(data["pid"], data.get("start")):
        return None
    since = data.get("since")
    when = time.strftime("%H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"lab {lab} is being changed by nslab {data.get('command') or 'up'} (pid {data['pid']}, since {when})"


def identity(lab: str) -> tuple[int, int] | None:
    """Which save of the lab's state file is there now (every save is a new file renamed into place); None:
    no state (the lab is not up)."""
    try:
        found = os.stat(state_file(lab))
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns


def changing_labs(named: str | None = None) -> dict[str, str]:
    """Lab -> :func:`changing`'s line, for every lab (or the lab ``named``, or the lab of ``named`` LAB/HOST)
    that an nslab process is changing right now."""
    labs = sorted(set(labs_with_intent()))
    if named is not None:
        labs = [lab for lab in labs if named == lab or named.startswith(f"{lab}/")]
    found = {lab: changing(lab) for lab in labs}
    return {lab: text for lab, text in found.items() if text}


def read_intent(lab: str) -> tuple[list[str], list[str]]:
    """(namespaces, bridges) a run of ``up`` that did not finish may have made; empty when none."""
    from ..drivers.files import read_json

    data = read_json(intent_file(lab))
    if not isinstance(data, dict):
        return [], []
    names = [n for n in data.get("namespaces") or [] if isinstance(n, str) and n.startswith(f"{lab}-")]
    bridges = [b for b in data.get("bridges") or [] if isinstance(b, str) and b.startswith("nsl")]
    return names, bridges


def clear_intent(lab: str) -> None:
    try:
        os.unlink(intent_file(lab))
    except FileNotFoundError:
        pass
