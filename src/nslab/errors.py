"""The one exception tree of nslab.

Everything nslab raises on purpose derives from :class:`NslabError`. Third-party and OS errors are
converted at the driver boundary (``raise KernelError(...) from exc``), so callers of the API and the
CLI only ever handle this tree::

    NslabError
    ├── UserError            bad input; the CLI exits 2
    │   ├── SpecError        the lab file: syntax, unknown keys, bad values (carries all problems)
    │   ├── ResolveError     references, addresses, subnets, name clashes (carries all problems)
    │   ├── PublishSyntaxError  a published port that cannot be read (core/publish.py; reported as a Problem)
    │   ├── TargetError      a namespace target (pid:, container:, path:, ...) that cannot be entered
    │   │   └── CommandError a command that cannot be run: exit 127 (not found) or 126 (not executable)
    │   ├── ConflictError    something on the machine is in the way (a used port, a lab of another file)
    │   └── MachineError     which machine of a lab across machines this is cannot be told (``--machine``)
    ├── EnvironmentProblem   not root, missing kernel feature or tool; the CLI exits 1
    │   └── DockerUnavailable  nothing answers on Docker's socket (for a ``container:`` target: TargetError)
    ├── DockerError          Docker answered, but refused or failed a request
    ├── KernelError          a netlink/mount/setns operation failed while applying
    │   └── ApplyError       a plan failed and was rolled back; what could not be undone is listed
    ├── FirewallError        nftables refused a ruleset
    ├── StateError           a damaged record under /run/nslab (``down LAB`` still works from the marks)
    ├── TeardownError        `down` went on past failures and collects them all
    ├── StaleKeptForm        a kept lab file does not answer for this run: read the full way (never shown)
    └── BrowserError         ``nslab browse``'s browser could not be started or driven

A :class:`Problem` is one line of a report: where (file:line, field path) and what is wrong.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `nslab exec` imports this module
if TYPE_CHECKING:
    from typing import Any


def field_path(loc: tuple[object, ...]) -> str:
    """``('hosts', 'web1', 'publish', 0)`` -> ``hosts.web1.publish[0]`` (a :class:`Problem`'s field)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class SourceLines:
    """Where each field of a lab file was written: field path (tuple of keys and indexes) -> line. Built from
    the YAML by spec.SourceMap, or from the file's kept form (core/kept.py: no YAML needed to report a line)."""

    def __init__(self, lines: dict[tuple[Any, ...], int] | None = None):
        self._lines = lines or {}

    def alias(self, written: tuple[Any, ...], made: tuple[Any, ...]) -> None:
        """Lines of what was written under ``written`` also answer for ``made`` (hosts made by ``count:``)."""
        n = len(written)
        for path, line in list(self._lines.items()):
            if path[:n] == written:
                self._lines.setdefault(made + path[n:], line)

    def written(self, path: tuple[Any, ...]) -> bool:
        """Whether ``path`` itself was written (not only one of its parents)."""
        return path in self._lines

    def items(self) -> list[tuple[tuple[Any, ...], int]]:
        """Every (field path, line) known (what the kept form stores)."""
        return list(self._lines.items())

    def line(self, path: tuple[Any, ...]) -> int | None:
        # Walk up until some ancestor has a line: a missing field is reported at its parent.
        while True:
            if path in self._lines:
                return self._lines[path]
            if not path:
                return None
            path = path[:-1]


class Problem:
    """One thing wrong with the user's input, located as precisely as we can.

    A plain value class rather than a dataclass: this module is on the ``exec`` fast path, and importing
    ``dataclasses`` there costs more than the whole namespace switch.
    """

    __slots__ = ("message", "field", "file", "line")

    def __init__(self, message: str, field: str = "", file: str = "", line: int | None = None) -> None:
        self.message = message
        self.field = field
        self.file = file
        self.line = line

    def _key(self) -> tuple[str, str, str, int | None]:
        return (self.message, self.field, self.file, self.line)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Problem(message={self.message!r}, field={self.field!r}, file={self.file!r}, line={self.line!r})"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        parts = [p for p in (where, self.field) if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class NslabError(Exception):
    """Base of every error nslab raises on purpose."""

    exit_code = 1

    def lines(self) -> list[str]:
        """The report, one line per problem, as the CLI prints it."""
        return [str(self)]


class UserError(NslabError):
    """The user asked for something impossible or malformed; nothing was changed."""

    exit_code = 2


class _ProblemList(UserError):
    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class SpecError(_ProblemList):
    """The lab file cannot be read or does not match the schema."""


class ResolveError(_ProblemList):
    """The lab file is well-formed but inconsistent with itself or with the machine."""


class TargetError(UserError):
    """A namespace target does not exist or cannot be entered."""


class CommandError(TargetError):
    """The command to run in a namespace cannot be started: exit 127 when it is not found, 126 when it cannot
    be executed (as shells and ``docker run`` do)."""

    def __init__(self, command: str, err: int) -> None:
        import os

        self.command = command
        if err == 2:  # ENOENT
            self.exit_code = 127
            super().__init__(f"command not found: {command}")
        else:
            self.exit_code = 126
            super().__init__(f"cannot run {command}: {os.strerror(err)}")


class ConflictError(UserError):
    """Something already on the machine is in the way."""


class MachineError(UserError):
    """Which machine of a lab across machines this one is cannot be told, or ``--machine`` names none of them."""


class PublishSyntaxError(UserError):
    """A publish string that cannot be understood; the message is meant for the user."""


class EnvironmentProblem(NslabError):
    """The machine cannot run nslab as asked (privileges, kernel features, tools)."""


class DockerUnavailable(EnvironmentProblem):
    """Nothing answers on the Docker API socket."""


class DockerError(NslabError):
    """Docker answered, but refused or failed a request."""


class KernelError(NslabError):
    """A kernel operation failed while applying a plan."""


class ApplyError(KernelError):
    """Applying a plan failed and was rolled back; ``rollback_failures`` lists what could not be undone."""

    def __init__(self, message: str, rollback_failures: list[str]) -> None:
        super().__init__(message)
        self.rollback_failures = rollback_failures


class FirewallError(NslabError):
    """nftables refused the ruleset nslab rendered."""


class StateError(NslabError):
    """A lab's record under the state directory cannot be read (empty, truncated, wrongly typed)."""


class TeardownError(NslabError):
    """Teardown finished but some steps failed; all of them are listed."""

    def __init__(self, failures: list[str]):
        self.failures = list(failures)
        super().__init__("; ".join(self.failures))

    def lines(self) -> list[str]:
        return [f"teardown: {f}" for f in self.failures]


class StaleKeptForm(NslabError):
    """The kept form of a lab file (core/kept.py) does not answer for this run — other resolve inputs, or a
    problem to report with its file:line: the file is read the full way instead. Caught inside nslab; nothing
    has changed when it is raised."""


class BrowserError(NslabError):
    """The browser of ``nslab browse`` could not be started or driven."""
