"""Keep the search path responsive while background Python work shares the process.

A rebuild job run in a gateway thread (its store read decodes rows in Python) and a snapshot load (its
labels are parsed in Python) hold the GIL in long stretches. CPython hands the GIL to a waiting thread
only every `sys.getswitchinterval()` (5 ms), so every search that needs the GIL meanwhile waits up to
5 ms: measured here, a 1 ms timer beside a busy thread woke with p99 5.8 ms late at 5 ms, 0.8 ms at
0.5 ms. `responsive_gil` lowers the interval while such work runs and restores it when the last user
leaves (it is process-wide, hence the count); the background work pays a little in extra switches.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_users = 0
_saved = sys.getswitchinterval()


@contextmanager
def responsive_gil(interval_s: float = 0.0005) -> Iterator[None]:
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
