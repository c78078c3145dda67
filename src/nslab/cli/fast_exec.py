"""``nslab exec TARGET [--] COMMAND...`` in its plain form, without click: a module of its own, so that the
command that must start fastest loads nothing else of the CLI (see :mod:`nslab.cli.fast` for the other verbs).

The plain form is a lab host (``[LAB/]HOST``) or ``netns:NAME`` target and no exec options; anything else
(options, other target kinds, ``--help``) and anything doubtful (no such lab, an ambiguous host) returns
``None`` untouched, and the click command handles it and owns the error messages. Once we start entering,
errors are reported here, the way the click path reports them. Loaded: ``os``, paths.py and naming.py (which
labs are up), linux.py (``_ctypes``) and nsenter.py; not typing, re, json, threading or subprocess, nor the
exception tree until something fails (tests/unit/test_import_budget.py).
"""

from __future__ import annotations

import os

from .plain import reporting


def run_exec(text: str, rest: list[str]) -> int | None:
    """``nslab exec TEXT REST...``: replaces this process with the command, or returns an exit status (a
    failure, reported), or None: not the plain form, nothing done."""
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
        if "/" in text and ":" not in text:  # a host of a swarm lab on another machine: a job there runs it
            from .engine import exec_elsewhere

            return exec_elsewhere(text, command)
        return None
    from ..ns.nsenter import enter_host, exec_command

    def enter_and_exec() -> None:
        enter_host(*where)
        exec_command(command)  # returns only by raising

    return reporting(enter_and_exec)


def _netns(text: str) -> tuple[str, None] | None:
    from .. import paths

    name = text[len("netns:") :]
    if not name or "/" in name or name in (".", "..") or not os.path.exists(paths.netns_path(name)):
        return None
    return name, None


def _lab_host(text: str) -> tuple[str, str] | None:
    """(namespace, kept UTS namespace) of a lab host that is up; None when not exactly one lab has it."""
    from .. import paths

    lab, _, host = text.rpartition("/")
    if not host or "/" in lab or host in (".", ".."):
        return None
    found = paths.kept_hosts(host, lab or None)
    if len(found) != 1:
        return None
    lab, namespace = found[0]
    return namespace, paths.uts_path(lab, host)

