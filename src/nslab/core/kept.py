"""The kept form of a lab file: its resolved lab, kept by the file's content, so an unchanged file skips YAML,
the schema and resolve (the last step of the loading pipeline, see load.py).

Reading a lab file costs ~200 ms before any work: importing PyYAML, pydantic (and the plugin loader it
runs) and building the schema, then resolving names and addresses. A second ``up`` of the same file (the
lab is up, or was brought down and up again) gives the same answer, so the answer is kept:

    /run/nslab/.cache/<key>.json      key = BLAKE2s of the file's bytes, its absolute path, the ${VAR}s it
                                      names and their values, and nslab's code (its modules' mtimes)

Each entry holds the lab's name, the lines of its source map (so a problem found on the way back still has
file:line), whether it asks for the machine's ULA range, and the resolved lab (state.py's JSON form) for each
set of resolve inputs it was resolved with (the machine's occupied networks and the lab's previous
allocations: a different machine gets a fresh resolve). The resolved lab holds everything the features plan
from (model.py), so nothing of the file itself is kept. Only a file that passed every check is kept; load.py
reads the file the full way whenever the kept form does not answer (:class:`~nslab.errors.StaleKeptForm`),
so every error message still comes from spec.py and resolve.py.

Nothing here is authoritative: a missing, unreadable or foreign entry is a miss. ``/run`` is a tmpfs, so the
kept forms go with the reboot; at most :data:`MAX_ENTRIES` files are kept (oldest removed first).

Replaces: nothing a person types; it is ``make``'s idea (the output is kept while the inputs are unchanged).
"""

from __future__ import annotations

import json
import os

from ..errors import SourceLines, StaleKeptForm
from ..paths import cache_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..model import Lab, Occupied

FORMAT = 2  # 2: the resolved lab only (1 kept the raw spec as well)
MAX_ENTRIES = 32
MAX_VARIANTS = 4  # resolve inputs kept per file (e.g. fresh machine vs the lab's own previous allocations)
MAX_FILE_BYTES = 4 << 20  # spec.MAX_FILE_BYTES: anything larger is read the full way (and refused there)


# ---------------------------------------------------------------------------------------------------------
# The key
# ---------------------------------------------------------------------------------------------------------
def _variables(text: str) -> list[str]:
    """Names written as ``${NAME...`` (comments too: a superset is harmless), without importing ``re``."""
    names = []
    start = text.find("${")
    while start >= 0:
        end = start + 2
        while end < len(text) and (text[end].isalnum() or text[end] == "_"):
            end += 1
        names.append(text[start + 2 : end])
        start = text.find("${", end)
    return sorted(set(names))


