"""The ``nslab`` command line. :func:`entry` is what bin/nslab runs.

The hot forms are recognized straight from argv by :mod:`nslab.cli.fast_exec` (``exec``) and
:mod:`nslab.cli.fast` (``up``, ``down``, ``status``): importing click alone costs more than ``ip netns exec``
takes. Everything else, and every error message, goes through the click application in :mod:`nslab.cli.app`.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the click application on ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    from .app import main as app_main

    return app_main(argv)


def fast_form(argv: list[str]) -> int | None:
    """Do ``argv`` if it is a plain form of ``exec``, ``up``, ``down`` or ``status`` (without click); None: left
    to the click application, nothing done."""
    if argv[:1] == ["exec"]:
        if len(argv) < 3:
            return None
        from .fast_exec import run_exec

        return run_exec(argv[1], argv[2:])
    from .fast import run_fast

    return run_fast(argv)


#: What a user who is not root runs without the keeper's namespaces (nothing of a lab is involved).
_OUTSIDE = frozenset({"validate", "config", "completion", "--help", "-h", "--version"})


def _rootless(argv: list[str]) -> int | None:
    """A user who is not root works in their own namespaces, held by their keeper (daemons/keeper.py): joined
    here, before anything else (setns needs the process single-threaded), started first for ``up`` and
    ``run``. Returns the exit status when the command is done here (the keeper could not be started, said on
    stderr: 1; ``gc`` or ``down`` cleaned up after a keeper that died: 0); None: go on (joined, root, or no
    keeper needed)."""
    import os

    if os.geteuid() == 0 or not argv or argv[0] in _OUTSIDE:
        return None
    wants_help = "--help" in argv or "-h" in argv  # (help needs no keeper started)
    from ..daemons.keeper import clean_orphans, join
    from ..paths import user_state_root
    from .plain import reporting

    if argv[0] in ("gc", "down") and not wants_help:  # after a keeper that died: what is left goes, all of it
        done = clean_orphans(user_state_root(os.getuid()), dry_run="--dry-run" in argv)
        if done is not None:
            print(done)
            return 0
    held: list[int | None] = []
    code = reporting(lambda: held.append(join(start=argv[0] in ("up", "run") and not wants_help)))
    return None if code == 0 else 1


def entry() -> None:
    # `timeout`, systemd and CI runners stop a command with SIGTERM; a closed terminal sends SIGHUP. Both roll
    # back like Ctrl-C. (_signal, not signal: the latter imports enum, and `nslab exec` cannot afford it.)
    import _signal  # (its stub: dev/stubs/_signal.pyi)

    from .plain import Terminated, terminate

    for signum in (_signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(signum, terminate)

    argv = sys.argv[1:]
    try:
        done = _rootless(argv)
        if done is not None:
            sys.exit(done)
        code = fast_form(argv)
        sys.exit(main(argv) if code is None else code)
    except Terminated as exc:
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:  # Ctrl-C before a command could handle it (while Python imports): no traceback
        sys.exit(130)
    except BrokenPipeError:  # `nslab status | head`: the reader left; stop quietly with 1, as click's commands do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the flush at exit must not fail again)
        sys.exit(1)
