"""Loading a lab file, one pipeline: read -> validate -> resolve -> keep.

- read: the file's text (spec.read), parsed and checked against the schema (spec.parse_all), as a
  :class:`LabFile`; or, for a file kept unchanged, its kept form (:func:`kept_file`, kept.py), without YAML
  or pydantic;
- validate: resolve against the machine's inputs (:class:`Inputs`: the networks in use, the other labs, this
  lab's previous allocations, the machine's ULA range) and run every feature's and the machine's checks;
  every problem at once, in file order;
- resolve: :func:`resolved` gives the lab when nothing is wrong and raises every problem otherwise;
- keep: a file read the full way that passed every check is kept with its resolved lab (kept.py). A kept
  file that does not answer for this run (other resolve inputs, or any problem) raises
  :class:`~nslab.errors.StaleKeptForm`: the caller reads it the full way, so every error message keeps its
  file:line and field path.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import Problem, ResolveError, SourceLines, SpecError, StaleKeptForm, UserError
from ..model import Occupied
from ..values import Value, replace
from . import dotenv, features, kept, rootless, state

if TYPE_CHECKING:  # the spec needs pydantic + yaml (~100 ms): only a file read the full way pays for it
    from ..drivers import Drivers
    from ..model import Lab
    from .spec import Parsed

__all__ = ["Checked", "Inputs", "LabFile", "from_text", "kept_file", "read", "resolved", "validate"]


class LabFile(Value):
    """A lab file ready to resolve: read the full way (``parsed``: the spec as far as the schema let it, with
    the schema's problems) or kept (``entry``: its resolved forms by resolve inputs)."""

    name: str
    path: str  # its real path ("" for standard input or text): a lab's state names the file it came from
    label: str  # as problems name it: the path as given, <stdin>, <string>
    lines: SourceLines  # where each field was written
    parsed: Parsed | None = None
    entry: kept.Entry | None = None
    text: str | None = None  # as read, for a file that may be kept

    def wants_ula(self) -> bool:
        """Whether a network or link wants IPv6 without a subnet6 (then the machine's ULA range is an input)."""
        if self.entry is not None:
            return self.entry.wants_ula
        spec = self.parsed.spec if self.parsed is not None else None
        if spec is None:
            return False
        wanting = [(n.dual_stack, n.subnet6) for n in spec.networks.values()]
        wanting += [(lk.dual_stack, lk.subnet6) for lk in spec.links]
        return any(dual and subnet6 is None for dual, subnet6 in wanting)


# --- read ----------------------------------------------------------------------------------------------------
def read(path: str | os.PathLike[str]) -> LabFile:
    """Read and parse the lab file ``path`` (``-``: standard input); raises SpecError when nothing of it can
    be used (its schema problems otherwise travel with it to :func:`validate`)."""
    from . import spec

    text = spec.read(os.fspath(path))
    stdin = str(path) == "-"
    label = "<stdin>" if stdin else str(path)
    real = "" if stdin else os.path.realpath(path)
    return _parsed(spec.parse_all(text, label, dotenv.environment(real)), label, real, None if stdin else text)


def from_text(text: str, label: str = "<string>", path: str = "") -> LabFile:
    """Lab-file text; ``path``: the file it stands for ("": none)."""
    from . import spec

    return _parsed(spec.parse_all(text, label), label, path, None)


def _parsed(parsed: Parsed, label: str, path: str, text: str | None) -> LabFile:
    if parsed.spec is None:
        raise SpecError(parsed.problems)
    return LabFile(parsed.spec.name, path, label, parsed.source, parsed=parsed, text=text)


def renamed(lab_file: LabFile, name: str) -> LabFile:
    """The same lab file under another lab name (the pytest plugin's labs); read the full way."""
    from .spec import Parsed

    parsed = lab_file.parsed
    assert parsed is not None and parsed.spec is not None, "only a file read the full way can be renamed"
    spec = parsed.spec.model_copy(update={"name": name})
    return replace(lab_file, name=name, parsed=Parsed(spec, parsed.source, parsed.problems, parsed.link_index),
                   text=None)


def kept_file(path: str) -> LabFile | None:
    """The kept form of the lab file ``path``, when it is kept unchanged (no YAML, no pydantic); None: read it."""
    entry = kept.lookup(path)
    if entry is None:
        return None
    return LabFile(entry.name, os.path.realpath(path), path, entry.lines, entry=entry)


# --- validate ------------------------------------------------------------------------------------------------
class Inputs(Value):
    """What resolving a lab depends on besides its file."""

    others: list[state.LabState]  # the other labs that are up
    occupied: list[Occupied]  # the machine's networks and the other labs'
    previous: dict[str, Any] | None  # this lab's allocations as it is up (kept where still valid)
    ula: dict[str, Any]  # ``{"ula": the machine's /48}`` when the lab wants it

    def digest(self, previous: dict[str, Any] | None = None) -> str:
        return kept.inputs_digest(self.occupied, previous if previous is not None else self.previous, self.ula)


def other_labs(name: str) -> list[state.LabState]:
    """The other labs that are up (a damaged record is left out: it must not block this lab; a user who is not
    root cannot read the state root: none, ``nslab validate`` says so)."""
    try:
        names = state.lab_names()
    except PermissionError:
        return []
    return [s for s in (state.LabState.load_or_none(n) for n in names if n != name) if s is not None]


def machine_inputs(lab_file: LabFile, drivers: Drivers | None, recorded: state.LabState | None) -> Inputs:
    """The resolve inputs of ``lab_file`` on this machine (``drivers`` None: only the other labs')."""
    others = other_labs(lab_file.name)
    occupied = [Occupied(net, who) for net, who in drivers.kernel.machine_networks()] if drivers else []
    for other in others:
        lab, owner = other.lab, f"lab '{other.lab.name}'"
        occupied += [Occupied(n.subnet, f"network '{n.name}' of {owner}") for n in lab.networks.values()]
        occupied += [Occupied(lk.subnet, f"a link of {owner}") for lk in lab.links]
        occupied += [Occupied(n.subnet6, f"network '{n.name}' of {owner}") for n in lab.networks.values()
                     if n.subnet6]
        occupied += [Occupied(lk.subnet6, f"a link of {owner}") for lk in lab.links if lk.subnet6]
    ula: dict[str, Any] = {}
    if lab_file.wants_ula():
        from .ula import machine_ula

        found = machine_ula(create=drivers is not None)
        ula = {"ula": found} if found is not None else {}
    return Inputs(others, occupied, recorded.lab.allocations() if recorded else None, ula)


class Checked(Value):
    """A lab file validated: the lab as far as it resolved, every problem in file order, the inputs it had."""

    lab: Lab
    problems: list[Problem]
    inputs: Inputs


def _resolve(lab_file: LabFile, inputs: Inputs, drivers: Drivers | None) -> tuple[Lab, list[Problem]]:
    if lab_file.entry is not None:
        if drivers is None:
            raise StaleKeptForm("no machine to compare the resolve inputs with: resolve it the full way")
        return replace(lab_file.entry.resolved(inputs.digest()), source=lab_file.path), []
    from .resolve import resolve_all  # (spec.py, pydantic: only a file read the full way pays it)

    assert lab_file.parsed is not None and lab_file.parsed.spec is not None
    lab, problems = resolve_all(lab_file.parsed.spec, lab_file.parsed.source, lab_file.label, inputs.occupied,
                                inputs.previous, **inputs.ula)
    return replace(lab, source=lab_file.path), problems


def validate(lab_file: LabFile, drivers: Drivers | None, recorded: state.LabState | None = None) -> Checked:
    """Every problem of the lab in one pass, changing nothing: the file's schema, names and references,
    addresses and subnets (against the machine's routes and the other labs when ``drivers`` are given),
    each feature's checks (published ports...), and names nslab would create that the machine already has.
    A kept file whose inputs were never seen raises :class:`~nslab.errors.StaleKeptForm`."""
    inputs = machine_inputs(lab_file, drivers, recorded)
    lab, problems = _resolve(lab_file, inputs, drivers)
    ctx = features.ValidateContext(lab, lab_file.lines, lab_file.label, inputs.others, drivers)
    problems += features.validate(ctx)
    refused = rootless.problems(lab, lab_file.lines, lab_file.label)  # (they say why better than a feature's)
    problems = [p for p in problems if p.field not in {r.field for r in refused}] + refused
    if drivers is not None:
        from .collisions import collisions
        from .wiring import sysctl_problems

        problems += collisions(lab, drivers, recorded.lab if recorded else None, inputs.others, lab_file.lines,
                               lab_file.label)
        problems += sysctl_problems(lab, drivers, lab_file.lines, lab_file.label)
    parsed = lab_file.parsed
    if parsed is not None:
        problems = parsed.problems + [parsed.relocate(p) for p in problems]
    return Checked(lab, _in_file_order(problems), inputs)


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    """Sorted by line (problems without one last), each once."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line is None, p.line or 0))


def problem_error(problems: list[Problem], lab_file: LabFile) -> UserError:
    """The error raising ``problems``: a SpecError when the schema found some, else a ResolveError."""
    return SpecError(problems) if lab_file.parsed is not None and lab_file.parsed.problems else ResolveError(problems)


# --- resolve and keep ----------------------------------------------------------------------------------------
def resolved(lab_file: LabFile, drivers: Drivers | None, recorded: state.LabState | None = None) -> Lab:
    """The lab of ``lab_file`` validated against the machine; every problem raised at once (a kept file:
    :class:`~nslab.errors.StaleKeptForm`, to be read the full way). A file read the full way and found right is kept."""
    checked = validate(lab_file, drivers, recorded)
    if checked.problems:
        if lab_file.entry is not None:
            raise StaleKeptForm("a problem: read the file the full way to report it")
        raise problem_error(checked.problems, lab_file)
    if drivers is not None and lab_file.text is not None and lab_file.path:
        keep(lab_file, checked)
    return checked.lab


def keep(lab_file: LabFile, checked: Checked) -> None:
    """Keep the file with its resolved lab, the answer for its inputs; for a new lab also for the inputs of the
    next ``up`` (these allocations as the previous ones: the same lab, resolve keeps them)."""
    assert lab_file.text is not None
    inputs = [checked.inputs.digest()]
    if checked.inputs.previous is None:
        inputs.append(checked.inputs.digest(checked.lab.allocations()))
    kept.store(lab_file.text, lab_file.path, lab_file.name, lab_file.lines, lab_file.wants_ula(), checked.lab,
               inputs)
