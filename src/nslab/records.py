"""Records from the types: the JSON form of any :class:`~nslab.values.Value`, derived from its annotations.

``encode(value)`` gives what ``json.dumps`` takes; ``decode(cls, data)`` gives the value back, so that
``decode(type(v), encode(v)) == v``. What a field holds is read from its annotation (strings, under
``from __future__ import annotations``: evaluated once per class in its module's globals, so the names an
annotation uses must be imported at run time there, not only under ``TYPE_CHECKING``). Understood:

- ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any`` (taken as it is: it must be JSON already);
- ``X | Y``: ``None`` as null, else the first member that reads the data (members are tried in order, so a
  union may hold at most one member read from a JSON object: nothing in the record tells two apart);
- ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]`` as arrays; ``Mapping[str, X]``, ``dict[str, X]`` as objects;
- ``Literal[...]`` (the value must be one of them);
- ``ipaddress``'s networks, addresses and interfaces, as their text (``10.0.0.1/24``);
- nested :class:`Value` classes, as objects with one key per field.

A field that holds its default (that very object: None, ``()``, ``True``) is left out, and a key that is absent
reads as the field's default: records stay short, and a record written before a field existed still reads. So a
default is part of the record's format, as a key's meaning is: changing either takes a new format number (the
state file's is in ``core/state.py``). A field without a default must be there. Keys the class does not have are
ignored: a record written by a later release of the same format still reads as far as it goes (an older
``down`` can still find what to remove). A value of the wrong type raises ``TypeError`` or ``ValueError`` naming
the class and the field.

Encoding and decoding run a converter per field, made once per class on first use (~0.4 ms for the model; a
300-host lab's record is read by every ``status``, and reading it costs less than the hand-written code it
replaced: decoded values are made without ``__init__``, as pickle does, and an interface's address is parsed
once). stdlib only; no ``dataclasses`` and no ``typing.get_type_hints`` (see values.py and :func:`_annotations`).
"""

from __future__ import annotations

import ipaddress
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .values import Field, Value

__all__ = ["decode", "encode"]

V = TypeVar("V", bound=Value)
Convert = Callable[[Any], Any]
_IP_TYPES = (ipaddress.IPv4Network, ipaddress.IPv6Network, ipaddress.IPv4Address, ipaddress.IPv6Address,
             ipaddress.IPv4Interface, ipaddress.IPv6Interface)
_PLAIN: dict[Any, tuple[type, ...]] = {str: (str,), int: (int,), float: (int, float), bool: (bool,)}
_NONE = type(None)


class _Plan:
    """How one Value class is written and read: its recorded fields, each with a converter (None: as it is) and,
    for JSON's own types, the exact types its record may have (checked inline: most fields are such)."""

    __slots__ = ("cls", "decoders", "encoders")

    def __init__(self, cls: type[Value]) -> None:
        self.cls = cls
        hints = _annotations(cls)
        self.encoders: list[tuple[str, Convert | None, Any]] = []  # (name, converter, default)
        self.decoders: list[tuple[str, Convert | None, tuple[type, ...] | None]] = []
        for name in cls._fields:
            try:
                encoder, decoder, exact = _field(hints[name])
            except TypeError as exc:
                raise TypeError(f"{cls.__name__}.{name}: {exc}") from None
            option = cls._defaults.get(name)
            default = option.default if isinstance(option, Field) else option if name in cls._defaults else _ABSENT
            self.encoders.append((name, encoder, default))  # (a factory's field: its Field.default, never a value)
            self.decoders.append((name, decoder, exact))

    def encode(self, value: Value) -> dict[str, Any]:
        """A field that holds its default itself (``is``: None, ``()``, ``True``...) is left out; None is
        written as null whatever the field's type: the encoder of a field ``X | None`` is X's (one call fewer
        per optional field)."""
        fields = value.__dict__
        record = {}
        for name, enc, default in self.encoders:
            v = fields[name]
            if v is not default:
                record[name] = v if v is None or enc is None else enc(v)
        return record

    def decode(self, data: Any) -> Value:
        """Absent keys take the class's default (TypeError for a field without one). The value is made without
        calling ``__init__``, as pickle does: Value's generic one only checks what is checked here already."""
        cls = self.cls
        if type(data) is not dict:
            raise TypeError(f"{cls.__name__}: an object expected, not {type(data).__name__}")
        fields: dict[str, Any] = {}
        for name, dec, exact in self.decoders:
            raw = data.get(name, _ABSENT)
            if raw is _ABSENT:
                fields[name] = cls._default(name)
            elif exact is not None:
                if type(raw) not in exact:
                    raise TypeError(f"{cls.__name__}.{name}: {' or '.join(t.__name__ for t in exact)} expected, "
                                    f"not {raw!r}")
                fields[name] = raw
            else:
                try:
                    fields[name] = raw if dec is None else dec(raw)
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"{cls.__name__}.{name}: {exc}") from None
        value = object.__new__(cls)
        value.__dict__.update(fields)
        return value


