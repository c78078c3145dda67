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

from ..errors import MachineError, Problem, ResolveError, SourceLines, SpecError, StaleKeptForm, UserError
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
        if spec is None or spec.machines:  # (a lab across machines has its own range: overlay.lab_ula)
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
    whole: Lab | None = None  # a lab across machines: the whole lab (``lab`` is this machine's part)


#: The inputs a lab across machines is kept for: its file alone (resolving reads nothing of the machine).
ACROSS = "across machines: the file alone"


def _resolve(lab_file: LabFile, inputs: Inputs, drivers: Drivers | None) -> tuple[Lab, list[Problem]]:
    if lab_file.entry is not None:
        if drivers is None:
            raise StaleKeptForm("no machine to compare the resolve inputs with: resolve it the full way")
        try:
            found = lab_file.entry.resolved(inputs.digest())
        except StaleKeptForm:
            found = lab_file.entry.resolved(ACROSS)  # (a lab across machines; else stale: read the full way)
        return replace(found, source=lab_file.path), []
    from .resolve import resolve_all  # (spec.py, pydantic: only a file read the full way pays it)

    assert lab_file.parsed is not None and lab_file.parsed.spec is not None
    lab, problems = resolve_all(lab_file.parsed.spec, lab_file.parsed.source, lab_file.label, inputs.occupied,
                                inputs.previous, **inputs.ula)
    return replace(lab, source=lab_file.path), problems


def validate(lab_file: LabFile, drivers: Drivers | None, recorded: state.LabState | None = None,
             machine: str | None = None, strict: bool = True) -> Checked:
    """Every problem of the lab in one pass, changing nothing: the file's schema, names and references,
    addresses and subnets (against the machine's routes and the other labs when ``drivers`` are given),
    each feature's checks (published ports...), and names nslab would create that the machine already has.
    A kept file whose inputs were never seen raises :class:`~nslab.errors.StaleKeptForm`.

    A lab across machines with ``drivers``: the part of this machine (``machine``, else the one recorded, else
    the one whose address is local; overlay.local_machine), its subnets checked against this machine's routes;
    ``strict`` False (``nslab validate``, ``config``): on a machine that is none of the lab's, the whole lab,
    without the machine's checks."""
    inputs = machine_inputs(lab_file, drivers, recorded)
    lab, problems = _resolve(lab_file, inputs, drivers)
    whole = lab if lab.machines else None
    if machine is not None and not lab.machines:
        raise MachineError(f"--machine {machine}: lab {lab.name} is not across machines (its file has no machines:)")
    if lab.machines and drivers is not None and not problems:
        lab, found = _this_part(lab, lab_file, inputs, drivers, machine or (recorded.lab.machine if recorded else None),
                                strict)
        problems += found
    ctx = features.ValidateContext(lab, lab_file.lines, lab_file.label, inputs.others, drivers)
    problems += features.validate(ctx)
    refused = rootless.problems(lab, lab_file.lines, lab_file.label)  # (they say why better than a feature's)
    problems = [p for p in problems if p.field not in {r.field for r in refused}] + refused
    if drivers is not None:
        problems += _on_this_machine(lab, lab_file, inputs, drivers, recorded)
    parsed = lab_file.parsed
    if parsed is not None:
        problems = parsed.problems + [parsed.relocate(p) for p in problems]
    return Checked(lab, _in_file_order(problems), inputs, whole)


def _this_part(lab: Lab, lab_file: LabFile, inputs: Inputs, drivers: Drivers, machine: str | None, strict: bool
               ) -> tuple[Lab, list[Problem]]:
    """This machine's part (:func:`_part`); not ``strict``: the whole lab on a machine that is none of the lab's."""
    try:
        return _part(lab, lab_file, inputs, drivers, machine)
    except MachineError:
        if strict:
            raise
        return lab, []


def _on_this_machine(lab: Lab, lab_file: LabFile, inputs: Inputs, drivers: Drivers,
                     recorded: state.LabState | None) -> list[Problem]:
    """Names the lab would create that the machine already has, and sysctls it cannot set here."""
    from .collisions import collisions
    from .wiring import sysctl_problems

    return (collisions(lab, drivers, recorded.lab if recorded else None, inputs.others, lab_file.lines,
                       lab_file.label)
            + sysctl_problems(lab, drivers, lab_file.lines, lab_file.label))


def _part(lab: Lab, lab_file: LabFile, inputs: Inputs, drivers: Drivers, machine: str | None
          ) -> tuple[Lab, list[Problem]]:
    """This machine's part of ``lab``, and what this machine finds wrong with it: a subnet of the lab that
    overlaps a route or address of this machine or another lab here (resolving never looked: it must give every
    machine the same lab), an underlay with less MTU than the overlay assumes, a VNI in use here."""
    from ..errors import field_path
    from .overlay import local_machine, part

    here = local_machine(lab, machine, drivers.kernel.machine_addresses())
    found = _overlaps(lab, here, inputs) + _underlay(lab, here, drivers)
    found += [(loc, f"VNI {vni} is already used on machine {here} by {holder}")
              for loc, vni, holder in _vnis_in_use(lab, here, drivers, inputs.others)]
    return part(lab, here), [Problem(text, field_path(loc), lab_file.label, lab_file.lines.line(loc))
                             for loc, text in found]


