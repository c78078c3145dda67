"""nslab's pytest plugin (entry point ``pytest11``: installed with nslab, nothing to configure).

- ``nslab_lab``: the lab of the test's ``@pytest.mark.nslab("path/lab.yaml")`` (path relative to the test file),
  up before the test, down after it;
- ``nslab_labs``: a factory, ``nslab_labs(text_or_path)`` -> an up :class:`nslab.Lab`, each down after the test.

Every lab gets a name of its own for the test (the lab's ``name:`` cut to 5 characters, ``-`` and 6 hex digits), so
the same file can be up in several tests at once (``pytest -n``). Subnets are chosen per lab unless the file
fixes them: fixed subnets collide when two tests bring the same file up at once. Labs go down after the test
whether it passed, failed or was interrupted (pytest tears fixtures down on Ctrl-C; an ``atexit`` hook
catches what is left if the process ends otherwise). Tests that use these fixtures need root; without it they
are skipped.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .lab import Lab

_UP: dict[str, Lab] = {}  # labs this process brought up and has not taken down (the atexit fallback)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nslab(path): the lab file that the nslab_lab fixture brings up")


def unique_name(base: str) -> str:
    """``base`` cut to 5 characters + ``-`` + 6 random hex digits: at most 12, a valid lab name."""
    return f"{base[:5].rstrip('-')}-{os.urandom(3).hex()}"


class LabFactory:
    """``nslab_labs``: brings labs up under names of their own; ``close()`` takes them all down."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.labs: list[Lab] = []

    def __call__(self, text_or_path: str | os.PathLike[str]) -> Lab:
        """The lab of ``text_or_path``, up. A file that cannot be found, read or brought up fails the test
        with nslab's own lines, not a traceback."""
        from .errors import NslabError

        try:
            return self._up(str(text_or_path))
        except NslabError as exc:
            pytest.fail("\n".join(f"nslab: {line}" for line in exc.lines()), pytrace=False)

    def _up(self, text: str) -> Lab:
        from .core.load import renamed as renamed_file
        from .errors import UserError
        from .lab import Lab

        if "\n" in text:
            lab = Lab.from_text(text)
        else:
            path = Path(text) if Path(text).is_absolute() else self.directory / text
            if not path.exists() and not Path(text).exists():
                raise UserError(f"no lab file {path} (a relative path is taken from the test's folder)")
            lab = Lab.load(path if path.exists() else Path(text))
        renamed = Lab(renamed_file(lab.file, unique_name(lab.name)), lab.drivers)
        self.labs.append(renamed)
        _UP[renamed.name] = renamed
        renamed.up()
        return renamed

    def close(self) -> None:
        failures = []
        for lab in reversed(self.labs):
            try:
                lab.down()
            except Exception as exc:  # every lab goes down; the failures are reported together
                failures.append(f"{lab.name}: {exc}")
            _UP.pop(lab.name, None)
        self.labs.clear()
        if failures:
            pytest.fail("nslab: taking labs down failed: " + "; ".join(failures), pytrace=False)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("nslab labs need root")


@pytest.fixture
def nslab_labs(request: pytest.FixtureRequest) -> Iterator[LabFactory]:
    """A factory: ``nslab_labs("lab.yaml")`` or ``nslab_labs(lab_text)`` -> a lab that is up (for this test)."""
    _need_root()
    factory = LabFactory(Path(request.path).parent)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def nslab_lab(request: pytest.FixtureRequest, nslab_labs: LabFactory) -> Lab:
    """The lab of ``@pytest.mark.nslab("path/lab.yaml")``, up for this test."""
    marker = request.node.get_closest_marker("nslab")
    if marker is None or not marker.args:
        raise pytest.UsageError('nslab_lab needs @pytest.mark.nslab("path/to/lab.yaml") on the test')
    return nslab_labs(marker.args[0])


@atexit.register
def _down_left_over(*_: Any) -> None:
    for lab in list(_UP.values()):
        try:
            lab.down()
        except Exception:  # last resort at exit: nothing to report to
            pass
