"""Carry out a :class:`~nslab.plan.Plan` through a kernel driver, with an undo journal.

This module owns "nothing is half-done": every action that creates something pushes its inverse on a
journal; if a later action fails, the journal runs backwards and the error says what failed and what was
rolled back. It also tracks which recorded objects still exist, so the state written after a failure
describes the kernel truthfully and ``down`` can still remove everything.

The driver is anything with the surface of :class:`nslab.drivers.netlink.NetlinkKernel`
(:class:`nslab.drivers.fake.FakeKernel` in unit tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import KernelError, NslabError
from .model import Lab
from .plan import (
    AddBridges,
    AddHosts,
    AddLinks,
    Plan,
    RemoveBridges,
    RemoveHosts,
    RemoveLinks,
    RemoveStaleLinks,
)


@dataclass
class Progress:
    """Receives (done, total, what) as actions complete; the CLI draws a bar from it."""

    callback: Callable[[int, int, str], None] | None = None

    def __call__(self, done: int, total: int, what: str) -> None:
        if self.callback:
            self.callback(done, total, what)


@dataclass
class Outcome:
    """What exists after apply: the lab as far as it was built (``current``)."""

    current: Lab
    undo_failures: list[str] = field(default_factory=list)


def _without(lab: Lab, namespaces: set[str] = frozenset(), bridges: set[str] = frozenset()) -> Lab:
    return replace(
        lab,
        hosts={k: h for k, h in lab.hosts.items() if h.namespace not in namespaces},
        networks={k: n for k, n in lab.networks.items() if n.bridge not in bridges},
        links=tuple(
            lk
            for lk in lab.links
            if lab.hosts.get(lk.a) and lab.hosts[lk.a].namespace not in namespaces
            and lab.hosts.get(lk.b) and lab.hosts[lk.b].namespace not in namespaces
        ),
    )


def apply_up(plan: Plan, desired: Lab, recorded: Lab | None, kernel: Any, progress: Progress | None = None) -> Lab:
    """Apply ``plan``; return ``desired`` on success. On failure roll back and raise with the kernel truth.

    The raised error has ``.current``: the lab as it exists after the rollback (for the state file).
    """
    progress = progress or Progress()
    current = recorded or replace(desired, networks={}, hosts={}, links=())
    journal: list[tuple[str, Callable[[], list[str]]]] = []
    total = len(plan.actions)
    try:
        for done, action in enumerate(plan.actions):
            progress(done, total, action.summary())
            if isinstance(action, RemoveHosts):
                _raise_on(kernel.remove_namespaces(list(action.namespaces)))
                current = _without(current, namespaces=set(action.namespaces))
            elif isinstance(action, RemoveLinks):
                _raise_on(kernel.remove_link_ends(list(action.ends)))
            elif isinstance(action, RemoveBridges):
                _raise_on(kernel.remove_links(list(action.bridges)))
                current = _without(current, bridges=set(action.bridges))
            elif isinstance(action, RemoveStaleLinks):
                _raise_on(kernel.clear_stale_links(list(action.names)))
            elif isinstance(action, AddBridges):
                kernel.add_bridges(desired, list(action.networks))
                names = [n.bridge for n in action.networks]
                journal.append((f"{len(names)} bridge(s)", lambda names=names: kernel.remove_links(names)))
            elif isinstance(action, AddHosts):
                kernel.add_hosts(desired, list(action.hosts))
                names = [h.namespace for h in action.hosts]
                journal.append(
                    (f"{len(names)} namespace(s)", lambda names=names: kernel.remove_namespaces(names))
                )
            elif isinstance(action, AddLinks):
                kernel.add_links(desired, list(action.links))
                ends = [(desired.hosts[lk.a].namespace, lk.a_ifname) for lk in action.links]
                journal.append((f"{len(ends)} link(s)", lambda ends=ends: kernel.remove_link_ends(ends)))
            else:  # pragma: no cover - a new action type without an executor is a bug
                raise TypeError(f"no executor for {action!r}")
        progress(total, total, "done")
        return desired
    except BaseException as exc:
        undo_failures: list[str] = []
        undone: list[str] = []
        for what, undo in reversed(journal):
            try:
                undo_failures += undo()
                undone.append(what)
            except NslabError as undo_exc:
                undo_failures.append(str(undo_exc))
        if isinstance(exc, NslabError):
            detail = str(exc)
        elif isinstance(exc, OSError):
            detail = f"{exc.strerror or exc}"
        else:
            raise
        message = f"applying the lab failed: {detail}"
        if undone:
            message += f" (rolled back: {', '.join(undone)})"
        if undo_failures:
            message += f"; rollback problems: {'; '.join(undo_failures)}"
        error = KernelError(message)
        error.current = current  # type: ignore[attr-defined]
        raise error from exc


def apply_down(
    plan: Plan,
    kernel: Any,
    before: Callable[[], list[str]] | None = None,
    after: Callable[[], list[str]] | None = None,
) -> list[str]:
    """Remove everything in ``plan``, going on past failures; return all failures.

    ``before`` runs while the namespaces and bridges still exist (it stops services), ``after`` once the
    namespaces are gone. Bridges are then removed in the background (``kernel.remove_links_later``): the
    kernel detaches their ports one by one (~70 ms for 300 hosts), which overlaps everything after.
    Namespaces are only unpinned, as by ``ip netns del``: the kernel dismantles them and their veths
    asynchronously (``up`` copes with veths that have not disappeared yet, see plan.RemoveStaleLinks).
    """
    failures: list[str] = []
    bridges = [b for a in plan.actions if isinstance(a, RemoveBridges) for b in a.bridges]
    if before is not None:
        failures += before()  # services stop while their network still works (their shutdown may need it)
    wait = kernel.remove_links_later(bridges) if bridges else None
    try:
        for action in plan.actions:
            try:
                if isinstance(action, RemoveHosts):
                    failures += kernel.remove_namespaces(list(action.namespaces))
                elif isinstance(action, RemoveLinks):
                    failures += kernel.remove_link_ends(list(action.ends))
            except NslabError as exc:
                failures.append(str(exc))
        if after is not None:
            failures += after()
    finally:
        if wait is not None:
            failures += wait()
    return failures


def _raise_on(failures: list[str]) -> None:
    if failures:
        raise KernelError("; ".join(failures))
