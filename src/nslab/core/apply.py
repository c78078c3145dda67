"""Carry out a :class:`~nslab.core.plan.Plan` with one undo journal: nothing is half-done.

Each action's ``apply`` returns its inverse; the inverses are kept in order. If an action fails — or the run is
interrupted — the journal runs backwards, so the machine returns to where this run found it (the previous lab
keeps working after a failed converge; a fresh lab leaves nothing), and the error says what failed and what was
rolled back. ``teardown`` runs a ``down`` plan, going on past failures and returning all of them.
:func:`change` is the path of a change to a lab that is up (``nslab impair``, ``partition``, ``connect``...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ApplyError, NslabError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..drivers import Drivers
    from ..model import Lab
    from .plan import Action, Plan

ProgressCallback = Callable[[int, int, str], None]


def apply(plan: Plan, drivers: Drivers, progress: ProgressCallback | None = None) -> list[Action]:
    """Apply every action in order and return the journal (the inverses, for :func:`rollback` should a later
    step of the caller fail); on any failure undo what this run did, then raise :class:`ApplyError`
    (:class:`KeyboardInterrupt` and other non-nslab errors are re-raised after the rollback)."""
    journal: list[Action] = []
    total = len(plan.actions)
    try:
        for done, action in enumerate(plan.actions):
            if progress is not None:
                progress(done, total, action.summary())
            with _signals_deferred():  # an action and the record of its inverse are one step
                inverse = action.apply(drivers)
                if inverse is not None:
                    journal.append(inverse)
        if progress is not None:
            progress(total, total, "done")
        return journal
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
    """Apply the inverses newest first; return (what was undone, what failed). Ctrl-C, SIGTERM and SIGHUP
    wait until the rollback is done (a second Ctrl-C must not leave half a lab)."""
    undone: list[str] = []
    failures: list[str] = []
    with _signals_deferred():
        for inverse in reversed(journal):
            try:
                inverse.apply(drivers)
                undone.append(inverse.summary())
            except (NslabError, OSError) as exc:
                failures.append(f"{inverse.summary()}: {exc}")
    return undone, failures


class _signals_deferred:  # used as a context manager, named like one (as contextlib's are)
    """SIGINT, SIGTERM and SIGHUP that arrive meanwhile take effect at the end (their handler then runs, as it
    would have): a step is never cut in half, whichever thread the kernel hands the signal to. Only in the main
    thread (the only one that may set handlers); elsewhere signals keep their way."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

    def __enter__(self) -> None:
        import signal
        import threading

        self.pending: list[int] = []
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            signum = getattr(signal, name)
            self.previous[signum] = signal.signal(signum, lambda n, _f: self.pending.append(n))

    def __exit__(self, *exc: object) -> None:
        import os
        import signal

        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        for signum in self.pending[:1]:  # the first one decides, as it would have
            handler = self.previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def teardown(plan: Plan, drivers: Drivers) -> list[str]:
    """Run a ``down`` plan: every action, whatever failed before it; return every failure."""
    failures: list[str] = []
    for action in plan.actions:
        try:
            failures += action.teardown(drivers)
        except OSError as exc:
            failures.append(f"{action.summary()}: {exc.strerror or exc}")
    return failures


def change(lab: str, key: str, drivers: Drivers | None,
           plan: Callable[[Lab, Any, Drivers], tuple[Sequence[Action], Any]], dry_run: bool = False) -> Plan:
    """One feature's part of a lab that is up, changed the way ``up`` changes it: under the machine lock,
    ``plan(recorded lab, the feature's recorded record (JSON), drivers) -> (actions, new record)``, applied with
    one undo journal, then the new record (``to_json()``) saved under ``key`` in the lab's state. Returns the
    plan; ``dry_run``: planned only (nothing applied or saved). ``drivers`` None: the machine's."""
    from ..drivers import Drivers as LiveDrivers
    from . import state
    from .plan import Plan

    own = drivers is None
    drivers = drivers or LiveDrivers.live()
    try:
        with state.machine_lock():
            recorded = state.LabState.load(lab)
            if recorded is None:
                from .which import not_up

                raise not_up(lab)
            actions, record = plan(recorded.lab, recorded.extra.get(key), drivers)
            planned = Plan(actions)
            if not dry_run:
                apply(planned, drivers)
                recorded.extra[key] = record.to_json()
                recorded.save()
            return planned
    finally:
        if own:
            drivers.close()
