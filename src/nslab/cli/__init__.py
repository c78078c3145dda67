"""The ``nslab`` command line. :func:`entry` is what bin/nslab runs.

The hot forms are recognized straight from argv by :mod:`nslab.cli.fast_exec` (``exec``) and
:mod:`nslab.cli.fast` (``up``, ``down``, ``status``): importing click alone costs more than ``ip netns exec``
takes. Everything else, and every error message, goes through the click application in :mod:`nslab.cli.app`.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (every command imports this package)
if TYPE_CHECKING:
    from collections.abc import Callable


def main(argv: list[str] | None = None) -> int:
    """Run the click application on ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    from .app import main as app_main

    return app_main(argv)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: handled like Ctrl-C (what is half-made is rolled back), exit status 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, _frame: object) -> None:
    raise Terminated(signum)


def reporting(action: Callable[[], int | None], partial: bool = False) -> int:
    """Run an action the way :func:`nslab.cli.app.main` would: errors as ``nslab: ...`` lines; the action's
    own exit status when ``partial``."""
    try:
        code = action()
    except Exception as exc:
        from ..errors import NslabError  # (imported on failure only: `nslab exec` succeeds without it)

        if not isinstance(exc, NslabError):
            raise
        for line in exc.lines():
            sys.stderr.write(f"nslab: {line}\n")
        return exc.exit_code
    except KeyboardInterrupt as exc:  # (what was half-made is rolled back by then), said as the click path says it
        if isinstance(exc, Terminated):
            sys.stderr.write(f"nslab: stopped by signal {exc.signum}\n")
            return 128 + exc.signum
        sys.stderr.write("nslab: aborted\n")
        return 130
    return (code or 0) if partial else 0


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


def entry() -> None:
    # `timeout`, systemd and CI runners stop a command with SIGTERM; a closed terminal sends SIGHUP. Both roll
    # back like Ctrl-C. (_signal, not signal: the latter imports enum, and `nslab exec` cannot afford it.)
    import _signal  # type: ignore[import-not-found]  # (no stub: the C half of signal)

    for signum in (_signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(signum, _terminate)
    argv = sys.argv[1:]
    try:
        code = fast_form(argv)
        sys.exit(main(argv) if code is None else code)
    except Terminated as exc:
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:  # Ctrl-C before a command could handle it (while Python imports): no traceback
        sys.exit(130)
