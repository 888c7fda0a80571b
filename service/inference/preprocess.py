"""Image bytes (or decoded arrays) → float32 pixels [3,H,W], exactly as the manifest says.

The recipe is `model_store.preprocessing`, the one contract training and the export use too: RGB, a resize of
the uint8 image to (H, W) with no crop, then (x − mean) / std per channel, as the manifest says. The service
adds what only untrusted input needs: EXIF orientation (a phone photo is embedded upright) and the checks below.

Untrusted bytes are checked before they cost memory: empty input, unknown formats, and headers that
claim more than `max_pixels` are refused from the header alone (PIL's `Image.open` is lazy), before the
full decode; truncated files are caught by forcing the load. Every refusal is an `InvalidImage` whose
message says what was wrong. The work is CPU-bound and releases the GIL in PIL's C code: callers run it
off the event loop, `preprocess_many` does so with a thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model_store.preprocessing import WIDE_GREY_MODES, normalize, resize_rgb
from service.inference.errors import InvalidImage, InvalidInput

log = logging.getLogger(__name__)

# 40 MP (e.g. 8000×5000) covers any camera; an RGBA decode of it is 160 MB. PIL itself refuses images
# over 2 × Image.MAX_IMAGE_PIXELS (~179 MP) while reading the header, whatever this is set to.
DEFAULT_MAX_PIXELS = 40_000_000
# Formats we decode: common photo formats (JPEG covers MPO) plus PGM/PPM (the ORL faces). Fewer parsers, less
# attack surface.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
_RGB_CONVERTIBLE = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
_EXIF_ORIENTATION = 0x0112

ImageInput = bytes | bytearray | memoryview | np.ndarray | Image.Image


class PreprocessConfig(Protocol):
    """The manifest fields preprocessing reads (a `Manifest` and a `ModelInfo` both have them)."""

    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str


def open_image(data: bytes | bytearray | memoryview, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes fully, refusing bad input with InvalidImage before any large allocation."""
    if len(data) == 0:
        raise InvalidImage("empty body: zero bytes is not an image")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise InvalidImage(f"too many pixels: {exc}") from None
    except UnidentifiedImageError:
        raise InvalidImage(f"not an image in a supported format ({', '.join(ALLOWED_FORMATS)}), "
                           "or its header is corrupt") from None
    except (OSError, SyntaxError, ValueError) as exc:  # a header that parses halfway
        raise InvalidImage(f"corrupt image header: {exc}") from None
    check_size(image.size, max_pixels)
    try:
        image.load()  # force the full decode here: lazy images fail later, far from the cause
    except Image.DecompressionBombError as exc:
        raise InvalidImage(f"too many pixels: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"truncated or corrupt {image.format} data: {exc}") from None
    return image


def check_size(size: tuple[int, int], max_pixels: int) -> None:
    """InvalidImage if a (width, height) is empty or holds more than `max_pixels`."""
    width, height = size
    if width < 1 or height < 1:
        raise InvalidImage(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise InvalidImage(f"too many pixels: {width}x{height} = {width * height} > max_pixels {max_pixels}")


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag, if any (a malformed EXIF block is ignored, not fatal)."""
    try:
        if image.getexif().get(_EXIF_ORIENTATION, 1) == 1:
            return image
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 - EXIF parsers raise anything; the pixels are still good
        log.debug("ignoring unreadable EXIF data: %s", exc)
        return image


def check_mode(image: Image.Image) -> Image.Image:
    """InvalidImage unless the contract's `to_rgb` converts this PIL mode (grey, palette, alpha, CMYK, wide
    grey...)."""
    if image.mode not in _RGB_CONVERTIBLE and image.mode not in WIDE_GREY_MODES:
        raise InvalidImage(f"unsupported image mode {image.mode!r}")
    return image


def image_from_array(array: np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A decoded uint8 image: [H,W] grey, [H,W,1], [H,W,3] RGB or [H,W,4] RGBA."""
    if array.dtype != np.uint8:
        raise InvalidImage(f"decoded images must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise InvalidImage(f"decoded images must be [H,W], [H,W,3] or [H,W,4], got {list(array.shape)}")
    check_size((array.shape[1], array.shape[0]), max_pixels)
    return Image.fromarray(np.ascontiguousarray(array))


def preprocess_image(
    image: ImageInput, config: PreprocessConfig, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """One image (encoded bytes, a decoded uint8 array, or a PIL image) → float32 [3,H,W]."""
    if isinstance(image, bytes | bytearray | memoryview):
        decoded = upright(open_image(image, max_pixels))
    elif isinstance(image, np.ndarray):
        decoded = image_from_array(image, max_pixels)
    elif isinstance(image, Image.Image):
        check_size(image.size, max_pixels)
        decoded = image
    else:
        raise InvalidImage(f"expected image bytes or a decoded array, got {type(image).__name__}")
    try:
        rgb = resize_rgb(check_mode(decoded), config.input_size, config.interpolation)
    except OSError as exc:  # a mode PIL lists but cannot convert after all
        raise InvalidImage(f"cannot convert {decoded.mode!r} image to RGB: {exc}") from None
    return normalize(rgb, config.mean, config.std)


async def preprocess_many(
    images: Sequence[ImageInput],
    config: PreprocessConfig,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    executor: Executor | None = None,
) -> np.ndarray:
    """Preprocess `images` concurrently on `executor` (the loop's default pool if None) → [N,3,H,W].

    The first bad image raises its InvalidImage, with `index` set when there are several."""
    if len(images) == 0:
        raise InvalidInput("no images to preprocess")
    loop = asyncio.get_running_loop()
    work = functools.partial(preprocess_image, config=config, max_pixels=max_pixels)
    results = await asyncio.gather(*(loop.run_in_executor(executor, work, image) for image in images),
                                   return_exceptions=True)
    for index, result in enumerate(results):
        if isinstance(result, InvalidImage) and len(images) > 1:
            raise InvalidImage(str(result), index=index) from None
        if isinstance(result, BaseException):
            raise result
    return np.stack(results)  # type: ignore[arg-type]
