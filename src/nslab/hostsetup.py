"""Feature 'hostsetup' (see features.py). Placeholder with the feature surface; filled in by its issue."""

from __future__ import annotations

from typing import Any

from .errors import Problem
from .model import Lab
from .spec import SourceMap

KEY = "hostsetup"
BEFORE_NAMESPACES = True


def validate(lab: Lab, source: SourceMap, file: str, others: list[Any]) -> list[Problem]:
    return []


def commands(lab: Lab, previous: dict[str, Any] | None) -> list[str]:
    return []


def up(lab: Lab, previous: dict[str, Any] | None, recreated: set[str]) -> dict[str, Any]:
    return {}


def down(name: str, recorded: dict[str, Any] | None, lab: Lab | None) -> list[str]:
    return []


def status(lab: Lab, recorded: dict[str, Any] | None) -> dict[str, Any]:
    return {}