_ABSENT: Any = object()


def _annotations(cls: type[Value]) -> dict[str, Any]:
    """Each field's annotation, evaluated in the globals of the module that declares it. (Not
    ``typing.get_type_hints``: it also evaluates every base's private and ClassVar annotations, through
    ForwardRef: 4x as long, and ``status`` pays it on every run. A plain name is looked up, not evaluated.)"""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        scope = vars(sys.modules[klass.__module__])
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            if name not in cls._fields:
                continue
            if not isinstance(annotation, str):
                hints[name] = annotation
            elif annotation in scope or annotation in _BUILTINS:
                hints[name] = scope.get(annotation) or _BUILTINS[annotation]
            else:
                key = (klass.__module__, annotation)  # many fields share one ("str | None"): compile each once
                if key not in _evaluated:
                    _evaluated[key] = eval(annotation, scope)
                hints[name] = _evaluated[key]
    return hints


_plans: dict[type, _Plan] = {}
_BUILTINS = {"str": str, "int": int, "float": float, "bool": bool}
_evaluated: dict[tuple[str, str], Any] = {}


def _plan(cls: type[Value]) -> _Plan:
    plan = _plans.get(cls)
    if plan is None:
        plan = _plans[cls] = _Plan(cls)
    return plan


def encode(value: Value) -> dict[str, Any]:
    """``value`` as JSON (dicts, lists, strings, numbers, booleans, null)."""
    return _plan(type(value)).encode(value)


def decode(cls: type[V], data: Any) -> V:
    """The ``cls`` that :func:`encode` wrote as ``data``."""
    return typing.cast(V, _plan(cls).decode(data))


_fields: dict[Any, tuple[Convert | None, Convert | None, tuple[type, ...] | None]] = {}


def _field(hint: Any) -> tuple[Convert | None, Convert | None, tuple[type, ...] | None]:
    """A field's (encoder, decoder, exact types), made once per annotation (many fields share one)."""
    made = _fields.get(hint)
    if made is None:
        exact = _exact(hint)
        inner = _optional(hint)  # X of `X | None`: None is written by _Plan.encode and read by _or_none
        encoder, decoder = _converters(inner) if exact is None else (None, None)
        if inner is not hint and decoder is not None:
            decoder = _or_none(decoder)
        made = _fields[hint] = (encoder, decoder, exact)
    return made


def _converters(hint: Any) -> tuple[Convert | None, Convert | None]:
    """(encoder, decoder) of one annotation; None where the JSON value is the value."""
    if hint is Any:
        return None, None
    exact = _exact(hint)
    if exact is not None:
        return None, _checked(exact)
    if hint in _IP_TYPES:
        return str, _ip(hint)
    if isinstance(hint, type) and issubclass(hint, Value):
        plan = _plan(hint)  # (a class that holds itself would recurse: none does)
        return plan.encode, plan.decode
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return _union(args)
    if origin is typing.Literal:
        return None, _literal(args)
    if origin in (tuple, list):
        return _sequence(origin, args)
    if origin in (dict, Mapping):
        return _mapping(args)
    raise TypeError(f"no record for {hint!r}")


def _exact(hint: Any) -> tuple[type, ...] | None:
    """The types JSON gives a field of JSON's own type (``str``, ``int | None``...) as; None for the rest.
    Exact types: ``True`` is no ``int`` here. An ``int`` is a ``float`` (JSON writes ``1.0`` as it is)."""
    if hint in _PLAIN:
        return _PLAIN[hint]
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        members = [_PLAIN.get(m, (_NONE,) if m is _NONE else None) for m in typing.get_args(hint)]
        if all(m is not None for m in members):
            return tuple(t for m in members if m is not None for t in m)
    return None


def _checked(exact: tuple[type, ...]) -> Convert:
    def read(data: Any) -> Any:
        if type(data) not in exact:
            raise TypeError(f"{' or '.join(t.__name__ for t in exact)} expected, not {data!r}")
        return data

    return read


