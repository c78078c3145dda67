"""The CLI fast path only takes the forms it fully understands; everything else is left to click untouched."""

from __future__ import annotations

import os

import pytest

from nslab import paths
from nslab.cli import fast, fast_exec, fast_form


@pytest.fixture(autouse=True)
def empty_state(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path / "state"))


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["exec"],
        ["exec", "web1"],
        ["exec", "web1", "--"],  # no command: click reports it
        ["exec", "--uts", "web1", "true"],
        ["exec", "web1", "--uts", "true"],  # an option after TARGET
        ["exec", "web1", "-e", "A=1", "--", "true"],
        ["exec", "pid:1", "true"],  # other target kinds go through click
        ["exec", "container:app", "true"],
        ["exec", "netns:", "true"],
        ["exec", "netns:../x", "true"],
        ["exec", "a/b/c", "true"],
        ["exec", "web1", "true"],  # no lab is up: click explains
        ["exec", "demo/web1", "--", "true"],
        ["down"],
        ["down", "-f", "nslab.yaml"],
        ["down", "--help"],
        ["down", "a", "b"],
        ["up", "--dry-run"],
        ["up", "-o", "json"],
        ["up", "-f", "-"],  # standard input
        ["up", "-f"],
        ["up", "-f", "a.yaml", "-f", "b.yaml"],
        ["up", "extra"],
        ["up", "--help"],
        ["status", "-q"],
        ["status", "--json", "--wide"],
        ["status", "-f", "nslab.yaml"],
        ["status", "a", "b"],
        ["status", "--help"],
    ],
)
def test_forms_left_to_click(argv):
    assert fast_form(argv) is None


def test_plain_status_forms_are_run_here(capsys):
    assert fast.run_fast(["status", "--json"]) == 0
    assert capsys.readouterr().out == '{\n  "version": 1,\n  "labs": []\n}\n'
    assert fast.run_fast(["status", "demo"]) == 2  # no such lab: the error, as click would print it
    assert capsys.readouterr().err == "nslab: no lab 'demo' is up (labs up: none)\n"


def test_plain_up_is_run_here(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("nslab.linux.require_root", lambda why: None)
    assert fast.run_fast(["up", "-q"]) == 2
    assert "no lab file here" in capsys.readouterr().err
    assert fast.run_fast(["up", "--file=missing.yaml"]) == 2
    assert capsys.readouterr().err == "nslab: no lab file missing.yaml\n"


def test_lab_host_found_by_its_kept_uts_namespace(tmp_path, monkeypatch):
    """A lab host is recognized only when exactly one lab keeps its UTS namespace and its netns exists."""
    netns = tmp_path / "netns"
    netns.mkdir()
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: real_exists(p.replace("/run/netns", str(netns), 1)))
    state = tmp_path / "state"
    for lab in ("one", "two"):
        (state / lab / "uts").mkdir(parents=True)
        (state / lab / "state.json").write_text("{}")
    (state / "one" / "uts" / "web").touch()
    assert fast_exec._lab_host("web") is None  # no namespace file
    (netns / "one-web").touch()
    assert fast_exec._lab_host("web") == ("one-web", os.path.join(str(state), "one", "uts", "web"))
    assert fast_exec._lab_host("one/web") == fast_exec._lab_host("web")
    assert fast_exec._lab_host("two/web") is None
    (state / "two" / "uts" / "web").touch()
    (netns / "two-web").touch()
    assert fast_exec._lab_host("web") is None  # ambiguous: click says "write LAB/web"
    assert fast_exec._lab_host("two/web") == ("two-web", os.path.join(str(state), "two", "uts", "web"))


@pytest.mark.parametrize("name", ["demo", "a", "run-4194304a", "a-b-c", "x" * 12, "", "x" * 13, "Demo", "1ab",
                                  "-a", "a/b", "..", ".", "a.b", "a b", "ä"])
def test_lab_name_check_agrees_with_the_spec(name):
    from nslab.core.spec import LAB_NAME

    assert paths.is_lab_name(name) == bool(LAB_NAME.fullmatch(name))
