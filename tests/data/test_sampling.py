import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.trees import write_image
from ufo.data.sampling import IdentitySampler, ShuffleSampler, TaskStream
from ufo.data.types import Sample
from ufo.tasks import TASK_SPECS

LABELS = [0] * 5 + [1] * 2 + [2] * 4 + [3] * 1 + [4] * 6 + [5] * 3


def test_identity_sampler_p_by_k_structure():
    sampler = IdentitySampler(LABELS, p=3, k=4, seed=0)
    labels = np.asarray(LABELS)
    seen = set()
    for _ in range(4):  # two full passes over the 6 identities
        batch = labels[sampler.next_indices()].reshape(3, 4)
        assert np.all(batch == batch[:, :1])  # K images of one identity per row
        assert len(set(batch[:, 0])) == 3  # P distinct identities
        seen |= set(batch[:, 0].tolist())
    assert seen == set(range(6))


def test_identity_sampler_without_replacement_when_enough_images():
    sampler = IdentitySampler(LABELS, p=6, k=2, seed=1)
    indices = sampler.next_indices().reshape(6, 2)
    labels = np.asarray(LABELS)[indices[:, 0]]
    for row, label in zip(indices, labels, strict=True):
        if LABELS.count(int(label)) >= 2:
            assert row[0] != row[1]
    small = IdentitySampler([7, 8, 8, 8], p=2, k=3, seed=0).next_indices()  # id 7 has 1 image: replacement
    assert sorted(np.asarray([7, 8, 8, 8])[small].tolist()) == [7, 7, 7, 8, 8, 8]


def test_identity_sampler_is_seeded():
    a = [IdentitySampler(LABELS, 2, 3, seed=4).next_indices() for _ in range(2)]
    b = IdentitySampler(LABELS, 2, 3, seed=5)
    np.testing.assert_array_equal(a[0], a[1])
    assert not all(np.array_equal(IdentitySampler(LABELS, 2, 3, seed=4).next_indices(), b.next_indices())
                   for _ in range(3))
    few = np.asarray(LABELS)[IdentitySampler(LABELS, p=8, k=2).next_indices()].reshape(8, 2)
    assert set(few[:, 0].tolist()) == set(range(6)) and np.all(few == few[:, :1])  # all ids, two repeated


@pytest.mark.parametrize("make", [lambda: IdentitySampler(LABELS, 2, 2, seed=3), lambda: ShuffleSampler(21, 8, 3)])
def test_sampler_state_restores_the_sequence(make):
    sampler = make()
    for _ in range(5):
        sampler.next_indices()
    state = pickle.loads(pickle.dumps(sampler.state_dict()))
    expected = [sampler.next_indices() for _ in range(4)]
    fresh = make()
    fresh.load_state_dict(state)
    for want in expected:
        np.testing.assert_array_equal(fresh.next_indices(), want)


def test_shuffle_sampler_covers_each_pass():
    sampler = ShuffleSampler(10, 4, seed=0)
    first = np.concatenate([sampler.next_indices() for _ in range(5)])  # 20 = two passes
    assert sorted(first[:10].tolist()) == list(range(10)) and sorted(first[10:].tolist()) == list(range(10))


def _samples(tmp_path: Path) -> list[Sample]:
    return [Sample(str(write_image(tmp_path / f"{i}.png", seed=i)), label=i // 3) for i in range(12)]


def test_task_stream_batches_and_resume(tmp_path: Path):
    samples = _samples(tmp_path)
    stream = TaskStream(samples, (12, 8), batch_size=6, k=3, augment=TASK_SPECS["person"].augment, seed=7)
    images, labels = next(stream)
    assert images.shape == (6, 3, 12, 8) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert labels.view(2, 3).eq(labels.view(2, 3)[:, :1]).all()
    next(stream)
    state = stream.state_dict()
    torch.save(state, tmp_path / "state.pt")
    want_images, want_labels = next(stream)
    resumed = TaskStream(samples, (12, 8), batch_size=6, k=3, augment=TASK_SPECS["person"].augment, seed=7)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt"))
    got_images, got_labels = next(resumed)
    assert torch.equal(got_images, want_images) and torch.equal(got_labels, want_labels)
    assert resumed.batches == stream.batches == 3


def test_task_stream_without_augmentation_is_eval_preprocessing(tmp_path: Path):
    samples = _samples(tmp_path)
    stream = TaskStream(samples, (12, 8), batch_size=5, seed=0)
    images, labels = next(stream)
    assert images.shape == (5, 3, 12, 8) and float(images.abs().max()) <= 1.0
    with pytest.raises(ValueError, match="not p\\*k"):
        TaskStream(samples, (12, 8), batch_size=5, p=2, k=3)
