"""Issue 20, item 7: one home per fact. Every error nslab raises is a class of errors.py (the one tree); a
module may keep a private one (``_Name``) that never leaves it. Interrupts are not errors: cli/fast.py's
``Terminated`` (SIGTERM/SIGHUP) is a KeyboardInterrupt, so that everything rolls back as on Ctrl-C."""

from __future__ import annotations

import importlib
import pkgutil

import nslab
from nslab import errors


def nslab_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(nslab.__path__, "nslab.")]
    return [n for n in names if n != "nslab.__main__"]  # (importing it runs the CLI)


def test_every_exception_class_is_in_errors_py():
    elsewhere = []
    for name in nslab_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (isinstance(value, type) and issubclass(value, Exception) and value.__module__ == name
                    and name != "nslab.errors" and not attr.startswith("_")):
                elsewhere.append(f"{name}.{attr}")
    assert not elsewhere, f"exceptions outside errors.py: {elsewhere}"


def test_the_tree_has_one_root_and_each_name_once():
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert all(issubclass(c, errors.NslabError) for c in classes)
    assert len({c.__name__ for c in classes}) == len(classes)
    for c in classes:  # the tree drawn in the docstring names every class
        assert c.__name__ in (errors.__doc__ or "") or c.__name__.startswith("_"), c.__name__
