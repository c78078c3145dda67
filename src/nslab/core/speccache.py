"""A lab file already validated and resolved, kept by its content: an unchanged file skips YAML and the schema.

Reading a lab file costs ~200 ms before any work: importing PyYAML, pydantic (and the plugin loader it
runs) and building the schema, then resolving names and addresses. A second ``up`` of the same file (the
lab is up, or was brought down and up again) gives the same answer, so the answer is kept:

    /run/nslab/.cache/<key>.json      key = BLAKE2s of the file's bytes, its absolute path, the ${VAR}s it
                                      names and their values, and nslab's code (version + its modules' mtimes)

Each entry holds the raw spec as plain values (:class:`SpecView`: the features read the spec, so they get a
pydantic-free copy with the same attributes and methods), the lines of the source map, and the resolved lab
(state.py's JSON form) for each set of resolve inputs it was resolved with (the machine's occupied networks
and the lab's previous allocations: a different machine gets a fresh resolve). Only a file that passed every
check is kept, and on the way back it is checked again against the machine (features and name clashes); any
problem, or inputs never seen, and the file is read the full way (:class:`Stale`), so every error message
still comes from spec.py and resolve.py with file:line and field path.

Nothing here is authoritative: a missing, unreadable or foreign entry is a miss. ``/run`` is a tmpfs, so the
cache goes with the reboot; it keeps at most :data:`MAX_ENTRIES` files (oldest removed first).

Replaces: nothing a person types; it is ``make``'s idea (the output is kept while the inputs are unchanged).
"""

from __future__ import annotations

import json
import os

from ..errors import SourceLines
from ..paths import cache_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..drivers import Drivers
    from ..lab import Lab, UpResult
    from ..model import Lab as ResolvedLab
    from ..model import Occupied

FORMAT = 1
MAX_ENTRIES = 32
MAX_VARIANTS = 4  # resolve inputs kept per file (e.g. fresh machine vs the lab's own previous allocations)
MAX_FILE_BYTES = 4 << 20  # spec.MAX_FILE_BYTES: anything larger is read the full way (and refused there)


class Stale(Exception):
    """The kept form does not answer for this run: read the file the full way (nothing has changed yet)."""


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
    """nslab's version and the mtimes of its top-level modules (spec, resolve, model, state...): new code,
    new keys."""
    from .. import __version__

    here = os.path.dirname(os.path.abspath(__file__))
    stamps = []
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            stamps.append(f"{name}:{os.stat(os.path.join(here, name)).st_mtime_ns}")
    return f"{__version__};{FORMAT};" + ",".join(stamps)


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
# The spec as plain values
# ---------------------------------------------------------------------------------------------------------
class SpecView:
    """A pydantic model's fields as plain attributes (what the features read of the raw spec), with the
    methods spec.py's models offer answered from what the real model returned when the entry was made."""

    def __init__(self, kind: str, fields: dict[str, Any], answers: dict[str, Any]) -> None:
        self.__dict__.update(fields)
        self._kind = kind
        self._answers = answers

    def commands(self) -> list[str]:  # HostSpec.commands
        return list(self._answers["commands"])

    def active(self) -> bool:  # ImpairSpec.active
        return bool(self._answers["active"])

    def interface(self, network: str) -> Any:  # HostSpec.interface
        found = self._answers["interface"].get(network)
        return found if found is not None else self._answers["interface_default"]

    def __repr__(self) -> str:
        return f"SpecView({self._kind}, {sorted(k for k in self.__dict__ if not k.startswith('_'))})"


class _Unsupported(Exception):
    """A value the entry cannot carry as JSON: the file is simply not kept."""


_IP_KINDS = ("IPv4Address", "IPv6Address", "IPv4Network", "IPv6Network", "IPv4Interface", "IPv6Interface")


def _encode(value: Any) -> Any:  # noqa: C901  (one branch per kind of value a spec holds)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    kind = type(value).__name__
    if kind in _IP_KINDS:
        return {"$ip": kind, "v": str(value)}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise _Unsupported(kind)
        return {"$dict": {k: _encode(v) for k, v in value.items()}}
    fields = getattr(type(value), "model_fields", None)
    if fields is None:
        raise _Unsupported(kind)
    answers: dict[str, Any] = {}
    properties = {name: _encode(getattr(value, name)) for name in _properties(type(value))}  # e.g. dual_stack
    properties["model_fields_set"] = _encode(tuple(sorted(value.model_fields_set)))  # the fields written
    if callable(getattr(value, "commands", None)):
        answers["commands"] = value.commands()
    if callable(getattr(value, "active", None)):
        answers["active"] = value.active()
    if callable(getattr(value, "interface", None)):
        answers["interface"] = {n: _encode(value.interface(n)) for n in value.networks}
        answers["interface_default"] = _encode(value.interface("\0"))
    return {"$model": kind, "f": {**{name: _encode(getattr(value, name)) for name in fields}, **properties},
            "a": answers}


