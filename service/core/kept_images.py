"""Enrolled source images, kept content-addressed so a model upgrade can re-embed the gallery.

The gateway keeps them with the worker's `ImageKeeper` (one layout, one writer: `<root>/<task>/<sha256[:2]>/
<sha256>`, atomic, fsynced, written once per content); root = `worker.images_dir`, default `<data_dir>/images`
(shared storage in distributed mode). The item's `image_ref` is the sha256. Off with `keep_images: false`
(an upgrade then needs clients to re-enroll, and the API says so).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.config import Settings
from service.worker.images import ImageKeeper


def images_root(settings: Settings) -> Path:
    """The folder kept images live under."""
    return Path(settings.worker.images_dir or Path(settings.data_dir) / "images")


def image_keeper(settings: Settings, task: str) -> ImageKeeper:
    return ImageKeeper(images_root(settings), task)


async def keep_image(settings: Settings, task: str, data: bytes) -> str | None:
    """Keep `data` when the settings say so; returns its ref (sha256 hex) or None."""
    if not settings.keep_images:
        return None
    return await asyncio.to_thread(image_keeper(settings, task).put, data)
