"""The ``nslab`` command line. :func:`entry` is what bin/nslab runs.

The hot forms are recognized straight from argv by :mod:`nslab.cli.fast` (importing click alone costs more
than ``ip netns exec`` takes); everything else, and every error message, goes through the click
application in :mod:`nslab.cli.app`.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the click application on ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    from .app import main as app_main

    return app_main(argv)


def entry() -> None:
    from .fast import run_fast

    argv = sys.argv[1:]
    code = run_fast(argv)
    sys.exit(main(argv) if code is None else code)
