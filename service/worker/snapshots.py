"""Versioned snapshots on shared storage: `<root>/<task>/<version>/index.snapshot` (+ `.json` sidecar),
and `<root>/<task>/latest.json`, the `SnapshotInfo` of the newest one.

The data file and its sidecar are written by `save_snapshot` (temp + fsync + os.replace, sidecar last,
sha256 of the data file inside). The worker then adds its own fields to the sidecar (recall, build
duration, job id) with the same temp + replace, and only then points `latest.json` at the version and
announces it: a reader that follows the pointer never finds a half-written snapshot. Version names sort
by build time, so pruning keeps the newest `keep` and never the one `latest.json` names.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from service.index.snapshot import sidecar_path
from service.worker.records import SnapshotInfo

log = logging.getLogger(__name__)

DATA_NAME = "index.snapshot"
LATEST_NAME = "latest.json"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON to a temporary name, fsync, and move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        with tmp.open("w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def annotate_sidecar(data_path: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Add fields to a snapshot's sidecar (its checksum covers the data file only, so it stays valid)."""
    side = sidecar_path(data_path)
    sidecar = json.loads(side.read_text())
    sidecar.update(extra)
    write_json_atomic(side, sidecar)
    return sidecar


class SnapshotStore:
    """The snapshot folder of every task under one root (data_dir/snapshots)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def task_dir(self, task: str) -> Path:
        return self.root / task

    def new_version(self, offset: int, job_id: str = "") -> str:
        """A version name that sorts by build time: <UTC time>-o<offset>[-<job>]."""
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}"
        suffix = f"-{job_id[-8:]}" if job_id else ""
        return f"{stamp}-o{offset}{suffix}"

    def data_path(self, task: str, version: str) -> Path:
        """The data file of one snapshot version."""
        return self.task_dir(task) / version / DATA_NAME

    def versions(self, task: str) -> list[str]:
        """Version folders of a task, oldest first."""
        folder = self.task_dir(task)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def write_latest(self, info: SnapshotInfo) -> None:
        """Point `latest.json` at `info` (atomic)."""
        write_json_atomic(self.task_dir(info.task) / LATEST_NAME, json.loads(info.to_json()))

    def read_latest(self, task: str) -> SnapshotInfo | None:
        """The newest announced snapshot of a task, or None (no file, or an unreadable one)."""
        path = self.task_dir(task) / LATEST_NAME
        try:
            return SnapshotInfo.from_json(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
            return None

    def prune(self, task: str, keep: int) -> list[str]:
        """Delete all but the newest `keep` versions (never the latest one); return those deleted."""
        latest = self.read_latest(task)
        names = self.versions(task)
        doomed = [v for v in names[: max(0, len(names) - max(keep, 1))] if latest is None or v != latest.version]
        for version in doomed:
            with contextlib.suppress(OSError):  # another worker may be pruning too
                shutil.rmtree(self.task_dir(task) / version)
        if doomed:
            log.info("pruned %d old snapshot(s) of %s", len(doomed), task)
        return doomed
