"""A plan: the ordered, typed actions that take the machine from what is recorded and observed to the lab file.

Every change nslab makes — wiring (wiring.py) and every feature (features/) — is an :class:`Action`:

- ``commands()`` renders it as the commands a person would type (``nslab up --dry-run``; run by bash as root,
  they make the same kernel objects, addresses, routes, rules, sysctls and files as ``nslab up``). Lines that
  start with ``#`` name what is kept under /run/nslab or run by the lab's supervisor;
- ``apply(drivers)`` does it through the drivers and returns its inverse (another Action, or None when there is
  nothing to undo), which apply.py keeps in the one journal of the run;
- ``teardown(drivers)`` does it on the way down, where nothing is undone and every failure is collected.

A feature is a planner: from (desired lab, recorded state, observed machine) it returns actions plus the record
it will keep in the lab's state. ``up`` = lock -> observe -> resolve -> plan (wiring, then features in order)
-> apply (one journal) -> save; ``down`` plans its teardown the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..values import Value

if TYPE_CHECKING:
    from ..drivers import Drivers


class Action(Value):
    """One step of a plan: a :class:`~nslab.values.Value` (fields declared as annotations, dataclass style)
    compared by identity, treated as immutable once planned."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def commands(self) -> list[str]:  # pragma: no cover - every subclass renders itself
        raise NotImplementedError

    def summary(self) -> str:
        return type(self).__name__

    def apply(self, drivers: Drivers) -> Action | None:  # pragma: no cover - every subclass applies itself
        raise NotImplementedError

    def teardown(self, drivers: Drivers) -> list[str]:
        """On the way down: do it, going on past failures (returned, one line each)."""
        from ..errors import NslabError

        try:
            self.apply(drivers)
        except NslabError as exc:
            return [str(exc)]
        return []


class Plan:
    """Actions in the order they run."""

    def __init__(self, actions: Sequence[Action] = ()) -> None:
        self.actions: tuple[Action, ...] = tuple(actions)

    def __bool__(self) -> bool:
        return bool(self.actions)

    def __iter__(self) -> Iterator[Action]:
        return iter(self.actions)

    def __add__(self, other: Plan) -> Plan:
        return Plan(self.actions + other.actions)

    def commands(self) -> list[str]:
        return [c for a in self.actions for c in a.commands()]

    def of_type(self, kind: type[A]) -> list[A]:
        return [a for a in self.actions if isinstance(a, kind)]


if TYPE_CHECKING:
    from typing import TypeVar

    A = TypeVar("A", bound=Action)


def raise_on(failures: list[str]) -> None:
    """An action's failures (one line each, as the drivers return them) as one KernelError."""
    if failures:
        from ..errors import KernelError

        raise KernelError("; ".join(failures))


def broadcast_plus(address: object) -> str:
    """`` broadcast +`` for ``ip addr add`` as the netlink driver sets it (not for /31 and /32)."""
    prefix = getattr(getattr(address, "network", None), "prefixlen", 32)
    return " broadcast +" if prefix < 31 else ""


def shell_quote(text: str) -> str:
    """``text`` as one word for sh."""
    return "'" + text.replace("'", "'\\''") + "'"


class Steps(Action):
    """Several actions as one (an inverse that takes more than one step)."""

    steps: tuple[Action, ...]

    def commands(self) -> list[str]:
        return [c for s in self.steps for c in s.commands()]

    def summary(self) -> str:
        return ", ".join(s.summary() for s in self.steps)

    def apply(self, drivers: Drivers) -> Action | None:
        inverses: list[Action] = []
        for step in self.steps:
            inverse = step.apply(drivers)
            if inverse is not None:
                inverses.insert(0, inverse)
        return Steps(tuple(inverses)) if inverses else None
