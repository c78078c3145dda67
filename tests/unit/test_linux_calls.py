"""linux.py declares its libc functions from ctypes' C half (``_ctypes``) to spare ``nslab exec`` the import
of ``ctypes`` itself: check they behave as the same functions declared through ``ctypes`` do."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys

import pytest

from nslab import linux


def test_the_declarations_match_ctypes_ones():
    assert linux._Int._type_ == ctypes.c_int._type_
    assert linux._ULong._type_ == ctypes.c_ulong._type_
    assert linux._CharP._type_ == ctypes.c_char_p._type_
    assert linux._VoidP._type_ == ctypes.c_void_p._type_
    reference = ctypes.CDLL(None, use_errno=True)
    assert linux._Function._flags_ == reference._FuncPtr._flags_
    assert linux._libc.getpid() == reference.getpid() == os.getpid()


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: linux.setns(-1, linux.CLONE_NEWNET), errno.EBADF),
        (lambda: linux.umount("/nonexistent/nslab-test"), errno.ENOENT),
        (lambda: linux.mount(None, "/nonexistent/nslab-test", None, linux.MS_BIND), errno.ENOENT),
    ],
)
def test_errno_comes_back_as_oserror(call, code):
    with pytest.raises(OSError) as caught:
        call()
    assert caught.value.errno == code


def test_mount_passes_every_argument(tmp_path):
    """A real bind mount in a private mount namespace (a child process): the strings and the unsigned long
    flags reach the kernel intact."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    source, target = tmp_path / "src", tmp_path / "dst"
    source.mkdir()
    target.mkdir()
    (source / "marker").write_text("here")
    script = (
        "from nslab import linux; import os;"
        "linux.unshare(linux.CLONE_NEWNS);"
        "linux.mount('none', '/', None, linux.MS_REC | linux.MS_PRIVATE);"
        f"linux.mount({str(source)!r}, {str(target)!r}, None, linux.MS_BIND);"
        f"print(open({str(target / 'marker')!r}).read());"
        f"linux.umount({str(target)!r})"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "here"
    assert not (target / "marker").exists()  # the mount lived in the child's namespace only

