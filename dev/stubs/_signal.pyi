# The C half of `signal`, which typeshed has no stub for. cli/__init__.py uses it instead of `signal` (that one
# imports enum, too slow for `nslab exec`); only what nslab calls is declared, as `signal` declares it.
from collections.abc import Callable
from types import FrameType

SIGHUP: int
SIGTERM: int

_Handler = Callable[[int, FrameType | None], object] | int | None

def signal(signalnum: int, handler: _Handler, /) -> _Handler: ...
