"""Which lab a command means, the same way for every command.

A command that acts on one lab takes it, in this order:

1. the LAB argument;
2. the lab named in ``-f FILE``;
3. the lab file in this folder: ``nslab.yaml``, else ``nslab.yml``, else the one ``*.nslab.yaml``;
4. the only lab that is up;

else it stops (exit 2) with one line listing the labs that are up. A lab named that is not up is reported by
:func:`not_up`, in the same words everywhere. A file's lab name comes from its kept form (kept.py) when
there is one, so ``down`` and ``status`` of a kept file read no YAML.

Cheap to import (``nslab down`` and ``status`` use it): os, state and kept only.
"""

from __future__ import annotations

import os

from ..errors import TargetError, UserError
from . import state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..model import Lab

#: Looked for in this order when no -f is given (as compose and containerlab do); then one ``*.nslab.yaml``.
DEFAULT_FILES = ("nslab.yaml", "nslab.yml")
SUFFIX = ".nslab.yaml"
HERE = "nslab.yaml, nslab.yml or one *.nslab.yaml"


def lab_file_here(directory: str = ".") -> str | None:
    """The lab file of ``directory`` (the first of :data:`DEFAULT_FILES`, else its one ``*.nslab.yaml``);
    None when it has none; several ``*.nslab.yaml`` and no default file: which one is unclear (exit 2)."""
    for name in DEFAULT_FILES:
        if os.path.exists(os.path.join(directory, name)):
            return name if directory == "." else os.path.join(directory, name)
    try:
        found = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))
    except OSError:
        return None
    if len(found) > 1:
        raise UserError(f"several lab files here ({', '.join(found)}): pick one with -f FILE")
    if found:
        return found[0] if directory == "." else os.path.join(directory, found[0])
    return None


def find_lab_file(file: str | None, directory: str = ".") -> str:
    """The lab file to read: ``file`` as given (``-`` is stdin), else the lab file of ``directory``."""
    if file is not None:
        if file != "-" and not os.path.exists(file):
            raise UserError(f"no lab file {file}")
        return file
    found = lab_file_here(directory)
    if found is None:
        raise UserError(f"no lab file here ({HERE}): pass -f FILE")
    return found


def name_in_file(path: str) -> str:
    """The lab name a lab file gives, from its kept form when it has one (no YAML read), else read the
    short way (:func:`nslab.core.spec.name_of`: the name only, the rest unchecked)."""
    from . import kept

    entry = kept.lookup(path)
    if entry is not None:
        return entry.name
    from .spec import name_of

    return name_of(path)


def labs_up() -> str:
    """``labs up: a, b`` (or ``none``): the end of every line that could not find a lab."""
    return f"labs up: {', '.join(state.lab_names()) or 'none'}"


def not_up(name: str) -> TargetError:
    """The error for lab ``name`` that is not up, in the words every command uses."""
    return TargetError(f"no lab '{name}' is up ({labs_up()})")


def lab_or_host(word: str) -> state.LabState | None:
    """For the commands that take ``LAB`` or ``[LAB/]HOST`` (doctor, logs): the lab a plain word names; None:
    it is a target (a host of a lab that is up, ``LAB/HOST``, ``netns:``...). A plain word that is neither
    is said as every command says a lab that is not up."""
    from ..paths import is_lab_name

    if not is_lab_name(word):
        return None
    recorded = state.LabState.load(word)
    if recorded is None and not any(word in s.lab.hosts for s in state.all_states()):
        raise not_up(word)
    return recorded


def no_host(lab: str, host: str, hosts: Iterable[str]) -> TargetError:
    """The error for a host lab ``lab`` does not have, in the words every command uses."""
    return TargetError(f"lab '{lab}' has no host '{host}' (hosts: {', '.join(hosts) or 'none'})")


def on_another_machine(lab: Lab, host: str) -> None:
    """A host of a lab across machines that lives on another machine: one line naming that machine (commands
    that enter a host work on the machine that has it)."""
    remote = lab.remote.get(host)
    if remote is not None:
        raise TargetError(f"host '{host}' of lab '{lab.name}' is on machine {remote.machine}, not this one "
                          f"({lab.machine}): run the command there")


def machine_part(name: str, machine: str) -> None:
    """``--machine NAME`` of a command on lab ``name``: the part recorded here must be that machine's."""
    from ..errors import MachineError

    recorded = state.LabState.load(name)
    if recorded is None:
        raise not_up(name)
    if recorded.lab.machine != machine:
        was = f"machine {recorded.lab.machine}'s part" if recorded.lab.machine else "not across machines"
        raise MachineError(f"lab {name} is up here as {was}, not machine {machine}'s")


def which_lab(lab: str | None = None, file: str | None = None, directory: str = ".") -> str:
    """The lab a command means (see the module's docstring for the order); the lab need not be up."""
    if lab is not None and file is not None:
        raise UserError("give either LAB or -f FILE, not both")
    if lab is not None:
        return lab
    if file is not None:
        return name_in_file(find_lab_file(file, directory))
    here = lab_file_here(directory)
    if here is not None:
        return name_in_file(here)
    names = state.lab_names()
    if len(names) == 1:
        return names[0]
    raise UserError(f"which lab? give LAB or -f FILE (no lab file here; {labs_up()})")


def up_lab(lab: str | None = None, file: str | None = None, directory: str = ".") -> state.LabState:
    """The record of the lab a command means (:func:`which_lab`), which must be up."""
    from ..paths import is_lab_name

    name = which_lab(lab, file, directory)
    recorded = state.LabState.load(name) if is_lab_name(name) else None
    if recorded is None:
        raise not_up(name)
    return recorded
