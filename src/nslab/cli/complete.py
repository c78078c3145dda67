"""Shell completion (bash, zsh, fish) through click's: subcommands and options come from click itself; this
module completes the values nslab knows -- lab names, ``LAB/HOST`` and bare hosts of the labs that are up,
``netns:`` names, ``container:`` names of running Docker containers, and lab files (``*.yaml``).

Enabled with ``eval "$(_NSLAB_COMPLETE=bash_source nslab)"`` (``zsh_source``, ``fish_source``); see
docs/commands.md, Shell completion.
Every function here is read-only and swallows errors: a completion never fails or prints a message.
"""

from __future__ import annotations

import os
from typing import Any

from click.shell_completion import CompletionItem


def _labs() -> list[str]:
    from ..core.state import lab_names

    try:
        return lab_names()
    except OSError:
        return []


def _hosts() -> list[str]:
    """``LAB/HOST`` of every host of the labs that are up, and ``HOST`` alone where it is unique."""
    from ..core.state import LabState

    seen: dict[str, int] = {}
    out: list[str] = []
    for lab in _labs():
        try:
            st = LabState.load(lab)
        except (OSError, ValueError):
            continue
        if st is None:
            continue
        for host in st.lab.hosts:
            out.append(f"{lab}/{host}")
            seen[host] = seen.get(host, 0) + 1
    return out + [h for h, n in seen.items() if n == 1]


def _netns() -> list[str]:
    from ..paths import NETNS_DIR

    try:
        return [f"netns:{n}" for n in sorted(os.listdir(NETNS_DIR))]
    except OSError:
        return []


def _containers() -> list[str]:
    from ..errors import NslabError
    from ..ns.targets import docker_get

    try:
        status, listing = docker_get("/containers/json", timeout=0.5)
    except (NslabError, OSError):
        return []
    if status != 200 or not isinstance(listing, list):
        return []
    return [f"container:{name.lstrip('/')}" for item in listing for name in item.get("Names", [])]


def _matching(words: list[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(w) for w in words if w.startswith(incomplete)]


def labs(ctx: Any, param: Any, incomplete: str) -> list[CompletionItem]:
    return _matching(_labs(), incomplete)


def lab_or_host(ctx: Any, param: Any, incomplete: str) -> list[CompletionItem]:
    return _matching(_labs() + _hosts(), incomplete)


def targets(ctx: Any, param: Any, incomplete: str) -> list[CompletionItem]:
    words = _hosts()
    if incomplete.startswith("netns:") or not incomplete:
        words += _netns()
    if incomplete.startswith("container:"):
        words += _containers()
    elif not incomplete or "container:".startswith(incomplete):
        words += ["container:", "pid:", "path:"] + ([] if _netns() else ["netns:"])
    return _matching(words, incomplete)


def lab_files(ctx: Any, param: Any, incomplete: str) -> list[CompletionItem]:
    """``*.yaml``/``*.yml`` files here, then whatever the shell completes as a path."""
    try:
        here = sorted(n for n in os.listdir(".") if n.endswith((".yaml", ".yml")))
    except OSError:
        here = []
    found = _matching(here, incomplete)
    return found or [CompletionItem(incomplete, type="file")]
