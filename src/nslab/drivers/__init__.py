"""The kernel boundaries, one module each, and the bundle the lab core is handed.

==================  ====================================================  ==============================
driver              owns (replaces)                                        fake twin (drivers/fake.py)
==================  ====================================================  ==============================
netlink.Kernel      namespaces, bridges, veths, addresses, routes          FakeKernel
                    (ip netns add/del, ip link/addr/route)
nftables.Nft        the one ``table inet nslab`` (nft -f)                  FakeNft
sysctl.Sysctls      ip_forward, route_localnet (sysctl -w)                 FakeSysctls
files.Files         /etc/netns/<ns>/*, records (printf > FILE)             FakeFiles
uts.HostnamePins    kept UTS namespaces (unshare --uts=FILE hostname)      FakeHostnamePins
process.Processes   the supervisor, services, stray processes (kill)       FakeProcesses
sockets.Machine     listening sockets and their owners (ss -lntup)         FakeMachine
==================  ====================================================  ==============================

:class:`Drivers` is what ``Lab`` and every feature receive; :meth:`Drivers.live` builds the real ones (importing
each only when first used), ``drivers.fake.fake_drivers()`` the fakes. The Protocols are in
drivers/protocols.py. Kept free of imports: ``nslab exec`` imports modules of this package.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .protocols import Files, HostnamePins, Kernel, Machine, Nftables, Processes, Sysctls


class Drivers:
    """One of each driver, handed to ``Lab`` and to every feature's planner and actions."""

    __slots__ = ("kernel", "nft", "sysctl", "files", "uts", "processes", "machine")

    def __init__(
        self,
        kernel: Kernel,
        nft: Nftables,
        sysctl: Sysctls,
        files: Files,
        uts: HostnamePins,
        processes: Processes,
        machine: Machine,
    ) -> None:
        self.kernel = kernel
        self.nft = nft
        self.sysctl = sysctl
        self.files = files
        self.uts = uts
        self.processes = processes
        self.machine = machine

    @classmethod
    def live(cls) -> Drivers:
        """The real drivers (needs root)."""
        from ..linux import require_root
        from .files import LiveFiles
        from .netlink import NetlinkKernel
        from .nftables import Nft
        from .process import LiveProcesses
        from .sockets import LiveMachine
        from .sysctl import LiveSysctls
        from .uts import LiveHostnamePins

        require_root()
        return cls(NetlinkKernel(), Nft(), LiveSysctls(), LiveFiles(), LiveHostnamePins(), LiveProcesses(),
                   LiveMachine())

    def close(self) -> None:
        self.kernel.close()