def _ip(cls: type) -> Convert:
    """``ipaddress``'s parser; an interface's address is parsed once (its constructor, given text, parses the
    address a second time for its network: 40 % of reading a dual-stack lab's record)."""
    address = {ipaddress.IPv4Interface: ipaddress.IPv4Address, ipaddress.IPv6Interface: ipaddress.IPv6Address}

    def read(data: Any) -> Any:
        if type(data) is not str:
            raise TypeError(f"{cls.__name__} expected, not {data!r}")
        return cls(data)

    if cls not in address:
        return read
    parse = address[cls]

    def read_interface(data: Any) -> Any:
        if type(data) is not str:
            raise TypeError(f"{cls.__name__} expected, not {data!r}")
        text, slash, prefix = data.partition("/")
        if not slash or not prefix.isdigit():
            return cls(data)
        return cls((int(parse(text)), int(prefix)))

    return read_interface


def _union(members: tuple[Any, ...]) -> tuple[Convert | None, Convert | None]:
    optional = type(None) in members
    converters = [_converters(m) for m in members if m is not type(None)]
    if len(converters) == 1:
        encoder, decoder = converters[0]
        return (_or_none(encoder) if encoder is not None else None), (_or_none(decoder) if decoder is not None
                                                                      else None)
    objects = [m for m in members if isinstance(m, type) and issubclass(m, Value) or typing.get_origin(m) in
               (dict, Mapping)]
    if len(objects) > 1:
        raise TypeError(f"{len(objects)} members of a union are JSON objects: nothing tells them apart")
    return _first_of(members, converters, optional)


def _optional(hint: Any) -> Any:
    """X of ``X | None``; any other hint as it is."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        members = [m for m in typing.get_args(hint) if m is not _NONE]
        if len(members) == 1:
            return members[0]
    return hint


def _or_none(convert: Convert) -> Convert:
    def either(data: Any) -> Any:
        return None if data is None else convert(data)

    return either


def _first_of(members: tuple[Any, ...], converters: list[tuple[Convert | None, Convert | None]], optional: bool
              ) -> tuple[Convert | None, Convert | None]:
    """A union of several: written by the member the value is an instance of, read by the first that can."""
    kinds = [typing.get_origin(m) or m for m in members if m is not type(None)]

    def write(value: Any) -> Any:
        if value is None:
            return None
        for kind, (encoder, _) in zip(kinds, converters, strict=True):
            if kind is Any or isinstance(value, kind):
                return value if encoder is None else encoder(value)
        raise TypeError(f"{value!r} is none of {members}")

    def read(data: Any) -> Any:
        if data is None and optional:
            return None
        for _, decoder in converters:
            try:
                return data if decoder is None else decoder(data)
            except (TypeError, ValueError):
                continue
        raise ValueError(f"{data!r} reads as none of {members}")

    return write, read


def _literal(allowed: tuple[Any, ...]) -> Convert:
    def read(data: Any) -> Any:
        if data not in allowed:
            raise ValueError(f"one of {allowed} expected, not {data!r}")
        return data

    return read


def _sequence(origin: type, args: tuple[Any, ...]) -> tuple[Convert | None, Convert]:
    """``tuple[X, ...]`` and ``list[X]`` (any length), ``tuple[X, Y]`` (exactly these), as JSON arrays."""
    if origin is list or len(args) == 2 and args[1] is Ellipsis:
        encoder, decoder = _converters(args[0])

        def write_all(value: Any) -> list[Any]:
            return list(value) if encoder is None or not value else [encoder(v) for v in value]

        def read_all(data: Any) -> Any:
            if type(data) is not list:
                raise TypeError(f"an array expected, not {data!r}")
            return origin(data if decoder is None else map(decoder, data))

        return write_all, read_all
    each = [_converters(a) for a in args]

    def write(value: Any) -> list[Any]:
        return [v if enc is None else enc(v) for (enc, _), v in zip(each, value, strict=True)]

    def read(data: Any) -> tuple[Any, ...]:
        if type(data) is not list or len(data) != len(each):
            raise TypeError(f"an array of {len(each)} expected, not {data!r}")
        return tuple(d if dec is None else dec(d) for (_, dec), d in zip(each, data, strict=True))

    return write, read


def _mapping(args: tuple[Any, ...]) -> tuple[Convert, Convert]:
    """``Mapping[str, X]`` / ``dict[str, X]`` as a JSON object, read back as a dict."""
    if args[0] is not str:
        raise TypeError("JSON objects have text keys: Mapping[str, ...] only")
    encoder, decoder = _converters(args[1])

    def write(value: Any) -> dict[str, Any]:
        return dict(value) if encoder is None else {k: encoder(v) for k, v in value.items()}

    def read(data: Any) -> dict[str, Any]:
        if type(data) is not dict:
            raise TypeError(f"an object expected, not {data!r}")
        return dict(data) if decoder is None else {k: decoder(v) for k, v in data.items()}

    return write, read
