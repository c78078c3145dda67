"""``nslab image build``: an image holding this machine's nslab, made on the Docker engine ``DOCKER_HOST`` names,
with no registry and no docker CLI.

From nothing (the default): a root filesystem assembled from what runs nslab here — the Python interpreter
(``sys.executable``), its standard library (without its tests, IDLE, tkinter, ensurepip), the shared libraries
it and every extension module need (``ldd``), nslab's package and its runtime dependencies (the distributions
nslab requires, found by ``importlib.metadata``, copied file by file under ``/opt/nslab``), and the few tools a
machine's part uses (``ip``, ``nft``, ``tc``, ``nsenter``, ``busybox`` with its common applets, each with the
libraries it needs). The tree goes to the engine as a one-layer image in ``docker save``'s format (``POST
/images/load``) whose config has a fixed creation time: the image's id follows from the files alone, so the
image built from one machine against every node of a swarm is the same image there (Swarm then runs it by id,
with no pull), and ``PATH`` and ``PYTHONPATH`` are set in it.

``--from IMAGE``: the same files on top of your image, through the Engine API's ``/build`` (a tar context with a
Dockerfile ``FROM IMAGE`` + ``COPY``), for a base that brings tools of its own. Files of the base image at the
same paths are replaced by this machine's.

Replaces: ``debootstrap``/``tar -c . | docker import - nslab:VERSION``, ``docker load``, ``docker build``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlencode

from ..drivers.docker import LiveDocker
from ..errors import DockerError, EnvironmentProblem

#: Where nslab and its dependencies live in the image (``PYTHONPATH``).
SITE = "/opt/nslab/site-packages"
#: The tools a machine's part may run besides Python (each taken when this machine has it).
TOOLS = ("ip", "nft", "tc", "nsenter", "busybox")
#: busybox applets linked in /bin: what ``nslab exec LAB/HOST -- CMD`` commonly runs, and a shell.
APPLETS = ("sh", "hostname", "cat", "echo", "ls", "ping", "sleep", "wget", "nc", "env", "id", "ps", "true",
           "false", "grep", "head", "tail", "mkdir", "rm", "kill", "uname", "date")
#: Parts of the standard library a lab never needs.
SKIPPED_STDLIB = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages",
                  "dist-packages", "pydoc_data", "unittest"}
#: busybox's applets: last on PATH, so that the real tools copied from this machine come first.
APPLET_DIR = "/opt/nslab/bin"
PATH = f"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{APPLET_DIR}"
#: The image config's creation time: fixed, so the image id follows from its files alone.
EPOCH = "1970-01-01T00:00:00Z"
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
TOP_LINKS = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")


def default_tag() -> str:
    """``nslab:VERSION`` (the installed distribution's version)."""
    from importlib.metadata import version

    return f"nslab:{version('nslab')}"


@dataclass(frozen=True)
class Built:
    """An image made by :func:`build`: its tag, id, size in bytes and the seconds the build took."""

    tag: str
    ident: str
    size: int
    seconds: float
    files: int


def build(tag: str | None = None, base: str | None = None, docker: LiveDocker | None = None) -> Built:
    """Make the image ``tag`` (default :func:`default_tag`) on the engine; ``base``: on top of that image."""
    tag = tag or default_tag()
    docker = docker or LiveDocker(timeout=600.0)
    docker.ping()
    started = time.monotonic()
    with tempfile.TemporaryFile() as tar:
        files = _write_tar(tar, base)
        length = tar.tell()
        tar.seek(0)
        if base is None:
            _load(docker, tar, tag)
        else:
            _build(docker, tar, length, tag)
    status, info = docker.request("GET", f"/images/{tag}/json")
    if status != 200 or not isinstance(info, dict):
        raise DockerError(f"docker: image {tag} is not there after the build ({status})")
    return Built(tag, str(info.get("Id", "")), int(info.get("Size", 0)), time.monotonic() - started, files)


def _load(docker: LiveDocker, layer: IO[bytes], tag: str) -> None:
    """The root filesystem ``layer`` as a one-layer image in ``docker save``'s format, loaded (``POST
    /images/load``). Its config has a fixed creation time, so the image's id depends on the files alone: built
    from the same machine on every node, it is the same image, and Swarm runs it by id with no pull."""
    digest = hashlib.sha256()
    while chunk := layer.read(1 << 20):
        digest.update(chunk)
    layer_id = digest.hexdigest()
    config = json.dumps({
        "architecture": ARCHITECTURES.get(platform.machine(), platform.machine()), "os": "linux",
        "created": EPOCH, "config": {"Env": [f"PATH={PATH}", f"PYTHONPATH={SITE}"], "Cmd": ["nslab", "--help"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        "history": [{"created": EPOCH, "created_by": "nslab image build"}],
    }, sort_keys=True).encode()
    config_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{config_id}.json", "RepoTags": [tag],
                            "Layers": [f"{layer_id}/layer.tar"]}]).encode()
    layer.seek(0)
    with tempfile.TemporaryFile() as image:
        with tarfile.open(fileobj=image, mode="w") as tar:
            for name, data in ((f"{config_id}.json", config), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo(f"{layer_id}/layer.tar")
            info.size = os.fstat(layer.fileno()).st_size
            tar.addfile(info, layer)
        length = image.tell()
        image.seek(0)
        status, data = docker.request("POST", "/images/load?quiet=1", upload=(image, length, "application/x-tar"))
    _check(status, data, f"cannot load image {tag}")


def _build(docker: LiveDocker, tar: IO[bytes], length: int, tag: str) -> None:
    query = urlencode({"t": tag, "rm": "1", "forcerm": "1"})
    status, data = docker.request("POST", f"/build?{query}", upload=(tar, length, "application/x-tar"))
    _check(status, data, f"cannot build image {tag}")


def _check(status: int, data: object, what: str) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    if status != 200 or '"error' in text:
        said = re.findall(r'"error"\s*:\s*"([^"]*)"', text)
        raise DockerError(f"docker: {what}: {said[-1] if said else text[-300:]}")


# -- the files ---------------------------------------------------------------------------------------------------
def _write_tar(out: IO[bytes], base: str | None) -> int:
    """The image's files as a tar on ``out`` (``base``: a build context, the files under ``rootfs/`` and a
    Dockerfile); returns how many files went in."""
    prefix = "rootfs/" if base is not None else ""
    count = 0
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for source, target in sorted(set(_files())):
            if source.startswith("busybox:"):
                link = tarfile.TarInfo(prefix + target.lstrip("/"))
                link.type, link.linkname = tarfile.SYMTYPE, source.partition(":")[2]
                tar.addfile(link)
            else:
                tar.add(source, arcname=prefix + target.lstrip("/"), recursive=False)
            count += 1
        for target, text, mode in _generated():
            _add_text(tar, prefix + target.lstrip("/"), text, mode)
        for top in TOP_LINKS if base is None else ():  # a merged /usr: the same links (a base keeps its own)
            if os.path.islink(f"/{top}"):
                link = tarfile.TarInfo(prefix + top)
                link.type, link.linkname = tarfile.SYMTYPE, os.readlink(f"/{top}")
                tar.addfile(link)
        for applet in APPLETS if _which("busybox") else ():
            link = tarfile.TarInfo(prefix + f"{APPLET_DIR.lstrip('/')}/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, _which("busybox") or ""
            tar.addfile(link)
        for directory in ("tmp", "proc", "sys", "dev", "run/netns", "run/nslab", "etc/netns", "var/lib/nslab"):
            info = tarfile.TarInfo(prefix + directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        if base is not None:
            dockerfile = (f"FROM {base}\nCOPY rootfs/ /\nENV PATH={PATH}\nENV PYTHONPATH={SITE}\n")
            _add_text(tar, "Dockerfile", dockerfile, 0o644)
    return count


def _add_text(tar: tarfile.TarFile, name: str, text: str, mode: int) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _generated() -> list[tuple[str, str, int]]:
    """Files written for the image: the ``nslab`` command, passwd and group."""
    command = f"#!{os.path.realpath(sys.executable)}\nfrom nslab.cli import entry\nentry()\n"
    return [("usr/local/bin/nslab", command, 0o755),
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n", 0o644),
            ("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)]


def _which(name: str) -> str | None:
    import shutil

    found = shutil.which(name, path=PATH)
    return os.path.realpath(found) if found else None


def _files() -> Iterator[tuple[str, str]]:
    """(path here, path in the image) of every file the image holds, directories implied."""
    executable = os.path.realpath(sys.executable)
    binaries = [executable, *filter(None, (_which(tool) for tool in TOOLS))]
    for binary in binaries:
        yield binary, binary
    sh = os.path.join(os.path.realpath("/bin"), "sh")  # /bin/sh (subprocess's shell): busybox's
    if os.path.realpath(sh) not in binaries and _which("busybox"):
        yield f"busybox:{_which('busybox')}", sh  # (a link to busybox, written by _write_tar)
    if _which("ip"):  # `ip netns` and `ip -j` read these
        yield from ((p, p) for p in _tree("/usr/lib/iproute2") if os.path.exists("/usr/lib/iproute2"))
    stdlib = sysconfig.get_paths()["stdlib"]
    extensions: list[str] = []
    for path in _tree(stdlib, skip=SKIPPED_STDLIB):
        yield path, path
        if path.endswith(".so"):
            extensions.append(path)
    for source, target in _site_packages():
        yield source, target
        if source.endswith(".so"):
            extensions.append(source)
    for library in _libraries(binaries + extensions):
        for link in _links(library):
            yield link, link


def _links(path: str) -> Iterator[str]:
    """``path`` and, while it is a symbolic link, what it points to (``/lib64/ld-linux-x86-64.so.2`` ->
    ``/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2``), each under its directory's real path (the image has the
    same top-level links as this machine: ``/lib`` -> ``usr/lib`` on a merged /usr)."""
    for _ in range(8):
        path = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        yield path
        if not os.path.islink(path):
            return
        path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))


def _tree(top: str, skip: set[str] | frozenset[str] = frozenset()) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d not in skip or dirpath != top]
        for name in filenames:
            if ".opt-" not in name:
                yield os.path.join(dirpath, name)


def _site_packages() -> Iterator[tuple[str, str]]:
    """nslab's package and the files of every distribution it needs at run time, under :data:`SITE`."""
    from importlib.metadata import PackageNotFoundError, distribution

    from .. import paths

    package = os.path.dirname(os.path.realpath(paths.__file__))  # the nslab package (paths.py is at its top)
    for path in _tree(package):
        yield path, f"{SITE}/nslab/{os.path.relpath(path, package)}"
    for entry in distribution("nslab").files or ():  # its metadata (``nslab --version``), not an editable hook
        if ".dist-info/" in str(entry) and os.path.isfile(str(entry.locate())):
            yield str(entry.locate()), f"{SITE}/{entry}"
    seen: set[str] = set()
    wanted = _requirements("nslab")
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise EnvironmentProblem(f"nslab needs {name}, which is not installed here") from None
        for entry in dist.files or ():
            source = str(dist.locate_file(entry))
            if os.path.isfile(source) and not str(entry).startswith(".."):
                yield source, f"{SITE}/{entry}"
        wanted.extend(_requirements(name))


def _requirements(name: str) -> list[str]:
    """The distributions ``name`` needs at run time (no extras)."""
    from importlib.metadata import requires

    out = []
    for requirement in requires(name) or ():
        if "extra ==" in requirement:
            continue
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        if match:
            out.append(match.group(0))
    return out


def _libraries(objects: list[str]) -> set[str]:
    """Every shared library the ELF files ``objects`` load (``ldd``, the dynamic loader included)."""
    found: set[str] = set()
    for start in range(0, len(objects), 64):
        done = subprocess.run(["ldd", *objects[start:start + 64]], capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if match:
                found.add(match.group(1))
    return found
