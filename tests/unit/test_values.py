"""nslab.values.Value behaves like the ``@dataclass`` it replaces (init, defaults, factories, repr, eq, hash)."""

from __future__ import annotations

import dataclasses

import pytest

from nslab.values import Value, field, replace


class Point(Value):
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


@dataclasses.dataclass
class DataPoint:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)


class Point3(Point):
    z: int = 9


@dataclasses.dataclass
class DataPoint3(DataPoint):
    z: int = 9


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1,), {}), ((1, 2), {}), ((), {"x": 1, "y": 2}), ((1,), {"tags": ["a"]}), ((1, 2, ["b"]), {})],
)
def test_construction_matches_dataclasses(args, kwargs):
    ours, theirs = Point(*args, **kwargs), DataPoint(*args, **kwargs)
    assert (ours.x, ours.y, ours.tags) == (theirs.x, theirs.y, theirs.tags)
    assert repr(ours) == repr(theirs).replace("DataPoint", "Point")


def test_inherited_fields_come_first_as_in_dataclasses():
    assert Point3._fields == tuple(f.name for f in dataclasses.fields(DataPoint3)) == ("x", "y", "tags", "z")
    assert repr(Point3(1, z=3)) == "Point3(x=1, y=0, tags=[], z=3)"


def test_factories_make_a_fresh_value_each_time():
    assert Point(1).tags is not Point(1).tags


def test_eq_and_hash_by_value_and_type():
    assert Point(1, 2) == Point(1, 2) and Point(1, 2) != Point(1, 3) and Point(1) != Point3(1)
    assert hash(Point(1, 2, ())) == hash(Point(1, 2, ()))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [((), {}, "missing field 'x'"), ((1, 2, [], 4), {}, "takes 3 fields, 4 given"),
     ((1,), {"x": 2}, "unexpected or repeated field 'x'"), ((1,), {"w": 2}, "unexpected or repeated field 'w'")],
)
def test_bad_construction_is_a_type_error_like_dataclasses(args, kwargs, message):
    with pytest.raises(TypeError, match=message):
        Point(*args, **kwargs)
    with pytest.raises(TypeError):
        DataPoint(*args, **kwargs)


class Tagged(Value):
    name: str
    note: str = field(default="", compare=False)
    secret: str = field(default="", repr=False)


@dataclasses.dataclass(frozen=True)
class DataTagged:
    name: str
    note: str = dataclasses.field(default="", compare=False)
    secret: str = dataclasses.field(default="", repr=False)


def test_compare_and_repr_options_match_dataclasses():
    a, b = Tagged("x", note="one", secret="s"), Tagged("x", note="two", secret="s")
    da, db = DataTagged("x", note="one", secret="s"), DataTagged("x", note="two", secret="s")
    assert (a == b) == (da == db) is True and (hash(a) == hash(b)) == (hash(da) == hash(db)) is True
    ours = Tagged("x", secret="a") == Tagged("x", secret="b")
    assert ours == (DataTagged("x", secret="a") == DataTagged("x", secret="b")) is False
    assert repr(a) == repr(da).replace("DataTagged", "Tagged")


def test_replace_matches_dataclasses():
    ours = replace(Point3(1, 2, ["t"], 3), y=5)
    theirs = dataclasses.replace(DataPoint3(1, 2, ["t"], 3), y=5)
    assert repr(ours) == repr(theirs).replace("DataPoint3", "Point3")


def test_a_field_without_default_is_required():
    class Needs(Value):
        must: int = field(compare=False)

    with pytest.raises(TypeError):
        Needs()
    assert Needs(1).must == 1
