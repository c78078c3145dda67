"""Files nslab writes: one atomic writer and one JSON reader for every record, config and per-host file.

A reader — a program resolving a name in a host, ``status`` reading a lab's state — sees the old content or
the new one, never half: the text goes to ``PATH.nslab-tmp`` and is renamed over ``PATH``. Replaces the
``printf ... > FILE`` of the tutorials.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
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


def write_json(path: str, data: Any, mode: int = 0o600) -> None:
    """nslab's records are root's alone (a service's environment may hold secrets), as Docker keeps its own."""
    import json

    # json.dumps, not json.dump: only the one-shot form uses the C encoder (5x faster on a big lab)
    write_atomic(path, json.dumps(data, separators=(",", ":")), mode)


def private_dir(path: str) -> None:
    """``mkdir -p -m 700 PATH`` (and 0700 if it existed with a wider mode)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


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


#: What nslab writes under /etc/netns/<namespace>/.
NETNS_FILES = ("hosts", "resolv.conf")


class LiveFiles:
    """The files driver: the files of each namespace under /etc/netns, and nslab's JSON records."""

    def read_text(self, path: str) -> str | None:
        return read_text(path)

    def read_json(self, path: str) -> Any:
        return read_json(path)

    def write_json(self, path: str, data: Any) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, data)

    def remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def write_netns_files(self, namespace: str, files: Mapping[str, str]) -> None:
        """``/etc/netns/<namespace>/<name>`` for each file, atomically (a running program sees old or new)."""
        from ..errors import KernelError
        from ..paths import etc_netns_dir

        directory = etc_netns_dir(namespace)
        try:
            os.makedirs(directory, exist_ok=True)
            for name, text in files.items():
                write_atomic(os.path.join(directory, name), text)
        except OSError as exc:
            raise KernelError(f"cannot write {directory}: {exc.strerror}") from None

    def remove_netns_files(self, namespace: str) -> None:
        """Remove what nslab wrote, and the directory if nothing else is in it (never someone else's file)."""
        from ..errors import KernelError
        from ..paths import etc_netns_dir

        directory = etc_netns_dir(namespace)
        try:
            for name in NETNS_FILES:
                for path in (os.path.join(directory, name), os.path.join(directory, name + TMP_SUFFIX)):
                    self.remove(path)
            os.rmdir(directory)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:  # someone else's file stays, with its directory
                raise KernelError(f"cannot remove {directory}: {exc.strerror}") from None

    def prune_etc_netns(self) -> None:
        """Debian has no /etc/netns until the first ``up`` made it: it goes when empty again."""
        from ..paths import ETC_NETNS_DIR

        try:
            os.rmdir(ETC_NETNS_DIR)
        except OSError:
            pass  # other namespaces' files are there (or it never existed)
