"""Modules loaded on first use, to keep Lambda cold starts short.

A route module names the use cases it calls at the top, as usual, but through
:func:`lazy_module`: the use case and everything it imports (the sync engine,
MIME parsing, provider SDKs) is executed on the first attribute access, so a cold
``GET /v1/threads`` never pays for the code behind ``POST /v1/accounts``. This is
the stdlib's :class:`importlib.util.LazyLoader`; type checkers see the real module
through an ``if TYPE_CHECKING`` import next to the call.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


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
    return module
