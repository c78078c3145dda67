"""``nslab exec 'LAB/web*' -- CMD`` and ``nslab exec --all LAB -- CMD``: one command in many lab hosts at once.

Each host's command runs as ``nslab exec`` runs it (:func:`~nslab.ns.nsenter.spawn_in_target`), all at the same
time; every line each one prints is copied as it comes, prefixed ``HOST | `` (``LAB/HOST | `` when the hosts
are of several labs), standard error to standard error. The exit status is the highest of them (a command
killed by a signal counts as 128 + the signal, as a shell shows it).

Replaces: ``for h in ...; do ip netns exec $h CMD | sed "s/^/$h | /"; done``.
"""

from __future__ import annotations

import os
import sys
import threading
from fnmatch import fnmatchcase
from typing import IO, TYPE_CHECKING

from .. import naming, paths
from ..core import state
from ..errors import TargetError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .nsenter import ExecOptions

GLOB = frozenset("*?[")


def is_pattern(text: str) -> bool:
    """Whether a TARGET names many hosts (a glob in its host part)."""
    return bool(GLOB & set(text.rpartition("/")[2]))


def matching(text: str, every: bool = False) -> list[tuple[str, str]]:
    """(lab, host) of each host that is up and ``[LAB/]PATTERN`` names (``every``: ``text`` is a LAB, all
    its hosts), in lab and host order; none is an error that names what there is."""
    lab, _, pattern = (text, "", "*") if every else text.rpartition("/")
    labs = [lab] if lab else state.lab_names()
    if lab and lab not in state.lab_names():
        raise TargetError(f"no lab '{lab}' is up")
    found = [(name, host) for name in labs for host in _hosts(name) if fnmatchcase(host, pattern)]
    if not found:
        raise TargetError(f"no host of {'lab ' + repr(lab) if lab else 'the labs that are up'} matches '{pattern}'")
    return found


def _hosts(lab: str) -> list[str]:
    """The hosts of ``lab`` that are up (as their kept UTS namespaces and named namespaces show)."""
    try:
        names = sorted(os.listdir(os.path.dirname(paths.uts_path(lab, "x"))))
    except OSError:
        return []
    return [h for h in names if os.path.exists(paths.netns_path(naming.namespace_name(lab, h)))]


def run(hosts: Sequence[tuple[str, str]], argv: Sequence[str], options: ExecOptions) -> int:
    """Run ``argv`` in every host at once, lines prefixed; the highest exit status."""
    import subprocess

    from .nsenter import spawn_in_target
    from .targets import lab_host

    several = len({lab for lab, _ in hosts}) > 1
    lock = threading.Lock()
    procs, copiers = [], []
    for lab, host in hosts:
        label = f"{lab}/{host}" if several else host
        proc = spawn_in_target(lab_host(f"{lab}/{host}"), argv, options, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        for stream, out in ((proc.stdout, sys.stdout.buffer), (proc.stderr, sys.stderr.buffer)):
            assert stream is not None
            copier = threading.Thread(target=_copy, args=(stream, out, f"{label} | ".encode(), lock), daemon=True)
            copier.start()
            copiers.append(copier)
    codes = [proc.wait() for proc in procs]
    for copier in copiers:
        copier.join()
    return max(128 - code if code < 0 else code for code in codes)


def _copy(stream: IO[bytes], out: IO[bytes], prefix: bytes, lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            out.write(prefix + line + (b"" if line.endswith(b"\n") else b"\n"))
            out.flush()
    stream.close()
