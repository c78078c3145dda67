"""The CLI's fast path: ``nslab exec TARGET [--] CMD...`` and ``nslab down LAB`` without click.

``nslab exec`` should cost about what ``ip netns exec`` costs, and importing click alone takes ~28 ms. So
the plain form — a lab host (``[LAB/]HOST``) or ``netns:NAME`` target and no exec options — is recognized
here from argv and carried out with nothing but ``os``, the ctypes wrappers (linux.py), paths.py, state.py's
name checks and nsenter.py loaded (no typing, re, json, threading or subprocess). Anything
else (options, other target kinds, ``--help``) and anything doubtful (no such lab, an ambiguous host) returns
``None`` untouched, and the click command handles it and owns the error messages. Once we start entering,
errors are reported here, the way the click path reports them. ``down LAB`` (one plain argument) is
the other form run from here: a teardown should not wait for click either.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable


def run_fast(argv: list[str]) -> int | None:
    """Do ``argv`` if it is a form this module knows; None: not handled, nothing done."""
    if len(argv) >= 3 and argv[0] == "exec":
        return _exec(argv[1], argv[2:])
    if len(argv) == 2 and argv[0] == "down" and not argv[1].startswith("-"):
        return _reporting(lambda: down(argv[1]))
    return None


def down(lab: str) -> None:
    """``nslab down LAB`` (also called by the click command once it knows the lab's name)."""
    from ..lab import down as lab_down

    if lab_down(lab):
        print(f"lab {lab} is down")
    else:
        print(f"lab {lab} was not up; nothing to do")


def _reporting(action: Callable[[], None]) -> int:
    """Run an action the way :func:`nslab.cli.app.main` would: errors as ``nslab: ...`` lines."""
    from ..errors import NslabError

    try:
        action()
    except NslabError as exc:
        for line in exc.lines():
            sys.stderr.write(f"nslab: {line}\n")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        from . import Terminated

        return 128 + exc.signum if isinstance(exc, Terminated) else 130
    return 0


def _exec(text: str, rest: list[str]) -> int | None:
    if text.startswith("-") or os.geteuid() != 0:
        return None  # an option before TARGET; not root: the click command says why root is needed
    if rest[0] == "--":
        command = rest[1:]
    elif rest[0].startswith("-"):
        return None  # an exec option after TARGET (or a command starting with '-': click decides)
    else:
        command = rest
    if not command:
        return None
    where = _netns(text) if text.startswith("netns:") else None if ":" in text else _lab_host(text)
    if where is None:
        return None
    from ..nsenter import enter_host, exec_command

    def enter_and_exec() -> None:
        enter_host(*where)
        exec_command(command)  # returns only by raising

    return _reporting(enter_and_exec)


def _netns(text: str) -> tuple[str, None] | None:
    from .. import paths

    name = text[len("netns:") :]
    if not name or "/" in name or name in (".", "..") or not os.path.exists(paths.netns_path(name)):
        return None
    return name, None


def _lab_host(text: str) -> tuple[str, str] | None:
    """(namespace, kept UTS namespace) of a lab host that is up; None when not exactly one lab has it."""
    from .. import paths, state

    lab, _, host = text.rpartition("/")
    if not host or "/" in lab or host in (".", ".."):
        return None
    found = state.kept_hosts(host, lab or None)
    if len(found) != 1:
        return None
    lab, namespace = found[0]
    return namespace, paths.uts_path(lab, host)

