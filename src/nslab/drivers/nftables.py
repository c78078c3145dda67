"""The nftables driver: libnftables in-process through ctypes, one buffer = one atomic transaction.

``libnftables.so.1`` parses and commits a whole buffer as one netlink batch (~0.5 ms); the ``nft``
subprocess (~20 ms) is only the fallback when the library cannot be loaded. Both work in the network
namespace of the calling thread. Every failure becomes :class:`~nslab.errors.FirewallError` carrying nft's
own message.

:class:`FakeNft` is the twin for unit tests: it records the buffers it is given and answers listings from
a ruleset document it is handed.
"""

from __future__ import annotations

import ctypes
import json
from typing import Any

from ..errors import EnvironmentProblem, FirewallError

NFT_CTX_OUTPUT_HANDLE = 1 << 3
NFT_CTX_OUTPUT_JSON = 1 << 4

_lib: Any = None
_lib_error: str | None = None


def _library() -> Any:
    global _lib, _lib_error
    if _lib is None and _lib_error is None:
        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError as exc:
            _lib_error = str(exc)
            return None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        _lib = lib
    return _lib


class Nft:
    """Runs nft command buffers; ``run`` = one transaction, ``ruleset`` = the JSON listing."""

    def run(self, text: str, json_output: bool = False) -> str:
        lib = _library()
        if lib is None:
            return self._subprocess(text, json_output)
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise FirewallError("libnftables: cannot create a context")
        try:
            flags = NFT_CTX_OUTPUT_HANDLE | (NFT_CTX_OUTPUT_JSON if json_output else 0)
            lib.nft_ctx_output_set_flags(ctx, flags)
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
        finally:
            lib.nft_ctx_free(ctx)
        if rc != 0:
            raise FirewallError(f"nftables refused the change: {err.strip() or 'unknown error'}")
        return out

    def _subprocess(self, text: str, json_output: bool) -> str:
        import shutil
        import subprocess

        nft = shutil.which("nft")
        if nft is None:
            raise EnvironmentProblem(f"neither libnftables.so.1 ({_lib_error}) nor the nft command is available")
        if json_output:  # `nft -j -f -` prints nothing for a listing: pass a single command as arguments
            argv, stdin = [nft, "-a", "-j", *text.split()], None
        else:
            argv, stdin = [nft, "-a", "-f", "-"], text
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True)
        if result.returncode != 0:
            raise FirewallError(f"nftables refused the change: {result.stderr.strip() or 'unknown error'}")
        return result.stdout

    def ruleset(self) -> list[dict[str, Any]]:
        """``nft -j -a list ruleset`` as the list of its objects (``{"table": ...}``, ``{"chain": ...}``...)."""
        out = self.run("list ruleset", json_output=True)
        if not out.strip():
            return []
        return [item for item in json.loads(out).get("nftables", []) if "metainfo" not in item]


class FakeNft(Nft):
    """For unit tests: records every transaction; answers ``ruleset`` from ``objects``."""

    def __init__(self, objects: list[dict[str, Any]] | None = None):
        self.objects = list(objects or [])
        self.transactions: list[str] = []

    def run(self, text: str, json_output: bool = False) -> str:
        if text.strip() == "list ruleset" and json_output:
            return json.dumps({"nftables": self.objects})
        self.transactions.append(text)
        return ""
