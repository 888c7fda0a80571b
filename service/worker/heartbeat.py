"""The worker's liveness signal: a file whose modification time its loop renews.

`ufo worker` touches the file on every round of its claim loop (at least every `worker.block_s`) and, while a
job runs, on every claim renewal (`worker.heartbeat_s`). A liveness probe (`docker/healthcheck.py
file:///path?max_age_s=N`) fails when the file is older than N seconds: the loop is stuck (a deadlock, a hung
call, a stopped process), and the kubelet restarts the container; a job it held is claimed again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


class Heartbeat:
    """Touches `path` on `beat()` (no-op without a path). A failed write is logged once, never raised: the
    probe reports it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._warned = False

    def beat(self) -> None:
        if self.path is None:
            return
        try:
            self.path.write_text(f"{time.time():.3f}\n")  # the time inside too, for whoever looks at it
        except OSError as exc:
            if not self._warned:
                log.warning("cannot write the heartbeat file %s: %s", self.path, exc)
                self._warned = True
            return
        self._warned = False

    def remove(self) -> None:
        """On a clean exit: a stale file must not vouch for a stopped worker."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
