"""The traffic-shaping driver: qdiscs (``tc``), nft tables inside a host's namespace, and the packet delayer.

- qdiscs: the ``tc`` binary, one ``tc -n NS -force -batch -`` per namespace and change. A change touches one or
  two qdiscs (root tbf, or netem where the kernel has it), so one process per namespace (~3 ms) costs less
  than the code of a second netlink codec for the tc attribute tree (rate tables, nested options) would weigh;
  ``-force`` keeps going past a line that fails and the failure is reported with tc's own message.
- nft inside a host: the nftables driver (libnftables, one transaction) run in a short-lived thread that
  entered the host's network namespace (:func:`nslab.linux.in_namespace`).
- the delayer: ``python -m nslab.daemons.delayer LAB`` (nslab/delayer.py), one small process per lab that holds
  NFQUEUE'd packets for delay ± jitter where the kernel has no netem. Started detached; its pid and start time
  are in its status file, so any later ``nslab`` (``impair --clear``, ``down``) can stop it.

Replaces: ``tc -n NS qdisc replace dev IF root tbf ...``, ``ip netns exec NS nft -f -``, ``kill``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from .. import linux, paths
from ..errors import EnvironmentProblem, KernelError
from . import files, process

#: kernel modules, by what they give (the NFQUEUE target: nft's own ``queue`` is often not built, the xtables
#: target through nft's compat layer is)
NETEM, NFQUEUE = "sch_netem", "xt_NFQUEUE"
_CONFIG = {NETEM: "CONFIG_NET_SCH_NETEM", NFQUEUE: "CONFIG_NETFILTER_XT_TARGET_NFQUEUE"}
IPTABLES = "iptables-nft-restore"


def kernel_has(module: str) -> bool:
    """Loaded, built in, or available to load (``/proc/config.gz``, ``modules.dep``, ``modules.builtin``)."""
    if os.path.exists(f"/sys/module/{module}"):
        return True
    try:
        import gzip

        with gzip.open("/proc/config.gz", "rt") as fh:
            if any(line.startswith(f"{_CONFIG[module]}=") for line in fh):
                return True
    except OSError:
        pass
    release = os.uname().release
    for name in ("modules.builtin", "modules.dep"):
        try:
            with open(f"/lib/modules/{release}/{name}") as fh:
                if f"/{module}.ko" in fh.read():
                    return True
        except OSError:
            continue
    return False


class LiveShaper:
    """The shaping driver handed to the lab core (drivers/protocols.py: ``Shaper``)."""

    def __init__(self) -> None:
        self._has: dict[str, bool] = {}

    def has(self, module: str) -> bool:
        import shutil

        if module not in self._has:
            self._has[module] = kernel_has(module) and (module != NFQUEUE or shutil.which(IPTABLES) is not None)
        return self._has[module]

    def queues(self, namespace: str, rules: list[tuple[str, str, int, str]], ipv6: bool = False) -> None:
        """The host's NFQUEUE rules, ``(direction, interface, queue, comment)``, replacing those it had.

        They live in chains of nslab's own (``NSLAB-IN`` from PREROUTING, ``NSLAB-OUT`` from POSTROUTING) of the
        host's ``ip mangle`` table, made with iptables-nft: the xtables NFQUEUE target is what this kernel
        has. With no rules the chains go, and the table too when nothing else is in it. ``ipv6``: the same in
        the host's ``ip6 mangle`` table (ip6tables-nft), for a dual-stack host: its IPv6 packets are delayed too
        (the delayer's verdicts are family-agnostic)."""
        self._queues(namespace, rules, "ip")
        if ipv6:
            self._queues(namespace, rules, "ip6")

    def _queues(self, namespace: str, rules: list[tuple[str, str, int, str]], family: str) -> None:
        lines = ["*mangle", ":NSLAB-IN - [0:0]", ":NSLAB-OUT - [0:0]"]
        for direction, ifname, queue, comment in rules:
            chain, match = ("NSLAB-IN", "-i") if direction == "in" else ("NSLAB-OUT", "-o")
            lines.append(f'-A {chain} {match} {ifname} -m comment --comment "{comment}" -j NFQUEUE --queue-num {queue}')
        self._iptables(namespace, [*lines, "COMMIT"], family)
        hooked = self._iptables(namespace, None, family)
        jumps = [("PREROUTING", "NSLAB-IN"), ("POSTROUTING", "NSLAB-OUT")]
        if rules:
            missing = [f"-I {hook} -j {chain}" for hook, chain in jumps if f"-A {hook} -j {chain}" not in hooked]
            if missing:
                self._iptables(namespace, ["*mangle", *missing, "COMMIT"], family)
            return
        gone = [f"-D {hook} -j {chain}" for hook, chain in jumps if f"-A {hook} -j {chain}" in hooked]
        self._iptables(namespace, ["*mangle", *gone, "-X NSLAB-IN", "-X NSLAB-OUT", "COMMIT"], family)
        if not any(line.startswith("-A ") for line in self._iptables(namespace, None, family).splitlines()):
            self.nft(namespace, f"delete table {family} mangle")

    def _iptables(self, namespace: str, lines: list[str] | None, family: str = "ip") -> str:
        """``iptables-nft-restore --noflush`` of ``lines`` inside the host; None: ``iptables-nft-save -t mangle``
        (``ip6tables-…`` for ``family`` ip6)."""
        import subprocess

        prefix = "ip6" if family == "ip6" else "ip"
        tool = f"{prefix}tables-nft-restore" if lines is not None else f"{prefix}tables-nft-save"
        argv = ["ip", "netns", "exec", namespace, tool, *(["--noflush"] if lines is not None else ["-t", "mangle"])]
        text = "\n".join(lines) + "\n" if lines is not None else None
        result = subprocess.run(argv, input=text, capture_output=True, text=True)
        if result.returncode != 0:
            raise KernelError(f"{tool} in {namespace}: {result.stderr.strip() or 'failed'}")
        return result.stdout

    def tc(self, namespace: str | None, lines: list[str]) -> None:
        import shutil
        import subprocess

        tc = shutil.which("tc")
        if tc is None:
            raise EnvironmentProblem("the tc command is missing (apt-get install iproute2)")
        argv = [tc, *(["-n", namespace] if namespace else []), "-force", "-batch", "-"]
        result = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True)
        if result.returncode != 0:
            where = f" in {namespace}" if namespace else ""
            raise KernelError(f"tc{where}: {result.stderr.strip() or 'failed'}")

    def nft(self, namespace: str, text: str) -> str:
        from .nftables import Nft

        with open(paths.netns_path(namespace)) as fh:
            return linux.in_namespace(fh.fileno(), lambda: Nft().run(text), name="nslab-nft")

    def start_delayer(self, lab: str, config: dict[str, Any], wait: float = 10.0) -> None:
        import subprocess

        os.makedirs(paths.logs_dir(lab), exist_ok=True)
        files.write_json(paths.delayer_config(lab), config)
        status_file = paths.delayer_status(lab)
        if os.path.exists(status_file):
            os.unlink(status_file)
        with open(os.path.join(paths.logs_dir(lab), "delayer.log"), "ab") as log:
            started = subprocess.run(  # it forks once more and this one exits: nobody's child, no zombie
                [sys.executable, "-m", "nslab.daemons.delayer", lab], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, env={**os.environ, "NSLAB_STATE_DIR": paths.state_root()},
            )
        deadline = time.monotonic() + wait
        while started.returncode == 0 and time.monotonic() < deadline:
            status = files.read_json(status_file) or {}
            if status.get("error"):
                self.stop_delayer(lab)
                raise KernelError(f"lab {lab}: the packet delayer failed: {status['error']}")
            if status.get("ready"):
                return
            time.sleep(0.01)
        self.stop_delayer(lab)
        raise KernelError(f"the packet delayer of lab {lab} did not start (see {paths.logs_dir(lab)}/delayer.log)")

    def delayer_running(self, lab: str) -> bool:
        status = files.read_json(paths.delayer_status(lab)) or {}
        return process.is_alive(status.get("pid"), status.get("start"))

    def stop_delayer(self, lab: str) -> list[str]:
        status = files.read_json(paths.delayer_status(lab)) or {}
        pid, start = status.get("pid"), status.get("start")
        process.stop_process(pid, start, 5.0)
        if process.is_alive(pid, start):
            return [f"lab {lab}: the packet delayer (pid {pid}) survived SIGKILL"]
        for path in (paths.delayer_config(lab), paths.delayer_status(lab)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return []
