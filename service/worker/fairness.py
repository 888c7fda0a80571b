"""Keep the search path responsive while a rebuild shares the machine or the process.

CPU: a rebuild is background work. `lower_priority` renices the calling thread (Linux niceness is per
thread, and threads it starts afterwards — FAISS's, the executor's — inherit it), so under contention the
scheduler prefers the search threads, while an otherwise idle machine still gives the build every cycle.
For a separate process (`ufo worker`) only: a reniced thread inside the gateway that holds the GIL waits
longer for a CPU, and every search then waits for it (priority inversion through the GIL).

FAISS: its calls release the GIL for their whole length, so the FAISS part of a build (train, add, tuning
searches: seconds of CPU) holds the GIL only for the glue between calls. `run_niced` runs such work in a fresh
thread reniced to the bottom, in the gateway too: measured here, that phase was where most slow searches of a
rebuild fell (the build thread and the searches competing for two cores). A fresh thread, because an
unprivileged thread cannot undo its renice; Python work that holds the GIL stays at normal priority.

GIL: a rebuild job run in a gateway thread (its store read decodes rows in Python) and a snapshot load (its
labels are parsed in Python) hold the GIL in long stretches. CPython hands the GIL to a waiting thread
only every `sys.getswitchinterval()` (5 ms), so every search that needs the GIL meanwhile waits up to
5 ms — and a search takes the GIL several times (the event loop, the search thread, back). Measured
here, a 1 ms timer beside a busy thread woke with p99 5.8 ms late at 5 ms, 0.8 ms at 0.5 ms.
`responsive_gil` lowers the interval (to 0.1 ms) while such work runs and restores it when the last user
leaves (it is process-wide, hence the count); the background work pays a little in extra switches.

GC: a rebuild's allocations trigger CPython's full (generation 2) collections, which walk every tracked
object of the process — the imported modules alone (FAISS, Redis, pydantic, FastAPI) are ~60k objects —
with the GIL held: measured here, a 30-37 ms stall in the middle of a rebuild at 100k items. The index
itself adds almost none (its id strings and flat metadata dicts are untracked). `freeze_gc` moves what
exists into the permanent generation (gc.freeze), so later full collections walk only new objects
(measured: 18 ms → 0 ms). Objects frozen are still freed by reference counting when dropped; only
reference cycles among them would never be collected, and the index holds none.
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
