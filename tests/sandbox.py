"""The throwaway host every integration test runs in (shared/TESTING.md) is :mod:`nslab.tools.sandbox`, which
bench/ uses too; the tests import it by this short name."""

from nslab.tools.sandbox import (
    MARKER,
    NOBODY,
    PRIVATE_DIRS,
    UPLINK_ADDRESS,
    WAN,
    WAN_ADDRESS,
    RootlessUser,
    ThrowawayHost,
    machine_snapshot,
    nslab_cgroups,
    sh,
    user_venv,
)

__all__ = ["MARKER", "NOBODY", "PRIVATE_DIRS", "UPLINK_ADDRESS", "WAN", "WAN_ADDRESS", "RootlessUser", "ThrowawayHost",
           "machine_snapshot", "nslab_cgroups", "sh", "user_venv"]
