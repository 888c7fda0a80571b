"""Enrolled source images, kept content-addressed so a model upgrade can re-embed the gallery.

`<images_dir>/<task>/<sha256[:2]>/<sha256>` (`worker.images_dir`, default `<data_dir>/images`): the item's
`image_ref` is the sha256. Writes go to a
temporary name and are moved into place, so a reader never sees half a file; an image already kept (same
content) is not written again. Off with `keep_images: false` (an upgrade then needs clients to re-enroll).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from service.config import Settings


def images_root(settings: Settings) -> Path:
    """The folder kept images live under."""
    return Path(settings.worker.images_dir or Path(settings.data_dir) / "images")


def image_path(root: Path, task: str, ref: str) -> Path:
    """Where the image with content hash `ref` is kept for `task`."""
    return Path(root) / task / ref[:2] / ref


def write_image(path: Path, data: bytes) -> None:
    """Atomic write (temp + os.replace); a no-op when the file exists (content-addressed)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{id(data)}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


async def keep_image(settings: Settings, task: str, data: bytes) -> str | None:
    """Keep `data` when the settings say so; returns its ref (sha256 hex) or None."""
    if not settings.keep_images:
        return None
    ref = hashlib.sha256(data).hexdigest()
    await asyncio.to_thread(write_image, image_path(images_root(settings), task, ref), data)
    return ref
