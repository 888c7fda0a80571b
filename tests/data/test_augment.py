import numpy as np

from model_store.preprocessing import normalize
from ufo.data.augment import AugmentConfig, augment_batch
from ufo.tasks import TASK_SPECS


def _pixels(batch: int = 4, height: int = 12, width: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


def test_off_is_plain_normalisation():
    pixels = _pixels()
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(augment_batch(pixels, None, rng), normalize(pixels))
    np.testing.assert_array_equal(augment_batch(pixels, AugmentConfig.off(), rng), normalize(pixels))


def test_flip_only_mirrors_every_image():
    pixels = _pixels()
    out = augment_batch(pixels, AugmentConfig(flip_p=1.0), np.random.default_rng(0))
    np.testing.assert_allclose(out, normalize(pixels[:, :, ::-1]), atol=1e-5)


def test_translation_pads_with_zeros_and_keeps_content():
    pixels = np.full((64, 16, 16, 3), 200, dtype=np.uint8)
    out = augment_batch(pixels, AugmentConfig(flip_p=0.0, translate=0.25), np.random.default_rng(1))
    padded = np.isclose(out, -1.0).any(axis=(1, 2, 3))  # black (0) padding somewhere
    assert padded.mean() > 0.5
    assert np.isclose(out, (200 - 127.5) / 127.5, atol=1e-4).mean() > 0.6


def test_presets_shapes_range_and_determinism():
    pixels = _pixels(batch=6)
    for cfg in (spec.augment for spec in TASK_SPECS.values()):
        a = augment_batch(pixels, cfg, np.random.default_rng(5))
        b = augment_batch(pixels, cfg, np.random.default_rng(5))
        assert a.shape == (6, 3, 12, 8) and a.dtype == np.float32
        assert a.min() >= -1.0 and a.max() <= 1.0
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, augment_batch(pixels, cfg, np.random.default_rng(6)))


def test_erasing_changes_a_box():
    pixels = np.full((8, 20, 20, 3), 128, dtype=np.uint8)
    cfg = AugmentConfig(flip_p=0.0, erase_p=1.0, erase_area=(0.1, 0.1))
    changed = ~np.isclose(augment_batch(pixels, cfg, np.random.default_rng(2)), (128 - 127.5) / 127.5)
    fraction = changed.any(axis=1).mean(axis=(1, 2))
    assert np.all((fraction > 0.05) & (fraction < 0.2))
