"""Which lab a command means (core/which.py): LAB, -f FILE's lab, the lab file here, the only lab up, else one
line listing the labs up; and the words every command uses for a lab that is not up."""

from __future__ import annotations

from pathlib import Path

import pytest

from nslab.core.which import lab_file_here, not_up, which_lab
from nslab.errors import UserError


@pytest.fixture
def up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``up("a", "b")``: labs a and b are up (a state file each; nothing else is read to name them)."""
    root = tmp_path / "state"
    monkeypatch.setenv("NSLAB_STATE_DIR", str(root))

    def make(*names: str) -> None:
        for name in names:
            (root / name).mkdir(parents=True)
            (root / name / "state.json").write_text("{}")

    return make


@pytest.fixture
def here(tmp_path: Path) -> Path:
    folder = tmp_path / "here"
    folder.mkdir()
    return folder


def _lab_file(path: Path, name: str) -> str:
    path.write_text(f"name: {name}\nhosts: {{a: {{}}}}\n")
    return str(path)


def test_lab_argument_first(up, here):
    up("one")
    _lab_file(here / "nslab.yaml", "infile")
    assert which_lab("given", None, str(here)) == "given"


def test_file_option_then_lab_file_here(up, here, tmp_path):
    up("one")
    other = _lab_file(tmp_path / "other.yaml", "other")
    _lab_file(here / "nslab.yaml", "infile")
    assert which_lab(None, other, str(here)) == "other"
    assert which_lab(None, None, str(here)) == "infile"


@pytest.mark.parametrize("names", [["nslab.yml", "x.nslab.yaml"], ["x.nslab.yaml"]])
def test_lab_file_here_in_its_order(here, names):
    for name in names:
        _lab_file(here / name, name.split(".")[0].replace("nslab", "yml"))
    assert lab_file_here(str(here)) == str(here / names[0])


def test_several_lab_files_here_are_named(here):
    _lab_file(here / "a.nslab.yaml", "a")
    _lab_file(here / "b.nslab.yaml", "b")
    with pytest.raises(UserError, match=r"several lab files here \(a.nslab.yaml, b.nslab.yaml\)"):
        which_lab(None, None, str(here))


def test_only_lab_up(up, here):
    up("solo")
    assert which_lab(None, None, str(here)) == "solo"


@pytest.mark.parametrize(("labs", "listed"), [((), "none"), (("a", "b"), "a, b")])
def test_none_found_lists_the_labs_up(up, here, labs, listed):
    up(*labs)
    with pytest.raises(UserError) as err:
        which_lab(None, None, str(here))
    assert str(err.value) == f"which lab? give LAB or -f FILE (no lab file here; labs up: {listed})"
    assert err.value.exit_code == 2


def test_lab_and_file_together_refused(up):
    with pytest.raises(UserError, match="either LAB or -f FILE"):
        which_lab("a", "b.yaml")


def test_missing_file_named(up, here):
    with pytest.raises(UserError, match="no lab file nope.yaml"):
        which_lab(None, "nope.yaml", str(here))


def test_not_up_in_the_same_words(up):
    up("demo")
    assert str(not_up("nosuchlab")) == "no lab 'nosuchlab' is up (labs up: demo)"
    assert not_up("x").exit_code == 2


def test_the_pytest_plugin_reports_a_missing_lab_file_in_one_line(tmp_path):
    from nslab.pytest_plugin import LabFactory

    with pytest.raises(pytest.fail.Exception) as err:
        LabFactory(tmp_path)("nope.yaml")
    where = tmp_path / "nope.yaml"
    assert str(err.value) == f"nslab: no lab file {where} (a relative path is taken from the test's folder)"
