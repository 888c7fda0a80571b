"""The FAISS engine's catalog: each task's live `VectorIndex` in memory, persisted as a snapshot.

`<root>/<task>/<version-slug>/index.snapshot` (+ sidecar, written atomically by `VectorIndex.save`) and
`<root>/<task>/live.json` naming the live version, replaced atomically: promoting a new version is one
reference assignment in memory and one rename on disk, so neither a search nor a reopen sees a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path

from service.index.snapshot import load_snapshot, save_snapshot
from service.index.vector_index import VectorIndex

LIVE_NAME = "live.json"
DATA_NAME = "index.snapshot"


def version_slug(model_version: str) -> str:
    """A folder name for a model version ("ufo_face/1" → "ufo_face_1-<hash>"): readable and collision-free."""
    readable = re.sub(r"[^A-Za-z0-9_]", "_", model_version)[:64]
    return f"{readable}-{hashlib.sha256(model_version.encode()).hexdigest()[:8]}"


class FaissCatalog:
    """`EngineCatalog` over in-memory `VectorIndex`es and their snapshots under `root`."""

    name = "faiss"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._live: dict[str, VectorIndex] = {}
        self._lock = threading.Lock()

    def _task_dir(self, task: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", task):
            raise ValueError(f"task names are letters, digits, _ and -, got {task!r}")
        return self.root / task

    def open(self, task: str) -> VectorIndex | None:
        with self._lock:
            if task in self._live:
                return self._live[task]
            pointer = self._task_dir(task) / LIVE_NAME
            if not pointer.is_file():
                return None
            live = json.loads(pointer.read_text())
            index = load_snapshot(self._task_dir(task) / live["slug"] / DATA_NAME,
                                     model_version=live["model_version"])
            self._live[task] = index
            return index

    def create(self, task: str, model_version: str, dim: int) -> VectorIndex:
        self._task_dir(task)  # validates the name
        return VectorIndex(dim, model_version)

    def promote(self, task: str, engine: VectorIndex) -> None:
        if not isinstance(engine, VectorIndex):
            raise TypeError(f"the faiss catalog promotes VectorIndex, got {type(engine).__name__}")
        with self._lock:
            self._live[task] = engine
        self.checkpoint(task)

    def checkpoint(self, task: str) -> None:
        with self._lock:
            index = self._live.get(task)
            if index is None:
                return
            slug = version_slug(index.model_version)
            save_snapshot(index, self._task_dir(task) / slug / DATA_NAME)
            _write_json_atomic(self._task_dir(task) / LIVE_NAME, {"slug": slug, "model_version": index.model_version})

    def close(self) -> None:
        for task in list(self._live):
            self.checkpoint(task)
        self._live.clear()


def _write_json_atomic(path: Path, payload: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w") as f:
        json.dump(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
