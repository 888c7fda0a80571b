"""The preprocessing contract, defined once: how an image becomes a model's input.

The paper's recipe: RGB, a bicubic resize of the uint8 image to the model's (H, W) with no crop, then
(x - mean) / std per channel with mean = std = 127.5 (pixels in [-1, 1]). Training (`ufo.data.images`), the
export (parity images, the manifest's fields) and the service (`service.inference.preprocess`) all call these
functions; the manifest records mean, std and interpolation per model version, with these values as its
defaults, so a model trained otherwise says so in its manifest and is fed accordingly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

PAPER_MEAN: tuple[float, float, float] = (127.5, 127.5, 127.5)
PAPER_STD: tuple[float, float, float] = (127.5, 127.5, 127.5)
INTERPOLATIONS: dict[str, Image.Resampling] = {"bicubic": Image.Resampling.BICUBIC}
PAPER_INTERPOLATION = "bicubic"
WIDE_GREY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})  # scaled to 8 bits before RGB


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB of a PIL image: grey becomes 3 equal channels, alpha is dropped, 16/32-bit grey is scaled to 8 bits
    (16-bit by its full range, 32-bit by its peak) instead of being clipped."""
    if image.mode == "RGB":
        return image
    if image.mode in WIDE_GREY_MODES:
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        image = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8))
    return image.convert("RGB")


def resize_rgb(image: Image.Image, size: Sequence[int], interpolation: str = PAPER_INTERPOLATION) -> np.ndarray:
    """uint8 [H, W, 3]: `image` as RGB, resized to size = (H, W), no crop (the aspect ratio is not kept: the
    models are trained so)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unsupported interpolation {interpolation!r}; known: {sorted(INTERPOLATIONS)}")
    height, width = int(size[0]), int(size[1])
    rgb = to_rgb(image)
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), INTERPOLATIONS[interpolation])
    return np.asarray(rgb, dtype=np.uint8)


def normalize(pixels: np.ndarray, mean: Sequence[float] = PAPER_MEAN, std: Sequence[float] = PAPER_STD
              ) -> np.ndarray:
    """uint8 (or float 0..255) [..., H, W, 3] -> float32 [..., 3, H, W] as (x - mean) / std per channel."""
    array = np.asarray(pixels, dtype=np.float32)
    if array.ndim < 3 or array.shape[-1] != 3:
        raise ValueError(f"expected pixels [..., H, W, 3], got shape {array.shape}")
    scaled = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(np.moveaxis(scaled, -1, -3))
