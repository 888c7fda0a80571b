"""Kept source images, content-addressed, so a model upgrade can re-embed the gallery.

Layout: `<root>/<task>/<sha256[:2]>/<sha256>` (the gateway keeps images with this class too:
`service.core.kept_images`), root = `worker.images_dir` or `data_dir/images`; on shared storage in
distributed mode. An item's `image_ref` is the sha256 of its image bytes. Writes go to a temporary name and
are moved into place (a reader never sees half a file; the same content is written once); reads check the
hash, so a corrupted file is reported, never embedded.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

_SHA256 = re.compile(r"[0-9a-f]{64}")


class ImageCorrupted(RuntimeError):
    """A kept image whose bytes no longer hash to its name."""


class ImageKeeper:
    """put(bytes) → sha256, get(sha256) → bytes, for one task."""

    def __init__(self, root: Path, task: str):
        self.root = Path(root)
        self.task = task

    def path(self, ref: str) -> Path:
        """Where the image with content hash `ref` lies."""
        if not _SHA256.fullmatch(ref):
            raise ValueError(f"image ref must be a lowercase sha256 hex digest, got {ref!r}")
        return self.root / self.task / ref[:2] / ref

    def put(self, data: bytes) -> str:
        """Keep `data` (atomic; a no-op when already kept); return its sha256."""
        ref = hashlib.sha256(data).hexdigest()
        path = self.path(ref)
        if path.exists():
            return ref
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{ref}.tmp-{os.getpid()}-{time.monotonic_ns()}")
        try:
            with tmp.open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return ref

    def get(self, ref: str) -> bytes | None:
        """The image bytes, None when not kept; ImageCorrupted when they do not hash to `ref`."""
        try:
            data = self.path(ref).read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != ref:
            raise ImageCorrupted(f"kept image {self.path(ref)} does not match its sha256: refusing to embed it")
        return data

    def has(self, ref: str) -> bool:
        return self.path(ref).is_file()
