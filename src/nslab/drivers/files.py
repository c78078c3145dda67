"""Files nslab writes: one atomic writer and one JSON reader for every record, config and per-host file.

A reader — a program resolving a name in a host, ``status`` reading a lab's state — sees the old content or
the new one, never half: the text goes to ``PATH.nslab-tmp`` and is renamed over ``PATH``. Replaces the
``printf ... > FILE`` of the tutorials.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TMP_SUFFIX = ".nslab-tmp"


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    tmp = path + TMP_SUFFIX
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with open(fd, "w", closefd=True) as fh:
            fh.write(text)
        os.chmod(tmp, mode)  # the umask may have narrowed the mode at creation
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path: str, data: Any, mode: int = 0o644) -> None:
    import json

    # json.dumps, not json.dump: only the one-shot form uses the C encoder (5x faster on a big lab)
    write_atomic(path, json.dumps(data, separators=(",", ":")), mode)


def read_json(path: str) -> Any:
    """The document at ``path``, or None when it is missing or unreadable."""
    import json

    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def read_text(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None
