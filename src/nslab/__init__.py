"""nslab: Linux network namespace labs, declaratively, fast and reversibly.

Public API::

    from nslab import Lab
    with Lab.load("nslab.yaml") as lab:
        result = lab.exec("web1", ["curl", "-s", "http://web2:8080"], capture_output=True, text=True)

Any namespace on the machine (a lab host, ``netns:NAME``, ``pid:PID``, ``container:NAME``, ``path:FILE``)::

    import nslab, socket
    with nslab.enter("container:app"):           # this thread only; back on exit
        socket.create_connection(("127.0.0.1", 8080))
    nslab.run(["ip", "addr"], network="none")     # a fresh namespace for one command
    nslab.list_namespaces()                       # what `nslab ls --json` shows

Everything nslab raises on purpose derives from :class:`NslabError` (see :mod:`nslab.errors`).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (this package is on the exec path)
if TYPE_CHECKING:
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
    from .ns.discover import list_namespaces
    from .ns.nsenter import enter
    from .tools.throwaway import run

# Imported on first use (PEP 562): `nslab exec` and `nslab down` import `nslab.*` submodules and must not pay
# for pydantic/yaml/click through this package's namespace (nor `nslab exec` for the exception tree).
_LAZY = {
    **dict.fromkeys(("ConflictError", "EnvironmentProblem", "FirewallError", "KernelError", "NslabError",
                     "ResolveError", "SpecError", "TargetError", "TeardownError", "UserError"), "errors"),
    "list_namespaces": "ns.discover",
    "Lab": "lab",
    "UpResult": "lab",
    "down": "lab",
    "status": "lab",
    "enter": "ns.nsenter",
    "run": "tools.throwaway",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nslab' has no attribute {name!r}")
    from importlib import import_module  # (not at the top: `nslab exec` imports this package)

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


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
    "enter",
    "list_namespaces",
    "run",
    "status",
]
