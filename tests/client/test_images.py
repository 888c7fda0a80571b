"""Image inputs: arrays become lossless PNGs (our encoder, read back by PIL), PIL images of any mode are sent,
bad inputs say what is wrong, and the package works with numpy, PIL and torch absent."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.service.api.conftest import ROOT
from ufo_client.images import array_png, image_bytes, vector


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 2), (5, 7, 3), (5, 7, 4), (1, 1)])
def test_uint8_arrays_are_written_as_lossless_png(shape: tuple[int, ...]) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    back = decoded(array_png(pixels))
    assert np.array_equal(back, pixels.reshape(back.shape))


def test_other_dtypes_are_converted_to_8_bit() -> None:
    assert np.array_equal(decoded(array_png(np.array([[0.0, 0.5, 1.0]]))), [[0, 128, 255]])
    assert np.array_equal(decoded(array_png(np.array([[True, False]]))), [[255, 0]])
    assert np.array_equal(decoded(array_png(np.array([[0, 7, 255]], dtype=np.int64))), [[0, 7, 255]])
    strided = np.arange(24, dtype=np.uint8).reshape(4, 6)[:, ::2]  # not contiguous
    assert np.array_equal(decoded(array_png(strided)), strided)


@pytest.mark.parametrize(("array", "message"), [
    (np.array([[0.0, 1.5]]), r"values in \[0, 1\]"), (np.array([[np.nan]]), r"values in \[0, 1\]"),
    (np.array([[300]]), r"\[0, 255\]"), (np.array([[-1]]), r"\[0, 255\]"),
    (np.zeros((2, 2, 5), dtype=np.uint8), "shape"), (np.zeros(4, dtype=np.uint8), "shape"),
    (np.zeros((0, 3), dtype=np.uint8), "shape"), (np.zeros((2, 2), dtype=np.complex64), "dtype"),
])
def test_bad_arrays_are_refused_with_a_reason(array: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        image_bytes(array)


def test_pil_images_of_any_mode() -> None:
    grey = Image.linear_gradient("L").resize((8, 6))
    assert np.array_equal(decoded(image_bytes(grey)), np.asarray(grey))
    floats = grey.convert("F")  # PNG cannot hold 32-bit float pixels: sent as RGB
    assert decoded(image_bytes(floats)).shape == (6, 8, 3)


def test_unsupported_inputs(tmp_path) -> None:
    with pytest.raises(TypeError, match="unsupported image type float"):
        image_bytes(3.5)
    path = tmp_path / "text.txt"
    path.write_text("x")
    with open(path) as text, pytest.raises(TypeError, match="binary mode"):
        image_bytes(text)
    with pytest.raises(ValueError, match="empty"):
        image_bytes(io.BytesIO())
    assert vector(np.array([1.0, 2.0])) == [1.0, 2.0] and vector((1.0,)) == [1.0]


def test_the_package_needs_neither_numpy_nor_pil_nor_torch() -> None:
    script = (
        "import sys\n"
        "for name in ('numpy', 'PIL', 'torch'): sys.modules[name] = None  # any import of them fails\n"
        "import ufo_client\n"
        "from ufo_client import calls\n"
        "call = calls.search('face', image=b'\\x89PNG', k=3, filter={'a': 1})\n"
        "print(call.method, call.path, sorted(call.json))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["POST", "/v1/tasks/face/search", "['filter',", "'image',", "'k']"]
