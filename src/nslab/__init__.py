"""nslab: Linux network namespace labs, declaratively, fast and reversibly.

Public API::

    from nslab import Lab
    with Lab.load("nslab.yaml") as lab:
        result = lab.exec("web1", ["curl", "-s", "http://web2:8080"], capture_output=True, text=True)

Everything nslab raises on purpose derives from :class:`NslabError` (see :mod:`nslab.errors`).
"""

from __future__ import annotations

from .errors import (
    ConflictError,
    EnvironmentProblem,
    FirewallError,
    KernelError,
    NslabError,
    ResolveError,
    SpecError,
    TargetError,
    TeardownError,
    UserError,
)
from .lab import Lab, UpResult, down, status

__version__ = "0.1.0"

__all__ = [
    "ConflictError",
    "EnvironmentProblem",
    "FirewallError",
    "KernelError",
    "Lab",
    "NslabError",
    "ResolveError",
    "SpecError",
    "TargetError",
    "TeardownError",
    "UpResult",
    "UserError",
    "down",
    "status",
]
