"""Carry out a :class:`~nslab.plan.Plan` with one undo journal: nothing is half-done.

Each action's ``apply`` returns its inverse; the inverses are kept in order. If an action fails — or the run is
interrupted — the journal runs backwards, so the machine returns to where this run found it (the previous lab
keeps working after a failed converge; a fresh lab leaves nothing), and the error says what failed and what was
rolled back. ``teardown`` runs a ``down`` plan, going on past failures and returning all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import KernelError, NslabError

if TYPE_CHECKING:
    from .drivers import Drivers
    from .plan import Action, Plan

ProgressCallback = Callable[[int, int, str], None]


class ApplyError(KernelError):
    """Applying a plan failed and was rolled back; ``rollback_failures`` lists what could not be undone."""

    def __init__(self, message: str, rollback_failures: list[str]) -> None:
        super().__init__(message)
        self.rollback_failures = rollback_failures


def apply(plan: Plan, drivers: Drivers, progress: ProgressCallback | None = None) -> None:
    """Apply every action in order; on any failure undo what this run did, then raise :class:`ApplyError`
    (:class:`KeyboardInterrupt` and other non-nslab errors are re-raised after the rollback)."""
    journal: list[Action] = []
    total = len(plan.actions)
    try:
        for done, action in enumerate(plan.actions):
            if progress is not None:
                progress(done, total, action.summary())
            inverse = action.apply(drivers)
            if inverse is not None:
                journal.append(inverse)
        if progress is not None:
            progress(total, total, "done")
    except BaseException as exc:
        undone, failures = rollback(journal, drivers)
        if isinstance(exc, NslabError):
            detail = str(exc)
        elif isinstance(exc, OSError):
            detail = exc.strerror or str(exc)
        else:
            raise
        message = f"applying the lab failed: {detail}"
        if undone:
            message += f" (rolled back: {', '.join(undone)})"
        if failures:
            message += f"; rollback problems: {'; '.join(failures)}"
        raise ApplyError(message, failures) from exc


def rollback(journal: list[Action], drivers: Drivers) -> tuple[list[str], list[str]]:
    """Apply the inverses newest first; return (what was undone, what failed)."""
    undone: list[str] = []
    failures: list[str] = []
    for inverse in reversed(journal):
        try:
            inverse.apply(drivers)
            undone.append(inverse.summary())
        except (NslabError, OSError) as exc:
            failures.append(f"{inverse.summary()}: {exc}")
    return undone, failures


def teardown(plan: Plan, drivers: Drivers) -> list[str]:
    """Run a ``down`` plan: every action, whatever failed before it; return every failure."""
    failures: list[str] = []
    for action in plan.actions:
        try:
            failures += action.teardown(drivers)
        except OSError as exc:
            failures.append(f"{action.summary()}: {exc.strerror or exc}")
    return failures
