"""Unit tests never touch the machine's state: each gets its own state directory (a test that forgets to set
NSLAB_STATE_DIR would otherwise write /run/nslab)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NSLAB_STATE_DIR", str(tmp_path_factory.mktemp("state")))