def _overlaps(lab: Lab, here: str, inputs: Inputs) -> list[tuple[tuple[Any, ...], str]]:
    ranges: list[tuple[tuple[Any, ...], Any]] = [(("networks", n.name), n.subnet) for n in lab.networks.values()]
    ranges += [(("networks", n.name), n.subnet6) for n in lab.networks.values() if n.subnet6]
    ranges += [(("links", i), lk.subnet) for i, lk in enumerate(lab.links)]
    out = []
    for loc, subnet in ranges:
        clash = next((o for o in inputs.occupied if o.network.version == subnet.version
                      and o.network.overlaps(subnet)), None)
        if clash is not None:
            out.append((loc, f"subnet {subnet} overlaps {clash.network} ({clash.owner}) on machine {here}: give a "
                             "subnet"))
    return out


def _underlay(lab: Lab, here: str, drivers: Drivers) -> list[tuple[tuple[Any, ...], str]]:
    """This machine's underlay interface (the one holding its address) with less MTU than the overlay assumes:
    VXLAN packets of the overlay MTU would not fit."""
    address = lab.machines[here].address
    mtu = drivers.kernel.mtu_of_address(address)
    if mtu is None or lab.underlay_mtu is None or mtu >= lab.underlay_mtu:
        return []
    return [(("machines", here), f"machine {here}'s interface holding {address} has MTU {mtu}, less than the "
                                 f"{lab.underlay_mtu} the overlay assumes: write overlay: {{underlay_mtu: {mtu}}}")]


def _foreign_vnis(lab: Lab, drivers: Drivers, others: list[state.LabState]) -> dict[tuple[int, int], str]:
    """(VNI, UDP port) -> what has it on the machine, for everything not of lab ``lab``: the VXLAN devices in the
    machine's namespace, and the other labs' ends of links between machines (made in the machine's namespace,
    then moved into a host's: the kernel still counts them here, its records say which)."""
    from ..naming import parse_owner
    from .overlay import vxlan_name

    ours = {vxlan_name(lab.name, n) for n in lab.networks}  # (one a killed `up` made has no alias yet)
    taken = {}
    for link in drivers.kernel.machine_links():
        owner = parse_owner(link.alias)
        if link.vni and link.name not in ours and (owner is None or owner.lab != lab.name):
            taken[link.vni, link.vxlan_port] = f"VXLAN device {link.name}" + (f" of lab {owner.lab}" if owner else "")
    for other in others:
        for lk in other.lab.links:
            if lk.kind == "vxlan":
                taken[int(dict(lk.options)["vni"]), other.lab.overlay_port] = \
                    f"a link of lab {other.lab.name} ({lk.a}, {lk.b})"
    return taken


def _vnis_in_use(lab: Lab, here: str, drivers: Drivers, others: list[state.LabState]
                 ) -> list[tuple[tuple[Any, ...], int, str]]:
    """The VNIs this machine's part needs that something on the machine not of this lab already has on the lab's
    UDP port (another port does not clash)."""
    taken = _foreign_vnis(lab, drivers, others)
    wanted: list[tuple[tuple[Any, ...], int]] = [(("networks", n.name), n.vni) for n in lab.networks.values()
                                                 if n.vni and here in n.machines]
    wanted += [(("links", i), int(dict(lk.options)["vni"])) for i, lk in enumerate(lab.links)
               if lk.kind == "vxlan" and here in (lab.hosts[lk.a].machine, lab.hosts[lk.b].machine)]
    port = lab.overlay_port
    return [(loc, vni, taken[vni, port]) for loc, vni in wanted if (vni, port) in taken]


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    """Sorted by line (problems without one last), each once."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line is None, p.line or 0))


def problem_error(problems: list[Problem], lab_file: LabFile) -> UserError:
    """The error raising ``problems``: a SpecError when the schema found some, else a ResolveError."""
    return SpecError(problems) if lab_file.parsed is not None and lab_file.parsed.problems else ResolveError(problems)


# --- resolve and keep ----------------------------------------------------------------------------------------
def resolved(lab_file: LabFile, drivers: Drivers | None, recorded: state.LabState | None = None,
             machine: str | None = None) -> Lab:
    """The lab of ``lab_file`` validated against the machine (across machines: this machine's part); every
    problem raised at once (a kept file: :class:`~nslab.errors.StaleKeptForm`, to be read the full way). A file
    read the full way and found right is kept (a lab across machines: its whole lab, for any machine)."""
    checked = validate(lab_file, drivers, recorded, machine)
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
    if checked.whole is not None:  # a lab across machines: the whole lab, resolved from the file alone
        kept.store(lab_file.text, lab_file.path, lab_file.name, lab_file.lines, False, checked.whole, [ACROSS])
        return
    inputs = [checked.inputs.digest()]
    if checked.inputs.previous is None:
        inputs.append(checked.inputs.digest(checked.lab.allocations()))
    kept.store(lab_file.text, lab_file.path, lab_file.name, lab_file.lines, lab_file.wants_ula(), checked.lab,
               inputs)
