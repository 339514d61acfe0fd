"""Timing hygiene shared by every timed run of the benchmark."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def settled_heap() -> Iterator[None]:
    """Collect, then freeze what the process already holds (``gc.freeze``) while a run is timed.

    The bench process keeps moto's whole in-process state and the generated mail alive;
    without this, every full collection during a timed run walks millions of objects that
    the measured code does not own (a Lambda worker has no such heap), and the same run
    varied by 1.6x in CPU. Objects the run creates are still collected as usual.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
