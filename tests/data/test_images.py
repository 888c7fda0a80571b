from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.trees import write_image
from ufo.data.images import ImageCache, load_image, preprocess
from ufo.data.types import DataError


def test_load_image_shape_range_and_constant_values(tmp_path: Path):
    pixels = np.zeros((10, 6, 3), dtype=np.uint8)
    pixels[:5] = 255  # top half white, bottom half black
    Image.fromarray(pixels).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png", size=(20, 12))
    assert out.shape == (3, 20, 12) and out.dtype == np.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert np.all(out[:, 0] == 1.0) and np.all(out[:, -1] == -1.0)  # (255 - 127.5) / 127.5, (0 - 127.5) / 127.5


def test_load_image_is_bicubic_resize_then_normalisation(tmp_path: Path):
    path = write_image(tmp_path / "b.png", seed=3, size=(9, 7))
    reference = np.asarray(Image.open(path).convert("RGB").resize((5, 11), Image.BICUBIC), dtype=np.float32)
    expected = ((reference - 127.5) / 127.5).transpose(2, 0, 1)
    np.testing.assert_array_equal(load_image(path, (11, 5)), expected)
    bilinear = np.asarray(Image.open(path).convert("RGB").resize((5, 11), Image.BILINEAR), dtype=np.float32)
    assert not np.array_equal(expected, ((bilinear - 127.5) / 127.5).transpose(2, 0, 1))


def test_grey_image_becomes_three_equal_channels(tmp_path: Path):
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(8, 6) * 5, mode="L").save(tmp_path / "g.pgm")
    out = load_image(tmp_path / "g.pgm", (8, 6))
    assert out.shape == (3, 8, 6)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_allclose(out[0, 0, :3], (np.array([0, 5, 10]) - 127.5) / 127.5)


def test_preprocess_matches_load_image_and_handles_alpha(tmp_path: Path):
    path = write_image(tmp_path / "c.png", seed=4)
    with Image.open(path) as image:
        np.testing.assert_array_equal(preprocess(image.convert("RGBA"), (4, 4)), load_image(path, (4, 4)))


def test_corrupt_and_missing_images_raise_data_error_naming_the_file(tmp_path: Path):
    path = write_image(tmp_path / "d.jpg", seed=5, size=(32, 32))
    path.write_bytes(path.read_bytes()[:40])  # truncated JPEG
    with pytest.raises(DataError, match="d.jpg"):
        load_image(path, (8, 8))
    (tmp_path / "e.png").write_bytes(b"hello, not a png")
    with pytest.raises(DataError, match="unreadable image .*e.png"):
        load_image(tmp_path / "e.png", (8, 8))
    with pytest.raises(DataError, match="missing image .*f.png"):
        load_image(tmp_path / "f.png", (8, 8))


def test_image_cache_matches_load_image_and_decodes_once(tmp_path: Path):
    paths = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(4)]
    cache = ImageCache(paths, (6, 5))
    batch = cache.normalized([2, 0, 2])
    assert batch.shape == (3, 3, 6, 5)
    np.testing.assert_array_equal(batch[0], load_image(paths[2], (6, 5)))
    np.testing.assert_array_equal(batch[1], load_image(paths[0], (6, 5)))
    paths[2].unlink()  # already in memory: no second read
    np.testing.assert_array_equal(cache.normalized([cache.row_of(paths[2])])[0], batch[0])
    paths[3].write_bytes(b"broken")
    with pytest.raises(DataError, match="3.png"):
        cache.preload(workers=2)
