"""A lab brought up over the fake drivers, with its state in a temporary directory (unit tests of what works
on a lab that is up: check, link, drift)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nslab.drivers import Drivers
from nslab.drivers.fake import fake_drivers
from nslab.lab import Lab


def up_over_fakes(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Drivers:
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path / "state"))
    drivers = fake_drivers()
    Lab.from_text(text, drivers=drivers).up()
    return drivers
