"""Value classes without the import cost of ``@dataclass``: fields declared as annotations, dataclass style.

``@dataclass`` generates each class's methods with ``exec`` when the class is created: ~0.5 ms per class here,
and ``nslab up`` creates ~40 (actions, records, planning contexts) before it does anything — a tenth of a
small lab's whole ``up``. :class:`Value` gives the same declarations (``name: T``, ``name: T = default``,
``name: T = field(default_factory=list)``) one generic ``__init__`` (positional or by name), ``__repr__``,
``__eq__`` and ``__hash__`` by field values, computed once per class from its annotations.
Type checkers treat subclasses as dataclasses (PEP 681 ``dataclass_transform``). Instances are treated as
immutable by convention; nothing enforces it. tests/unit/test_values.py checks it against ``dataclasses``.
"""

from __future__ import annotations

from dataclasses import Field, field
from typing import Any, ClassVar, dataclass_transform

__all__ = ["Value", "field"]


@dataclass_transform(field_specifiers=(field,))
class Value:
    _fields: ClassVar[tuple[str, ...]] = ()
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
            return default.default_factory() if callable(default.default_factory) else default.default
        return default

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({values})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))
