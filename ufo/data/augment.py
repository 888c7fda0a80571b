"""Training augmentation in numpy, vectorised over a batch of uint8 [B, H, W, 3] images.

One affine resampling per image does flip, random-resized crop and translation with zero padding at once
(bilinear, separable, so it is four gathers for the whole batch); then brightness/contrast jitter, then
random erasing, then the paper's normalisation. Off for evaluation: pass `augment=None` (or
`AugmentConfig.off()`) and the output equals `normalize(pixels)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model_store.preprocessing import normalize


@dataclass(frozen=True)
class AugmentConfig:
    flip_p: float = 0.5  # horizontal flip probability
    crop_scale: tuple[float, float] = (1.0, 1.0)  # crop area as a fraction of the image (random-resized crop)
    crop_ratio: tuple[float, float] = (1.0, 1.0)  # crop aspect change, sampled log-uniformly
    translate: float = 0.0  # max shift beyond the crop's free room, as a fraction of H / W (zero padded)
    brightness: float = 0.0  # pixel gain in [1 - b, 1 + b]
    contrast: float = 0.0  # blend with the image mean by a factor in [1 - c, 1 + c]
    erase_p: float = 0.0  # random erasing probability
    erase_area: tuple[float, float] = (0.02, 0.2)  # erased fraction of the image
    erase_ratio: tuple[float, float] = (0.3, 3.3)  # erased box aspect, sampled log-uniformly

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(flip_p=0.0)

    @property
    def is_off(self) -> bool:
        return self == AugmentConfig.off()




def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    low, high = np.log(bounds[0]), np.log(bounds[1])
    return np.exp(rng.uniform(low, high, n))


def _axis_coords(rng: np.random.Generator, n: int, length: int, extent: np.ndarray, shift: float) -> np.ndarray:
    """Source coordinates [n, length] for a crop of `extent` pixels placed at random, `shift` px beyond."""
    room = (length - extent) / 2 + shift * length
    centre = length / 2 + rng.uniform(-1, 1, n) * np.maximum(room, 0)
    steps = (np.arange(length) + 0.5) / length
    return centre[:, None] - extent[:, None] / 2 + steps[None, :] * extent[:, None] - 0.5


def _axis_taps(coords: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis: (low index, high index, low weight, high weight); outside reads 0."""
    low = np.floor(coords).astype(np.int64)
    frac = (coords - low).astype(np.float32)
    high = low + 1
    w_low = (1 - frac) * ((low >= 0) & (low < length))
    w_high = frac * ((high >= 0) & (high < length))
    return np.clip(low, 0, length - 1), np.clip(high, 0, length - 1), w_low, w_high


def _bilinear(pixels: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Resample [B, H, W, C] at separable coordinates ys [B, H], xs [B, W]; outside the image reads 0.

    Rows first, then columns: each gather copies whole rows or columns, far cheaper than 4 per-pixel gathers.
    """
    batch, height, width, _ = pixels.shape
    b = np.arange(batch)[:, None]
    y_low, y_high, wy_low, wy_high = _axis_taps(ys, height)
    rows = pixels[b, y_low] * wy_low[..., None, None] + pixels[b, y_high] * wy_high[..., None, None]
    x_low, x_high, wx_low, wx_high = _axis_taps(xs, width)
    rows = np.ascontiguousarray(rows.transpose(0, 2, 1, 3))  # [B, W, H, C]: gather columns as rows
    out = rows[b, x_low] * wx_low[..., None, None] + rows[b, x_high] * wx_high[..., None, None]
    return np.ascontiguousarray(out.transpose(0, 2, 1, 3))


def _resample(pixels: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    batch, height, width, _ = pixels.shape
    area = rng.uniform(cfg.crop_scale[0], cfg.crop_scale[1], batch)
    ratio = _log_uniform(rng, cfg.crop_ratio, batch)
    crop_h = np.minimum(height * np.sqrt(area / ratio), height)
    crop_w = np.minimum(width * np.sqrt(area * ratio), width)
    ys = _axis_coords(rng, batch, height, crop_h, cfg.translate)
    xs = _axis_coords(rng, batch, width, crop_w, cfg.translate)
    flip = rng.random(batch) < cfg.flip_p
    xs[flip] = xs[flip, ::-1]  # a flip is the same sampling grid read right to left
    return _bilinear(pixels, ys, xs)


def _jitter(images: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness gain g, then contrast c around the image mean m, fused: x * g * c + m * g * (1 - c)."""
    batch = images.shape[0]
    gain = rng.uniform(1 - cfg.brightness, 1 + cfg.brightness, batch).astype(np.float32)
    factor = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast, batch).astype(np.float32)
    mean = images.reshape(batch, -1).mean(axis=1)
    scale, offset = gain * factor, mean * gain * (1 - factor)
    images *= scale[:, None, None, None]
    images += offset[:, None, None, None]
    return np.clip(images, 0, 255, out=images)


def _erase(images: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    batch, height, width, channels = images.shape
    area = rng.uniform(cfg.erase_area[0], cfg.erase_area[1], batch) * height * width
    ratio = _log_uniform(rng, cfg.erase_ratio, batch)
    box_h = np.clip(np.round(np.sqrt(area * ratio)), 1, height).astype(np.int64)
    box_w = np.clip(np.round(np.sqrt(area / ratio)), 1, width).astype(np.int64)
    top = (rng.random(batch) * (height - box_h + 1)).astype(np.int64)
    left = (rng.random(batch) * (width - box_w + 1)).astype(np.int64)
    chosen = rng.random(batch) < cfg.erase_p
    images = images.copy()
    for i in np.flatnonzero(chosen):  # per-pixel noise only inside the boxes: cheap, few images
        shape = (box_h[i], box_w[i], channels)
        images[i, top[i] : top[i] + box_h[i], left[i] : left[i] + box_w[i]] = rng.uniform(0, 255, shape)
    return images


def augment_batch(pixels: np.ndarray, cfg: AugmentConfig | None, rng: np.random.Generator) -> np.ndarray:
    """uint8 [B, H, W, 3] -> augmented, normalised float32 [B, 3, H, W]; `cfg=None` means no augmentation."""
    if cfg is None or cfg.is_off:
        return normalize(pixels)
    images = _resample(pixels, cfg, rng)
    if cfg.brightness > 0 or cfg.contrast > 0:
        images = _jitter(images, cfg, rng)
    if cfg.erase_p > 0:
        images = _erase(images, cfg, rng)
    return normalize(images)
