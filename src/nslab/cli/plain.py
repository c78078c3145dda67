"""What the click-free forms of the CLI share (cli/fast.py, cli/fast_exec.py, and app.py's error handling):
SIGTERM and SIGHUP handled like Ctrl-C, and errors reported as ``nslab: ...`` lines. A module of its own so
that none of them imports the package's ``__init__`` back (which dispatches to them)."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (`nslab exec` loads this module)
if TYPE_CHECKING:
    from collections.abc import Callable


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: handled like Ctrl-C (what is half-made is rolled back), exit status 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def terminate(signum: int, _frame: object) -> None:
    """The handler :func:`nslab.cli.entry` gives SIGTERM and SIGHUP."""
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
