"""Modules loaded on first use, to keep Lambda cold starts short.

A route module names the use cases it calls at the top, as usual, but through
:func:`lazy_module`: the use case and everything it imports (the sync engine,
MIME parsing, provider SDKs) is executed on the first attribute access, so a cold
``GET /v1/threads`` never pays for the code behind ``POST /v1/accounts``. This is
the stdlib's :class:`importlib.util.LazyLoader`; type checkers see the real module
through an ``if TYPE_CHECKING`` import next to the call.

Python 3.11's ``LazyLoader`` does not guard the first load against two threads.
A Lambda instance serves one request at a time, so that cannot happen there; a
server that handles requests on threads (the local runner) calls :func:`load_all`
before it serves.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

_LAZY: list[str] = []


def lazy_module(name: str) -> ModuleType:
    """The module ``name``; its code runs on first attribute access (once per process)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    _LAZY.append(name)
    return module


def load_all() -> None:
    """Load every module handed out by :func:`lazy_module` now."""
    for name in _LAZY:
        getattr(sys.modules[name], "__name__", None)  # any attribute access runs the module
