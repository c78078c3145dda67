"""What a lab does beyond wiring, as pluggable steps: the firewall (NAT, isolation, published ports) and
the inside of hosts (DNS files, hostnames, services).

Each feature is a module exposing the functions of :class:`Feature`. ``lab.py`` calls them in this order:

- ``validate``  while resolving, before any kernel change; returns problems (file:line, field);
- ``commands``  for ``up --dry-run``: the equivalent commands it would run;
- ``up``        after the wiring is applied; returns the JSON-able record kept in the lab's state under
                the feature's ``KEY`` (passed back as ``previous`` next time, and to ``down``);
- ``down``      on teardown: ``hostsetup`` before the namespaces go (stop services), ``firewall`` after;
                goes on past errors and returns them;
- ``status``    adds its part to the ``status --json`` document of a lab.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .errors import Problem
    from .model import Lab
    from .spec import SourceMap

#: In ``up`` order. ``down`` runs the ones marked ``BEFORE_NAMESPACES = True`` first.
FEATURE_MODULES = ("nslab.firewall", "nslab.hostsetup")


class Feature(Protocol):
    KEY: str
    BEFORE_NAMESPACES: bool

    def validate(self, lab: Lab, source: SourceMap, file: str, others: list[Any]) -> list[Problem]: ...

    def commands(self, lab: Lab, previous: dict[str, Any] | None) -> list[str]: ...

    def up(self, lab: Lab, previous: dict[str, Any] | None, recreated: set[str]) -> dict[str, Any]: ...

    def down(self, name: str, recorded: dict[str, Any] | None, lab: Lab | None) -> list[str]: ...

    def status(self, lab: Lab, recorded: dict[str, Any] | None) -> dict[str, Any]: ...


def features() -> list[ModuleType]:
    return [importlib.import_module(name) for name in FEATURE_MODULES]
