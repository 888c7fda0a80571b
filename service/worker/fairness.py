"""Keep the search path responsive while a rebuild shares the machine or the process.

- CPU: `lower_priority` renices the calling thread (niceness is per thread and inherited by the threads it
  starts), for a separate process (`ufo worker`) only: a reniced gateway thread holding the GIL would make every
  search wait for it (priority inversion through the GIL).
- FAISS: its calls release the GIL, so `run_niced` runs such work in a fresh thread reniced to the bottom, in
  the gateway too (fresh, because an unprivileged thread cannot undo its renice).
- GIL: Python work that holds the GIL in long stretches (a rebuild's store read, a snapshot load) would make
  each search wait up to `sys.getswitchinterval()` several times; `responsive_gil` lowers the interval while
  such work runs (process-wide, hence a count of users).
- GC: full collections walk every tracked object with the GIL held; `freeze_gc` moves what exists into the
  permanent generation so later ones walk only new objects (the index holds no reference cycles).

What each measure was measured to buy: docs/benchmarks.md, "Rebuilds" (why the rebuild path is built this way).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

_lock = threading.Lock()
_users = 0
_saved = sys.getswitchinterval()


@contextmanager
def responsive_gil(interval_s: float = 0.0001) -> Iterator[None]:
    """Switch the GIL at least every `interval_s` seconds inside the block (see the module docstring)."""
    global _users, _saved
    with _lock:
        if _users == 0:
            _saved = sys.getswitchinterval()
        _users += 1
        sys.setswitchinterval(min(interval_s, _saved))
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                sys.setswitchinterval(_saved)


def lower_priority(nice: int) -> None:
    """Add `nice` to the calling thread's niceness (Linux: per thread; elsewhere the process's). 0: no-op."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError):  # a container may forbid it: a rebuild at normal priority still works
        tid = threading.get_native_id() if sys.platform.startswith("linux") else 0
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
        log.debug("thread %d reniced to %d", tid, min(19, current + nice))


def freeze_gc() -> None:
    """gc.freeze(): exclude every object alive now from future full collections (see the module docstring)."""
    t0 = time.perf_counter()
    gc.freeze()
    if log.isEnabledFor(logging.DEBUG):  # get_freeze_count walks every frozen object: ~7 ms at 100k items
        log.debug("froze %d objects out of the cyclic GC in %.1f ms", gc.get_freeze_count(),
                  1e3 * (time.perf_counter() - t0))


async def run_niced(nice: int, fn: Callable[..., T], /, *args: Any) -> T:
    """`fn(*args)` in a fresh thread reniced by `nice` (see the module docstring: GIL-free work only)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="niced", initializer=lower_priority, initargs=(nice,))
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args))
    finally:
        pool.shutdown(wait=False)  # the thread exits when fn returns; a cancelled caller does not wait for it
