"""Shared pieces of the synthetic re-id generators: the colour palette, per-camera styles and camera effects.

A camera changes how every identity looks: its background, its viewpoint mix, the subject's scale, a colour
cast and brightness, blur and sensor noise, JPEG quality. Identities draw their colours from one small shared
palette (with a little jitter), so no single colour identifies anyone: retrieval has to combine cues and
survive the camera change.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]

PALETTE: dict[str, RGB] = {
    "white": (225, 225, 220), "black": (30, 30, 32), "grey": (120, 120, 125), "silver": (175, 178, 182),
    "red": (180, 35, 40), "blue": (40, 70, 170), "navy": (25, 35, 80), "green": (40, 120, 60),
    "yellow": (220, 190, 40), "brown": (110, 70, 40), "orange": (220, 120, 30), "pink": (215, 120, 160),
    "purple": (110, 50, 140), "beige": (200, 180, 140), "teal": (30, 130, 130),
}


def pick_colour(rng: np.random.Generator, names: tuple[str, ...] | None = None, jitter: int = 14) -> RGB:
    """A palette colour (from `names`, or any) with a small per-identity jitter."""
    names = names or tuple(PALETTE)
    base = np.asarray(PALETTE[names[int(rng.integers(len(names)))]])
    return tuple(int(v) for v in np.clip(base + rng.integers(-jitter, jitter + 1, 3), 0, 255))  # type: ignore[return-value]


def shade(colour: RGB, factor: float) -> RGB:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)  # type: ignore[return-value]


def mute(colour: RGB, amount: float) -> RGB:
    """Blend toward mid grey: scenes are duller than clothes and paint, as in real street footage."""
    return tuple(int(c * (1 - amount) + 128 * amount) for c in colour)  # type: ignore[return-value]


@dataclass(frozen=True)
class CameraStyle:
    camera: int  # 1-based id written into file names
    wall: RGB  # upper background
    ground: RGB  # lower background
    horizon: float  # fraction of the height where the ground starts
    clutter: tuple[tuple[float, float, float, float, RGB], ...]  # boxes (x0, y0, x1, y1 as fractions), colour
    gain: tuple[float, float, float]  # colour cast per channel
    brightness: float
    blur: float  # Gaussian blur radius in output pixels
    noise: float  # sensor noise std in grey levels
    scale: float  # subject size relative to the frame
    quality: int  # JPEG quality
    views: tuple[float, ...]  # probability of each viewpoint


def make_camera_styles(rng: np.random.Generator, count: int, num_views: int) -> list[CameraStyle]:
    """`count` distinct cameras; each prefers one viewpoint (so cameras really change appearance)."""
    styles = []
    for index in range(count):
        views = np.full(num_views, 0.25 / max(num_views - 1, 1))
        views[index % num_views] = 0.75
        clutter = tuple(
            (*sorted(rng.uniform(0, 1, 2)), *sorted(rng.uniform(0, 0.7, 2)), mute(pick_colour(rng, jitter=40), 0.45))
            for _ in range(int(rng.integers(2, 6)))
        )
        styles.append(CameraStyle(
            camera=index + 1,
            wall=mute(pick_colour(rng, jitter=40), 0.55),
            ground=shade(pick_colour(rng, ("grey", "beige", "brown", "silver", "green"), jitter=30), 0.8),
            horizon=float(rng.uniform(0.55, 0.8)),
            clutter=tuple((c[0], c[2], c[1], c[3], c[4]) for c in clutter),
            gain=tuple(float(g) for g in rng.uniform(0.85, 1.15, 3)),  # type: ignore[arg-type]
            brightness=float(rng.uniform(0.75, 1.15)),
            blur=float(rng.uniform(0.0, 0.9)),
            noise=float(rng.uniform(2.0, 9.0)),
            scale=float(rng.uniform(0.78, 0.97)),
            quality=int(rng.integers(70, 95)),
            views=tuple(float(v) for v in views / views.sum()),
        ))
    return styles


def draw_background(style: CameraStyle, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """The camera's scene (wall with clutter, ground), with a small per-frame offset of the clutter."""
    width, height = size
    image = Image.new("RGB", size, style.wall)
    draw = ImageDraw.Draw(image)
    horizon = int(style.horizon * height)
    dx = float(rng.uniform(-0.05, 0.05))
    for x0, y0, x1, y1, colour in style.clutter:
        draw.rectangle([(x0 + dx) * width, y0 * horizon, (x1 + dx) * width, y1 * horizon + 1], fill=colour)
    draw.rectangle([0, horizon, width, height], fill=style.ground)
    return image


def pick_view(style: CameraStyle, rng: np.random.Generator) -> int:
    return int(rng.choice(len(style.views), p=style.views))


def apply_camera(image: Image.Image, style: CameraStyle, rng: np.random.Generator) -> Image.Image:
    """Blur, colour cast, brightness (with per-frame jitter) and sensor noise of `style`."""
    radius = style.blur * float(rng.uniform(0.7, 1.3))
    if radius > 0.2:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    gain = np.asarray(style.gain, dtype=np.float32) * style.brightness * float(rng.uniform(0.9, 1.1))
    pixels = np.asarray(image, dtype=np.float32) * gain
    pixels += rng.normal(0.0, style.noise, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def save_jpeg(image: Image.Image, path: Path, quality: int) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    path.write_bytes(buffer.getvalue())