def _code_stamp() -> str:
    """The mtimes of the modules that read, resolve and store a lab (core/ and its features, the model) and of
    the package's __init__.py (where its version is written): new code, new keys."""
    core = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(core)
    stamps = []
    for directory, folders, names in os.walk(core):
        folders[:] = sorted(f for f in folders if f != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                stamps.append(f"{os.path.relpath(path, core)}:{os.stat(path).st_mtime_ns}")
    for name in ("model.py", "__init__.py"):
        stamps.append(f"{name}:{os.stat(os.path.join(package, name)).st_mtime_ns}")
    return f"{FORMAT};" + ",".join(stamps)


def file_key(text: str, path: str, environ: dict[str, str] | None = None) -> str:
    from ..naming import blake2s  # (built in: hashlib would load OpenSSL, ~4 ms)

    env = os.environ if environ is None else environ
    digest = blake2s()
    for part in (_code_stamp(), path, *(f"{n}={env.get(n)!r}" for n in _variables(text)), text):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def inputs_digest(occupied: list[Occupied], previous: dict[str, Any] | None, more: dict[str, Any] | None = None
                  ) -> str:
    """What resolve depends on besides the file: the networks in use elsewhere, the previous allocations and
    ``more`` of its keyword arguments (the machine's ULA range)."""
    from ..naming import blake2s

    extra = sorted((k, str(v)) for k, v in (more or {}).items())
    text = json.dumps([[str(o.network), o.owner] for o in occupied] + [previous, extra], sort_keys=True)
    return blake2s(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Entries
# ---------------------------------------------------------------------------------------------------------
class Entry:
    """One kept file: its lab's name, source lines, whether it wants the machine's ULA range, and its resolved
    forms by resolve inputs."""

    def __init__(self, key: str, data: dict[str, Any]) -> None:
        self.key = key
        self.name: str = data["name"]
        self.lines = SourceLines({tuple(p): line for p, line in data["lines"]})
        self.wants_ula: bool = data["wants_ula"]
        self.variants: list[dict[str, Any]] = data["variants"]

    def resolved(self, inputs: str) -> Lab:
        """The lab as resolved with these inputs; :class:`~nslab.errors.StaleKeptForm` when it never was."""
        from .state import lab_from_dict

        for variant in self.variants:
            if variant["inputs"] == inputs:
                return lab_from_dict(variant["lab"])
        raise StaleKeptForm("resolved with other inputs: resolve it the full way")


def _entry_path(key: str) -> str:
    return os.path.join(cache_dir(), f"{key}.json")


def _read_text(path: str) -> str | None:
    """The file's text when it is a plain UTF-8 file within bounds; None: let spec.read judge (and explain)."""
    import stat

    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return None
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
        return data.decode("utf-8").removeprefix("\ufeff")
    except (OSError, UnicodeDecodeError):
        return None


def lookup(path: str) -> Entry | None:
    """The kept form of file ``path`` (by its realpath); None: not kept (read it the full way)."""
    if path == "-":
        return None
    text = _read_text(path)
    if text is None:
        return None
    key = file_key(text, os.path.realpath(path))
    try:
        with open(_entry_path(key), "rb") as fh:
            data = json.loads(fh.read())
        if data.get("format") != FORMAT:
            return None
        return Entry(key, data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def store(text: str, path: str, name: str, lines: SourceLines, wants_ula: bool, resolved: Lab,
          inputs: list[str]) -> None:
    """Keep the lab of file ``path`` (read the full way from ``text``, every check passed) as ``resolved``, the
    answer for each of ``inputs`` (resolve inputs). Best effort: a write that fails leaves the file not kept."""
    from ..drivers.files import private_dir, write_json
    from .state import lab_to_dict

    key = file_key(text, path)
    try:
        try:
            with open(_entry_path(key), "rb") as fh:
                data = json.loads(fh.read())
            if data.get("format") != FORMAT:
                raise ValueError("another format")
        except (OSError, ValueError):
            data = {"format": FORMAT, "name": name, "wants_ula": wants_ula,
                    "lines": [[list(p), line] for p, line in lines.items()], "variants": []}
        resolved_dict = lab_to_dict(resolved)
        variants = [v for v in data["variants"] if v["inputs"] not in inputs]
        data["variants"] = [*({"inputs": i, "lab": resolved_dict} for i in inputs), *variants][:MAX_VARIANTS]
        private_dir(cache_dir())
        write_json(_entry_path(key), data)
        _prune()
    except (OSError, TypeError, ValueError):
        return


def _prune() -> None:
    try:
        names = [n for n in os.listdir(cache_dir()) if n.endswith(".json")]
        if len(names) <= MAX_ENTRIES:
            return
        entries = sorted((os.stat(os.path.join(cache_dir(), n)).st_mtime_ns, n) for n in names)
        for _, name in entries[: len(names) - MAX_ENTRIES]:
            os.unlink(os.path.join(cache_dir(), name))
    except OSError:
        return


def clear() -> None:
    """Forget every kept file (``nslab gc``)."""
    import shutil

    shutil.rmtree(cache_dir(), ignore_errors=True)
