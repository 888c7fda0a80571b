"""Images and vectors as the API wants them, from what callers have at hand.

An image may be a path (str or os.PathLike), bytes, a binary file object, a PIL image or a numpy array.
PIL and numpy are never imported here unless the caller passes one of their objects (detected by the
object's module), so the client needs neither. Arrays are written as PNG by a small encoder of our own
(zlib + the PNG chunk layout), so an array does not need PIL either.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+alpha, RGB, RGBA)
PIL_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}


def image_bytes(image: Any) -> bytes:
    """The encoded image file for any accepted input; ValueError / TypeError / FileNotFoundError saying why not."""
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
    elif isinstance(image, str | os.PathLike):
        data = _read_file(Path(image))
    elif hasattr(image, "read"):
        data = image.read()
        if not isinstance(data, bytes):
            raise TypeError("an image file object must be opened in binary mode ('rb')")
    elif type(image).__module__.startswith("PIL."):
        data = _pil_png(image)
    elif type(image).__module__ == "numpy" and type(image).__name__ == "ndarray":
        data = array_png(image)
    else:
        raise TypeError(f"unsupported image type {type(image).__name__}: give a path, bytes, a binary file, "
                        "a PIL image or a numpy array")
    if not data:
        raise ValueError("the image is empty (0 bytes)")
    return data


def image_base64(image: Any) -> str:
    return base64.b64encode(image_bytes(image)).decode("ascii")


def _read_file(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path} (to send base64 text, decode it to bytes first)")
    return path.read_bytes()


def _pil_png(image: Any) -> bytes:
    """A PIL image as PNG (lossless); modes PNG cannot hold are converted to RGB."""
    if image.mode not in PIL_PNG_MODES:
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _as_uint8(array: Any) -> Any:
    """uint8 pixels: bool as 0/255, floats in [0, 1] scaled, integers in [0, 255] as they are."""
    import numpy as np  # present: the caller gave us one of its arrays

    a = np.asarray(array)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype.kind == "f":
        if a.size and not (np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0):
            raise ValueError("a float image array must hold finite values in [0, 1]; convert it to uint8 otherwise")
        return np.round(a * 255.0).astype(np.uint8)
    if a.dtype.kind in "iu":
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(f"an integer image array must hold values in [0, 255]; got {a.min()}..{a.max()}")
        return a.astype(np.uint8)
    raise ValueError(f"unsupported image array dtype {a.dtype}: give uint8 (or floats in [0, 1])")


def array_png(array: Any) -> bytes:
    """An (H, W) or (H, W, C) array, C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA, as an 8-bit PNG file."""
    import numpy as np

    a = _as_uint8(array)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in PNG_COLOUR_TYPES or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"an image array must be (H, W), (H, W, 1|2|3|4); got shape {a.shape}")
    height, width, channels = a.shape
    rows = np.zeros((height, 1 + width * channels), dtype=np.uint8)  # filter byte 0 (None) before each row
    rows[:, 1:] = a.reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join([PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)),
                     _chunk(b"IEND", b"")])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def vector(embedding: Any) -> Any:
    """A flat list of floats from a list, tuple or numpy array (validated by the request models)."""
    if hasattr(embedding, "tolist"):
        embedding = embedding.tolist()
    if isinstance(embedding, tuple):
        embedding = list(embedding)
    return embedding
