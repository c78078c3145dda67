"""The throwaway host itself: isolated from the real machine, and the `wan` plays the internet."""

from __future__ import annotations

import os

from sandbox import UPLINK_ADDRESS, WAN_ADDRESS, sh


def test_host_is_private_and_reaches_wan(host):
    assert sh("ip netns list").stdout.split()[0] == "wan"
    assert UPLINK_ADDRESS in sh("ip -br addr show eth0").stdout
    assert os.listdir("/run/nslab") == []
    out = sh(f"ping -c1 -W2 {WAN_ADDRESS}", check=False)
    assert out.returncode == 0, out.stderr
