"""Value classes without the import cost of ``@dataclass``: fields declared as annotations, dataclass style.

``@dataclass`` generates each class's methods with ``exec`` when the class is created: ~0.5 ms per class here,
and ``nslab up`` creates ~50 (the model, actions, records, planning contexts) before it does anything; and
importing ``dataclasses`` itself brings ``inspect`` (with ``ast``, ``dis``, ``enum``): ~14 ms more. Together a
fifth of a small lab's whole ``up``. :class:`Value` gives the same declarations (``name: T``, ``name: T =
default``, ``name: T = field(default_factory=list)``, ``field(compare=False)``, ``field(repr=False)``) one
generic ``__init__`` (positional or by name), ``__repr__``, ``__eq__`` and ``__hash__`` by field values,
computed once per class from its annotations, and :func:`replace` as ``dataclasses.replace``.
Type checkers treat subclasses as dataclasses (PEP 681 ``dataclass_transform``). Instances are treated as
immutable by convention; nothing enforces it. tests/unit/test_values.py checks it against ``dataclasses``.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar, dataclass_transform

__all__ = ["Field", "Value", "field", "replace"]

_MISSING: Any = object()
V = TypeVar("V", bound="Value")


class Field:
    """What :func:`field` declares (``dataclasses.Field``'s options nslab uses)."""

    __slots__ = ("compare", "default", "default_factory", "repr")

    def __init__(self, default: Any, default_factory: Any, compare: bool, repr: bool) -> None:
        self.default, self.default_factory, self.compare, self.repr = default, default_factory, compare, repr


def field(*, default: Any = _MISSING, default_factory: Any = None, compare: bool = True, repr: bool = True) -> Any:
    """As ``dataclasses.field``: a default or a factory of defaults, and whether the field counts in ``==`` and
    ``hash`` (``compare``) and shows in ``repr``."""
    return Field(default, default_factory, compare, repr)


def replace(value: V, **changes: Any) -> V:
    """As ``dataclasses.replace``: a copy of ``value`` with ``changes``."""
    fields = {name: getattr(value, name) for name in value._fields}
    fields.update(changes)
    return type(value)(**fields)


@dataclass_transform(field_specifiers=(field,))
class Value:
    _fields: ClassVar[tuple[str, ...]] = ()
    _compared: ClassVar[tuple[str, ...]] = ()  # the fields == and hash() look at
    _shown: ClassVar[tuple[str, ...]] = ()  # the fields repr() shows
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls) -> None:
        names: list[str] = []
        defaults: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            annotations = vars(klass).get("__annotations__", {})
            for name, annotation in annotations.items():
                if name.startswith("_") or "ClassVar" in str(annotation):
                    continue
                if name not in names:
                    names.append(name)
                if name in vars(klass):
                    defaults[name] = vars(klass)[name]
        cls._fields, cls._defaults = tuple(names), defaults
        options = {name: d for name, d in defaults.items() if isinstance(d, Field)}
        cls._compared = tuple(n for n in names if n not in options or options[n].compare)
        cls._shown = tuple(n for n in names if n not in options or options[n].repr)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__} takes {len(self._fields)} fields, {len(args)} given")
        values = dict(zip(self._fields, args, strict=False))
        for name, value in kwargs.items():
            if name not in self._fields or name in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated field {name!r}")
            values[name] = value
        for name in self._fields:
            object.__setattr__(self, name, values[name] if name in values else self._default(name))

    @classmethod
    def _default(cls, name: str) -> Any:
        if name not in cls._defaults:
            raise TypeError(f"{cls.__name__}: missing field {name!r}")
        default = cls._defaults[name]
        if isinstance(default, Field):
            if callable(default.default_factory):
                return default.default_factory()
            if default.default is _MISSING:
                raise TypeError(f"{cls.__name__}: missing field {name!r}")
            return default.default
        return default

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._compared)

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._shown)
        return f"{type(self).__name__}({values})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))
