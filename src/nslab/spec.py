"""The lab file as the user wrote it: its schema, YAML loading, and problems located by file:line.

This module owns the format of a lab file:

- the raw pydantic models (:class:`LabSpec` and its parts) with the checks that need no other part of the
  file; they accept the short forms (a host's networks as a list of names, a link as a pair of hosts, an
  empty entry, ``restart: no`` that YAML reads as false) and store the long form;
- the name patterns :data:`LAB_NAME` (checked here) and :data:`OBJECT_NAME` (checked by :mod:`nslab.resolve`,
  with the references between networks, hosts and links);
- locating a problem: :class:`SourceMap` (field path -> line of its YAML node) and :func:`field_path`
  (``hosts.web1.publish[0]``), which the later stages use for their own problems too.

It knows nothing about the kernel or about other labs: :mod:`nslab.resolve` turns a :class:`LabSpec` into
concrete names and addresses.

A YAML syntax error, or a document that is not a mapping, is reported alone; past that every schema problem
is reported at once: pydantic collects them all, and each is located with the line of the YAML node it
concerns.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import Problem, SpecError

#: libyaml's parser when PyYAML was built with it (~10x faster on a 1000-host file); its nodes carry the same
#: line marks.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,11}$")
OBJECT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkSpec(_Strict):
    """A bridge on the machine that hosts attach to."""

    subnet: ipaddress.IPv4Network | None = None
    internal: bool = False

    @field_validator("subnet", mode="before")
    @classmethod
    def _strict_subnet(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return ipaddress.IPv4Network(value, strict=True)
            except ValueError as exc:
                raise ValueError(f"not an IPv4 subnet ({exc})") from None
        return value

    @field_validator("subnet")
    @classmethod
    def _room_for_hosts(cls, value: ipaddress.IPv4Network | None) -> ipaddress.IPv4Network | None:
        if value is not None and value.prefixlen > 30:
            raise ValueError("a network needs at least a /30 (gateway + one host)")
        return value


RestartPolicy = Literal["no", "on-failure", "always"]


# --- impairments and partitions (features/impair.py, features/partitions.py) -----------------------------
_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z%]*)\s*$")


def _number_with_unit(value: Any, units: dict[str, float], default: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{what}: a number with a unit ({', '.join(units)})")
    if not isinstance(value, str):
        return float(value) * units[default]
    match = _NUMBER.match(value.lower())
    if not match or (match.group(2) or default) not in units:
        raise ValueError(f"{what}: '{value}' is not a number with a unit ({', '.join(units)})")
    return float(match.group(1)) * units[match.group(2) or default]


class ImpairSpec(_Strict):
    """What one host interface suffers: ``{loss: 5%, rate: 10mbit, delay: 20ms, jitter: 5ms, direction: out}``.

    Stored normalised: loss in percent, rate in bit/s, delay and jitter in milliseconds (0 = none). The default
    direction is ``out`` (what the host sends, as netem impairs an interface's egress); delay and jitter apply to
    each impaired direction (``both``: a round trip gets the delay twice)."""

    loss: float = 0.0
    rate: int = 0
    delay: float = 0.0
    jitter: float = 0.0
    direction: Literal["both", "in", "out"] = "out"

    @field_validator("loss", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> Any:
        loss = _number_with_unit(value, {"%": 1.0}, "%", "loss")
        if not 0 <= loss <= 100:
            raise ValueError("loss is a percentage between 0% and 100%")
        return loss

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        rate = int(_number_with_unit(value, _RATE_UNITS, "bit", "rate"))
        if rate and rate < 8000:
            raise ValueError("rate: at least 8kbit")
        return rate

    @field_validator("delay", "jitter", mode="before")
    @classmethod
    def _milliseconds(cls, value: Any) -> Any:
        ms = _number_with_unit(value, _TIME_UNITS, "ms", "delay and jitter")
        if ms > 60_000:
            raise ValueError("at most 60s")
        return ms

    def active(self) -> bool:
        return bool(self.loss or self.rate or self.delay or self.jitter)


class HostSpec(_Strict):
    """A named network namespace with interfaces on networks and links."""

    # Written as a list of names or a map name -> fixed address; stored as the map, in file order.
    networks: dict[str, ipaddress.IPv4Address | None] = Field(default_factory=dict)
    publish: list[str] = Field(default_factory=list)
    hostname: str | None = None
    dns: list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None = None
    dns_search: list[str] | None = None
    run: str | list[str] = Field(default_factory=list)
    restart: RestartPolicy = "on-failure"
    impair: dict[str, ImpairSpec] = Field(default_factory=dict)  # interface -> impairment

    @field_validator("networks", mode="before")
    @classmethod
    def _list_is_map(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ValueError("a list of network names, or a map name -> address")
            if len(set(value)) != len(value):
                raise ValueError("a network is listed twice")
            return {name: None for name in value}
        return value

    @field_validator("restart", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        return "no" if value is False else value  # YAML 1.1 reads a bare `restart: no` as false

    def commands(self) -> list[str]:
        return [self.run] if isinstance(self.run, str) else list(self.run)


class LinkSpec(_Strict):
    """A point-to-point veth between two hosts."""

    endpoints: tuple[str, str]
    subnet: ipaddress.IPv4Network | None = None

    @field_validator("subnet")
    @classmethod
    def _two_addresses(cls, value: ipaddress.IPv4Network | None) -> ipaddress.IPv4Network | None:
        if value is not None and value.num_addresses < 2:
            raise ValueError("a link subnet needs two addresses (/31 or larger)")
        return value


class LabSpec(_Strict):
    """The whole lab file."""

    name: str
    networks: dict[str, NetworkSpec] = Field(default_factory=dict)
    hosts: dict[str, HostSpec] = Field(default_factory=dict)
    links: list[LinkSpec] = Field(default_factory=list)
    dns: list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None = None
    dns_search: list[str] | None = None
    partitions: list[tuple[str, str]] = Field(default_factory=list)  # hosts or networks cut from each other

    @field_validator("name")
    @classmethod
    def _lab_name(cls, value: str) -> str:
        if not LAB_NAME.fullmatch(value):
            raise ValueError(
                "lab name must match [a-z][a-z0-9-]{0,11} (it prefixes namespace and interface names)"
            )
        return value

    @field_validator("networks", "hosts", mode="before")
    @classmethod
    def _none_is_empty_map(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("links", mode="before")
    @classmethod
    def _pair_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"endpoints": v} if isinstance(v, (list, tuple)) else v for v in value]
        return value


class SourceMap:
    """Maps a field path (tuple of keys and indexes) to the line it was written on."""

    def __init__(self, lines: dict[tuple[Any, ...], int] | None = None):
        self._lines = lines or {}

    def line(self, path: tuple[Any, ...]) -> int | None:
        # Walk up until some ancestor has a line: a missing field is reported at its parent.
        while True:
            if path in self._lines:
                return self._lines[path]
            if not path:
                return None
            path = path[:-1]

    @classmethod
    def from_node(cls, node: yaml.Node | None) -> SourceMap:
        lines: dict[tuple[Any, ...], int] = {}

        def walk(n: yaml.Node, path: tuple[Any, ...]) -> None:
            lines.setdefault(path, n.start_mark.line + 1)
            if isinstance(n, yaml.MappingNode):
                for key, value in n.value:
                    child = path + (key.value,)
                    lines[child] = key.start_mark.line + 1
                    walk(value, child)
            elif isinstance(n, yaml.SequenceNode):
                for i, item in enumerate(n.value):
                    lines[path + (i,)] = item.start_mark.line + 1
                    walk(item, path + (i,))

        if node is not None:
            walk(node, ())
        return cls(lines)


def field_path(loc: tuple[Any, ...]) -> str:
    """``('hosts', 'web1', 'publish', 0)`` -> ``hosts.web1.publish[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# pydantic reports which branch of a union failed; users only need the data path.
_UNION_BRANCHES = {"str", "IPv4Address", "IPv6Address", "LinkSpec"}


def _data_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p for p in loc if not (isinstance(p, str) and (p in _UNION_BRANCHES or "[" in p)))


def _problems_from_validation(exc: ValidationError, source: SourceMap, file: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors():
        loc = _data_loc(tuple(err["loc"]))
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = f"unknown key '{loc[-1]}'"
        message = message.removeprefix("Value error, ")
        if "publish" in loc and isinstance(err.get("input"), int | float) and not isinstance(err["input"], bool):
            # YAML 1.1 reads 2222:22 as a base-60 number (133342): the mapping never reached us as text
            number = err["input"]
            message = f'put port mappings in quotes ("2222:22"): unquoted, YAML read this one as the number {number}'
        key = (field_path(loc), message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(message, field_path(loc), file, source.line(loc)))
    return problems


def parse(text: str, file: str = "<string>") -> tuple[LabSpec, SourceMap]:
    """Parse lab-file text; raise :class:`SpecError` with every problem found."""
    loader = _LOADER(text)  # parsed once: the node tree gives the lines, the same tree the data
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError([Problem(f"invalid YAML: {reason}", "", file, line)]) from None
    finally:
        loader.dispose()
    source = SourceMap.from_node(node)
    if not isinstance(data, dict):
        raise SpecError([Problem("a lab file is a mapping with at least 'name:'", "", file, 1)])
    try:
        return LabSpec.model_validate(data), source
    except ValidationError as exc:
        raise SpecError(_problems_from_validation(exc, source, file)) from None


def load(path: str | Path) -> tuple[LabSpec, SourceMap]:
    """Read and parse a lab file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError([Problem(f"cannot read lab file: {exc.strerror}", "", str(path))]) from None
    return parse(text, str(path))
