"""Enroll a folder of labelled images at start (`enroll: {face: data/demo/face/test}` or `ufo serve --enroll`).

`<folder>/<label>/<image>` becomes item `<label>/<image file name>` with metadata `{"label": <label>}`. Upserts,
so restarting with the same folder changes nothing; items already stored under the served model version are
skipped without decoding. This is how the first run gets a demo gallery to search.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from service.core import gallery
from service.core.gallery import ItemInput
from service.core.state import Runtime, TaskRuntime

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm"})


def list_labelled_images(folder: Path) -> list[tuple[str, Path]]:
    """(label, path) for every image one folder below `folder`, sorted."""
    if not folder.is_dir():
        raise FileNotFoundError(f"enroll folder {folder} does not exist")
    return [(sub.name, path) for sub in sorted(p for p in folder.iterdir() if p.is_dir())
            for path in sorted(sub.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]


async def missing_items(task: TaskRuntime, images: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """The images not yet stored under the served model version."""
    missing = []
    for label, path in images:
        item = await task.store.get(f"{label}/{path.name}")
        if item is None or item.model_version != task.model_version:
            missing.append((label, path))
    return missing


async def enroll_folder(runtime: Runtime, task_name: str, folder: Path) -> int:
    """Upsert the folder's images into the task's gallery; returns how many were written."""
    task = runtime.task(task_name)
    images = await missing_items(task, await asyncio.to_thread(list_labelled_images, Path(folder)))
    batch = runtime.settings.limits.max_images_per_request
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        data = await asyncio.to_thread(lambda c=chunk: [path.read_bytes() for _, path in c])
        items = [ItemInput(f"{label}/{path.name}", image, None, {"label": label})
                 for (label, path), image in zip(chunk, data, strict=True)]
        await gallery.enroll(runtime, task, items)
    log.info("task %s: enrolled %d new images from %s (%d items in the index)", task_name, len(images), folder,
             len(task.index) if task.index is not None else 0)
    return len(images)


async def enroll_configured(runtime: Runtime) -> None:
    """Enroll every folder the settings name, then log how to search the gallery with curl."""
    settings = runtime.settings
    for task_name, folder in settings.enroll.items():
        await enroll_folder(runtime, task_name, folder)
        example = next(iter(list_labelled_images(Path(folder))), None)
        if example is not None:
            log.info("try: curl -s -X POST http://%s:%d/v1/tasks/%s/search -F image=@%s -F k=3", settings.host,
                     settings.port, task_name, example[1])
