"""The visual search page and the item thumbnails it shows.

- `GET /ui` and `GET /ui/<file>`: the page, plain HTML/CSS/JS from `service/ui/`, served by the gateway
  itself (same origin, same API keys; a Content-Security-Policy of 'self' keeps every load on the gateway).
  The page holds no secret: it asks the person for an API key and sends it as `X-API-Key`.
- `GET /v1/tasks/{task}/thumbnails/{item_id}?size=N`: a JPEG of at most N×N pixels (N ≤ 512) from the item's
  kept source image (`kept_images.py`), read scope. Thumbnails are cached in memory by (task, image hash,
  size): content-addressed, so an entry never goes stale; the ETag lets the browser revalidate for free.
  An item enrolled as a bare embedding (or whose kept image is gone) gets a placeholder SVG instead, marked
  by the `X-UFO-Thumbnail` header.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections import OrderedDict
from html import escape
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from PIL import Image

from model_store.preprocessing import to_rgb
from service.api.deps import ReadScope, RuntimeDep, TaskDep
from service.api.errors import ApiError
from service.api.routes.responses import COMMON, problems
from service.core import gallery
from service.core.kept_images import image_keeper
from service.inference.errors import InvalidImage
from service.inference.preprocess import check_mode, open_image, upright

UI_DIR = Path(__file__).resolve().parents[2] / "ui"
ASSET_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
                "Referrer-Policy": "no-referrer"}
MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 16, 512, 160
CACHE_BYTES = 32 * 1024 * 1024
_REF = re.compile(r"[0-9a-f]{64}")

router = APIRouter(tags=["ui"])


@router.get("/ui", include_in_schema=False)
async def ui_page() -> Response:
    """The visual search page."""
    return asset_response("index.html")


@router.get("/ui/{name}", include_in_schema=False)
async def ui_asset(name: str) -> Response:
    """A file of the page (script, style sheet, icon)."""
    return asset_response(name)


def asset_response(name: str) -> Response:
    """A file straight from `service/ui/` (a flat folder: no sub-paths, known types only)."""
    path = UI_DIR / name
    if Path(name).name != name or path.suffix not in ASSET_TYPES or not path.is_file():
        raise ApiError(404, f"the page has no file {name!r}" if UI_DIR.is_dir() else
                       f"the page's files are not installed (expected them in {UI_DIR})")
    return Response(path.read_bytes(), media_type=ASSET_TYPES[path.suffix], headers=PAGE_HEADERS)


class ThumbnailCache:
    """JPEG bytes by (task, image hash, size), least recently used first out, bounded in total bytes."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.entries: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()

    def get(self, key: tuple[str, str, int]) -> bytes | None:
        data = self.entries.get(key)
        if data is not None:
            self.entries.move_to_end(key)
        return data

    def put(self, key: tuple[str, str, int], data: bytes) -> None:
        if len(data) > self.max_bytes or key in self.entries:
            return
        self.entries[key] = data
        self.size += len(data)
        while self.size > self.max_bytes:
            _, dropped = self.entries.popitem(last=False)
            self.size -= len(dropped)


def thumbnail_cache(request: Request) -> ThumbnailCache:
    """The app's cache, made on first use."""
    state = request.app.state
    if getattr(state, "thumbnails", None) is None:
        state.thumbnails = ThumbnailCache()
    return state.thumbnails


def make_thumbnail(path: Path, size: int, max_pixels: int) -> bytes | None:
    """A JPEG at most size×size of the image at `path`, or None when it is gone or unreadable."""
    try:
        image = to_rgb(check_mode(upright(open_image(path.read_bytes(), max_pixels))))
    except (OSError, InvalidImage):
        return None
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def placeholder(size: int, reason: str) -> Response:
    """A grey square saying why there is no picture (not cached: the item may get an image later)."""
    label = escape(reason)
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 100 100" '
           f'role="img" aria-label="{label}"><rect width="100" height="100" fill="#e4e7eb"/>'
           f'<text x="50" y="54" font-family="sans-serif" font-size="9" text-anchor="middle" fill="#52606d">'
           f"{label}</text></svg>")
    return Response(svg, media_type="image/svg+xml",
                    headers={"X-UFO-Thumbnail": "placeholder", "Cache-Control": "no-store"})


@router.get("/v1/tasks/{task}/thumbnails/{item_id:path}", dependencies=[ReadScope], response_class=Response,
            responses={200: {"description": "JPEG thumbnail, or an SVG placeholder for an item with no kept image",
                             "content": {"image/jpeg": {}, "image/svg+xml": {}}}, 304: {"description": "unchanged"},
                       **problems(*COMMON)})
async def item_thumbnail(
    request: Request, runtime: RuntimeDep, task: TaskDep, item_id: str,
    size: Annotated[int, Query(ge=MIN_SIZE, le=MAX_SIZE, description="longest side in pixels")] = DEFAULT_SIZE,
) -> Response:
    """A small picture of the item's kept source image (the visual search page shows these)."""
    item = await gallery.get_item(task, item_id)
    ref = item.image_ref
    if ref is None or not _REF.fullmatch(ref):
        return placeholder(size, "embedding only")
    etag = f'"{ref[:32]}-{size}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    cache, key = thumbnail_cache(request), (task.task, ref, size)
    data = cache.get(key)
    if data is None:
        path = image_keeper(runtime.settings, task.task).path(ref)
        data = await asyncio.get_running_loop().run_in_executor(
            runtime.executor, make_thumbnail, path, size, runtime.settings.limits.max_pixels)
        if data is None:
            return placeholder(size, "image not kept")
        cache.put(key, data)
    return Response(data, media_type="image/jpeg", headers=headers)
