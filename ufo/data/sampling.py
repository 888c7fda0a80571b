"""Batch samplers and the per-task infinite training stream.

`IdentitySampler` draws P identities x K images (the batch-hard triplet loss needs positives in the batch);
`ShuffleSampler` draws plain shuffled batches. Both are seeded, infinite and resumable: `state_dict()` holds
the generator state and the position in the current pass, so a restored sampler continues exactly where the
saved one would have. `TaskStream` turns sample indices into augmented tensors from an in-memory
`ImageCache`, and saves/restores both its sampler's and its augmentation's random state.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ufo.data.augment import AugmentConfig, augment_batch
from ufo.data.images import ImageCache
from ufo.data.types import DataError, Sample

log = logging.getLogger(__name__)


class _PassSampler:
    """Shared state handling: a generator plus the current pass's order and position in it."""

    rng: np.random.Generator
    _order: np.ndarray
    _pos: int

    def next_indices(self) -> np.ndarray:
        raise NotImplementedError

    def __iter__(self) -> _PassSampler:
        return self

    def __next__(self) -> np.ndarray:
        return self.next_indices()

    def state_dict(self) -> dict[str, Any]:
        return {"rng": copy.deepcopy(self.rng.bit_generator.state), "order": self._order.tolist(), "pos": self._pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._order = np.asarray(state["order"], dtype=np.int64)
        self._pos = int(state["pos"])


class IdentitySampler(_PassSampler):
    """Infinite batches of P identities x K sample indices each.

    Identities are visited in shuffled passes (every identity once per pass, P per batch, the pass reshuffled
    when fewer than P remain), so all identities are seen evenly; with fewer than P identities in all, every
    batch holds each of them plus random repeats. Within an identity the K images are drawn
    without replacement, or with replacement when it has fewer than K. Batches are laid out identity-major:
    rows [i*K, (i+1)*K) share a label.
    """

    def __init__(self, labels: Sequence[int], p: int, k: int, seed: int = 0):
        if p < 1 or k < 1:
            raise ValueError(f"IdentitySampler needs p >= 1 and k >= 1, got p={p}, k={k}")
        labels = np.asarray(labels, dtype=np.int64)
        self.identities, inverse = np.unique(labels, return_inverse=True)
        if len(self.identities) < p:  # tiny sets (tests, a scaled-down demo): repeat identities within a batch
            log.warning("IdentitySampler: p=%d identities per batch but only %d exist; some repeat in each batch",
                        p, len(self.identities))
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(self.identities)))[:-1]
        self.members = np.split(order, bounds)  # sample indices of each identity
        self.p, self.k = p, k
        self.rng = np.random.default_rng(seed)
        self._order = np.zeros(0, dtype=np.int64)
        self._pos = 0

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def next_indices(self) -> np.ndarray:
        """Sample indices [P*K] of the next batch."""
        count = len(self.identities)
        if count < self.p:
            chosen = np.concatenate([self.rng.permutation(count), self.rng.choice(count, self.p - count)])
        else:
            if self._pos + self.p > len(self._order):
                self._order = self.rng.permutation(count)
                self._pos = 0
            chosen = self._order[self._pos : self._pos + self.p]
            self._pos += self.p
        rows = []
        for identity in chosen:
            members = self.members[identity]
            rows.append(self.rng.choice(members, size=self.k, replace=len(members) < self.k))
        return np.concatenate(rows)


class ShuffleSampler(_PassSampler):
    """Infinite shuffled batches of `batch_size` sample indices (passes over the data, reshuffled each pass)."""

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0):
        if num_samples < 1 or batch_size < 1:
            raise ValueError(f"ShuffleSampler needs samples and batch_size >= 1, got {num_samples}, {batch_size}")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.rng = np.random.default_rng(seed)
        self._order = np.zeros(0, dtype=np.int64)
        self._pos = 0

    def next_indices(self) -> np.ndarray:
        rows = []
        needed = self.batch_size
        while needed:
            if self._pos >= len(self._order):
                self._order = self.rng.permutation(self.num_samples)
                self._pos = 0
            take = self._order[self._pos : self._pos + needed]
            self._pos += len(take)
            needed -= len(take)
            rows.append(take)
        return np.concatenate(rows)


def stream_seeds(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """(sampler seed, augmentation seed) of a task stream: every stream kind derives them the same way, so the
    cached and the streaming path draw the same batches for the same seed."""
    sampler_seed, augment_seed = np.random.SeedSequence(seed).spawn(2)
    return sampler_seed, augment_seed


def build_sampler(labels: np.ndarray, batch_size: int, p: int | None, k: int | None,
                  seed: np.random.SeedSequence | int) -> IdentitySampler | ShuffleSampler:
    """P x K identity batches with `k` set (P = batch_size // k unless `p` is given), else shuffled batches."""
    if k is None:
        return ShuffleSampler(len(labels), batch_size, seed)
    p = p if p is not None else batch_size // k
    if p * k != batch_size:
        raise ValueError(f"TaskStream: batch_size {batch_size} is not p*k = {p}*{k}")
    return IdentitySampler(labels, p, k, seed)


class TaskStream:
    """Infinite (images float32 [B, 3, H, W], labels int64 [B]) batches for one task, read from memory.

    With `k` set, batches are P x K identity batches with P = batch_size // k (or `p` if given, then
    batch_size must equal p * k); without `k`, plain shuffled batches. `augment=None` gives the evaluation
    preprocessing. The sampler and the augmentation draw from separate generators seeded from `seed`.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        size: tuple[int, int],
        batch_size: int,
        p: int | None = None,
        k: int | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        cache: ImageCache | None = None,
    ):
        if not samples:
            raise DataError("TaskStream: no training samples")
        self.samples = list(samples)
        self.labels = np.asarray([s.label for s in self.samples], dtype=np.int64)
        self.cache = cache if cache is not None else ImageCache([s.path for s in self.samples], size)
        self._rows = np.asarray([self.cache.row_of(s.path) for s in self.samples], dtype=np.int64)
        sampler_seed, augment_seed = stream_seeds(seed)
        self.sampler = build_sampler(self.labels, batch_size, p, k, sampler_seed)
        self.augment = augment
        self.rng = np.random.default_rng(augment_seed)
        self.batches = 0

    @property
    def batch_size(self) -> int:
        return self.sampler.batch_size

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        indices = self.sampler.next_indices()
        pixels = self.cache.pixels(self._rows[indices])
        images = augment_batch(pixels, self.augment, self.rng)
        self.batches += 1
        return torch.from_numpy(images), torch.from_numpy(self.labels[indices])

    def __iter__(self) -> TaskStream:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides future batches (plain Python values: picklable, torch.save-able)."""
        return {
            "sampler": self.sampler.state_dict(),
            "augment_rng": copy.deepcopy(self.rng.bit_generator.state),
            "batches": self.batches,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.rng.bit_generator.state = copy.deepcopy(state["augment_rng"])
        self.batches = int(state["batches"])
