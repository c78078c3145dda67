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
tc.LiveShaper       qdiscs, nft inside hosts, the delayer (tc, nft -f)      FakeShaper
docker.LiveDocker   containers as hosts (the Engine API: docker create...)  FakeDocker
nic.LiveNics        the machine's interfaces a lab borrows (ip addr/route,  FakeNics
                    ip link set IF master BR, 802.1q probe)
==================  ====================================================  ==============================

:class:`Drivers` is what ``Lab`` and every feature receive; :meth:`Drivers.live` builds the real ones (importing
each only when first used), ``drivers.fake.fake_drivers()`` the fakes. The Protocols are in
drivers/protocols.py. Kept free of imports: ``nslab exec`` imports modules of this package.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .protocols import Docker, Files, HostnamePins, Kernel, Machine, Nftables, Nics, Processes, Shaper, Sysctls


class Drivers:
    """One of each driver, handed to ``Lab`` and to every feature's planner and actions."""

    kernel: Kernel
    nft: Nftables
    sysctl: Sysctls
    files: Files
    uts: HostnamePins
    processes: Processes
    machine: Machine
    shaper: Shaper
    docker: Docker
    nics: Nics

    def __init__(
        self,
        kernel: Kernel,
        nft: Nftables,
        sysctl: Sysctls,
        files: Files,
        uts: HostnamePins,
        processes: Processes,
        machine: Machine,
        shaper: Shaper,
        docker: Docker | None = None,
        nics: Nics | None = None,
    ) -> None:
        self.kernel = kernel
        self.nft = nft
        self.sysctl = sysctl
        self.files = files
        self.uts = uts
        self.processes = processes
        self.machine = machine
        self.shaper = shaper
        if docker is not None:  # else made on first use (the live one)
            self.docker = docker
        if nics is not None:  # likewise
            self.nics = nics

    def __getattr__(self, name: str) -> object:  # only called for attributes not set
        if name == "docker":
            from .docker import LiveDocker

            self.docker = LiveDocker()
            return self.docker
        if name == "nics":
            from .nic import LiveNics

            self.nics = LiveNics()
            return self.nics
        raise AttributeError(name)

    @classmethod
    def live(cls) -> Drivers:
        """The real drivers (needs root), each imported and made when first used."""
        from ..linux import require_root

        require_root("it reads and changes network namespaces, links and the firewall")
        return _LiveDrivers()

    def close(self) -> None:
        if "kernel" in self.__dict__:
            self.kernel.close()


#: attribute -> (module of this package, class): the machine's drivers.
_LIVE = {
    "kernel": ("netlink", "NetlinkKernel"),
    "nft": ("nftables", "Nft"),
    "sysctl": ("sysctl", "LiveSysctls"),
    "files": ("files", "LiveFiles"),
    "uts": ("uts", "LiveHostnamePins"),
    "processes": ("process", "LiveProcesses"),
    "machine": ("sockets", "LiveMachine"),
    "shaper": ("tc", "LiveShaper"),
    "docker": ("docker", "LiveDocker"),
    "nics": ("nic", "LiveNics"),
}


class _LiveDrivers(Drivers):
    """The machine's drivers, made on first use: a command imports only the drivers it needs."""

    def __init__(self) -> None:  # nothing is made before it is needed
        pass

    def __getattr__(self, name: str) -> object:  # only called for attributes not made yet
        if name not in _LIVE:
            raise AttributeError(name)
        import importlib

        module, cls = _LIVE[name]
        value = getattr(importlib.import_module(f".{module}", __name__), cls)()
        setattr(self, name, value)
        return value
