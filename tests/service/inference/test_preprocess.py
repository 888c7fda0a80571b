"""Preprocessing: the training recipe exactly, bad bytes refused with clear typed errors, parity."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_store.manifest import load_parity, read_manifest
from model_store.parity import cosine_similarities
from service.inference.base import ModelInfo
from service.inference.embedded import EmbeddedBackend
from service.inference.errors import InvalidImage, InvalidInput
from service.inference.preprocess import preprocess_image, preprocess_many
from ufo.data.images import preprocess as training_preprocess

from .conftest import INPUT_SIZE, MODELS

CONFIG = ModelInfo(
    task="face", model_name="m", version=1, embedding_dim=16, input_size=INPUT_SIZE, mean=(127.5,) * 3,
    std=(127.5,) * 3, interpolation="bicubic", verification_threshold=None, params=0, flops=0,
)


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def photo(size: tuple[int, int] = (50, 70), seed: int = 0) -> np.ndarray:
    """uint8 RGB [H,W,3] with smooth structure (resampling differences would show)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(size[0] // 5 + 1, size[1] // 5 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(low, 5, axis=0), 5, axis=1)[: size[0], : size[1]]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width×height RGB, with a tiny IDAT: built by hand, nothing big allocated."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_shape_dtype_and_equal_to_the_training_recipe() -> None:
    image = Image.fromarray(photo((50, 70)))
    pixels = preprocess_image(encode(image), CONFIG)
    assert pixels.shape == (3, *INPUT_SIZE) and pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, training_preprocess(image, INPUT_SIZE))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "1", "I;16"])
def test_base_modes_match_the_training_recipe(mode: str) -> None:
    image = Image.fromarray(photo((40, 30))).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image, dtype=np.uint16) * 257)
    data = encode(image)
    with Image.open(io.BytesIO(data)) as reference:
        expected = training_preprocess(reference, INPUT_SIZE)
    np.testing.assert_array_equal(preprocess_image(data, CONFIG), expected)


def test_cmyk_jpeg_and_tiff_work() -> None:
    image = Image.fromarray(photo((40, 30))).convert("CMYK")
    for fmt in ("TIFF", "JPEG"):
        data = encode(image, fmt)
        with Image.open(io.BytesIO(data)) as reference:
            expected = training_preprocess(reference, INPUT_SIZE)
        np.testing.assert_array_equal(preprocess_image(data, CONFIG), expected)


def test_exif_orientation_is_applied() -> None:
    array = photo((20, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    tagged = preprocess_image(encode(Image.fromarray(array), exif=exif), CONFIG)
    upright = preprocess_image(np.ascontiguousarray(np.rot90(array, k=-1)), CONFIG)
    np.testing.assert_array_equal(tagged, upright)


def test_decoded_arrays_equal_encoded_bytes() -> None:
    array = photo((45, 33))
    np.testing.assert_array_equal(preprocess_image(array, CONFIG), preprocess_image(encode(Image.fromarray(array)),
                                                                                    CONFIG))
    grey = array[:, :, 0]
    np.testing.assert_array_equal(preprocess_image(grey, CONFIG), preprocess_image(grey[:, :, None], CONFIG))
    with pytest.raises(InvalidImage, match="uint8"):
        preprocess_image(array.astype(np.float32), CONFIG)
    with pytest.raises(InvalidImage, match=r"\[H,W\]"):
        preprocess_image(np.zeros((4, 4, 2), np.uint8), CONFIG)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "zero bytes"),
        (b"name,score\nalice,3\n" * 20, "not an image"),
        (png_header_only(0, 5), "header is corrupt"),
    ],
    ids=["empty", "text", "zero-width-png"],
)
def test_bad_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        preprocess_image(data, CONFIG)


def test_truncated_jpeg_is_refused() -> None:
    data = encode(Image.fromarray(photo((120, 90))), "JPEG", quality=90)
    with pytest.raises(InvalidImage, match="truncated"):
        preprocess_image(data[: len(data) // 2], CONFIG)


def test_huge_header_is_refused_before_decoding() -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidImage, match="too many pixels"):
        preprocess_image(png_header_only(20_000, 20_000), CONFIG)  # 400 MP: PIL's bomb check
    with pytest.raises(InvalidImage, match="max_pixels 1000"):
        preprocess_image(png_header_only(100, 100), CONFIG, max_pixels=1000)  # our own, configurable
    with pytest.raises(InvalidImage, match="max_pixels"):
        preprocess_image(np.zeros((100, 100, 3), np.uint8), CONFIG, max_pixels=1000)
    assert time.perf_counter() - started < 1.0, "refusing a header must not decode it"


def test_unsupported_mode_and_format_are_refused() -> None:
    floats = Image.fromarray(np.zeros((8, 8), np.float32))  # mode F
    with pytest.raises(InvalidImage, match="unsupported image mode 'F'"):
        preprocess_image(encode(floats, "TIFF"), CONFIG)
    with pytest.raises(InvalidImage, match="supported format"):
        preprocess_image(encode(Image.fromarray(photo((16, 16))), "ICO"), CONFIG)


def test_preprocess_many_names_the_bad_image() -> None:
    good = encode(Image.fromarray(photo()))
    batch = asyncio.run(preprocess_many([good, photo((10, 12))], CONFIG))
    assert batch.shape == (2, 3, *INPUT_SIZE)
    with pytest.raises(InvalidImage, match="image 1: .*zero bytes") as info:
        asyncio.run(preprocess_many([good, b"", good], CONFIG))
    assert info.value.index == 1
    with pytest.raises(InvalidInput, match="no images"):
        asyncio.run(preprocess_many([], CONFIG))


@pytest.mark.anyio
async def test_parity_images_as_png_reproduce_the_manifest_embeddings(repo: Path) -> None:
    async with EmbeddedBackend(repo) as backend:
        for task, name in MODELS.items():
            version_dir = repo / name / "1"
            manifest = read_manifest(version_dir / "manifest.json")
            images, expected = load_parity(version_dir, manifest)
            pngs = [encode(Image.fromarray(image)) for image in images]
            actual = await backend.embed_images(task, pngs)
            assert cosine_similarities(actual, expected).min() >= 0.9999, task