def _properties(model: type) -> list[str]:
    """The properties spec.py's models define (read like fields: kept as plain attributes of the view)."""
    return [name for klass in model.__mro__ if klass.__module__ == "nslab.core.spec"
            for name, member in vars(klass).items() if isinstance(member, property)]


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$ip" in value:
        import ipaddress

        return getattr(ipaddress, value["$ip"])(value["v"])
    if "$tuple" in value:
        return tuple(_decode(v) for v in value["$tuple"])
    if "$dict" in value:
        return {k: _decode(v) for k, v in value["$dict"].items()}
    answers = dict(value["a"])
    if "interface" in answers:
        answers["interface"] = {k: _decode(v) for k, v in answers["interface"].items()}
        answers["interface_default"] = _decode(answers["interface_default"])
    return SpecView(value["$model"], {k: _decode(v) for k, v in value["f"].items()}, answers)


# ---------------------------------------------------------------------------------------------------------
# Entries
# ---------------------------------------------------------------------------------------------------------
class Entry:
    """One kept file: its spec (plain), its source lines, and its resolved forms by resolve inputs."""

    def __init__(self, key: str, data: dict[str, Any]) -> None:
        self.key = key
        self.data = data

    def resolved(self, inputs: str, spec: Any) -> ResolvedLab | None:
        """The lab as resolved with these inputs (None: never resolved so)."""
        from ..values import replace
        from .state import lab_from_dict

        for variant in self.data["variants"]:
            if variant["inputs"] == inputs:
                return replace(lab_from_dict(variant["lab"]), spec=spec)
        return None


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


def load(path: str, drivers: Drivers | None = None) -> Lab | None:
    """The lab of file ``path`` from the cache (its spec as a :class:`SpecView`); None: not kept (read it the
    full way with :meth:`nslab.lab.Lab.load`)."""
    if path == "-":
        return None
    text = _read_text(path)
    if text is None:
        return None
    absolute = os.path.realpath(path)
    key = file_key(text, absolute)
    try:
        with open(_entry_path(key), "rb") as fh:
            data = json.loads(fh.read())
        if data.get("format") != FORMAT:
            return None
        spec = _decode(data["spec"])
        lines = SourceLines({tuple(p): line for p, line in data["lines"]})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    from ..lab import Lab

    lab = Lab(spec, lines, absolute, drivers)  # type: ignore[arg-type]  # duck-typed LabSpec / SourceMap
    lab.display_path = path
    lab.cached = Entry(key, data)
    return lab


def up(path: str, drivers: Drivers | None = None, dry_run: bool = False,
       progress: Callable[[int, int, str], None] | None = None) -> tuple[Lab, UpResult]:
    """``Lab.load(path, check=False).up(...)``, from the kept form when it answers for this run."""
    lab = load(path, drivers)
    if lab is not None:
        try:
            return lab, lab.up(dry_run=dry_run, progress=progress)
        except Stale:
            pass  # raised before any change (while validating): the full way starts from the same machine
    from ..lab import Lab

    lab = Lab.load(path, drivers, check=False)
    return lab, lab.up(dry_run=dry_run, progress=progress)


def store(lab: Lab, text: str, resolved: ResolvedLab, inputs: list[str]) -> None:
    """Keep ``lab`` (read the full way from ``text``, every check passed) with its resolved form, for each of
    ``inputs`` (resolve inputs it is the answer to).
    Best effort: a value JSON cannot carry, or a write that fails, leaves the file uncached."""
    from ..drivers.files import private_dir, write_json
    from .state import lab_to_dict

    key = file_key(text, lab.path)
    try:
        try:
            with open(_entry_path(key), "rb") as fh:
                data = json.loads(fh.read())
            if data.get("format") != FORMAT:
                raise ValueError("another format")
        except (OSError, ValueError):
            source = getattr(lab.source_map, "_lines", {})
            data = {"format": FORMAT, "name": lab.name, "spec": _encode(lab.spec),
                    "lines": [[list(p), line] for p, line in source.items()], "variants": []}
        resolved_dict = lab_to_dict(resolved)
        variants = [v for v in data["variants"] if v["inputs"] not in inputs]
        data["variants"] = [*({"inputs": i, "lab": resolved_dict} for i in inputs), *variants][:MAX_VARIANTS]
        private_dir(cache_dir())
        write_json(_entry_path(key), data)
        _prune()
    except (_Unsupported, OSError, TypeError, ValueError):
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
