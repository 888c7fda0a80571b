"""The streaming training-data path: batches decoded and augmented by DataLoader worker processes.

`LoaderStream` is a drop-in for `TaskStream` (same batches' indices and labels for the same seed, same pixels
without augmentation) for training sets that do not fit in memory: nothing is cached, every batch is read from
its files. The sampler runs in the main process and hands each batch's (number, indices) to the workers;
a worker decodes them with `decode_resized` (as `ImageCache` does) and augments them with a generator seeded
from (seed, batch number), so a batch's pixels do not depend on the worker count or on which worker made it.

Resuming: the workers prefetch, so the sampler feeding them runs ahead of training. The stream therefore
keeps a second copy of the sampler that advances one batch per batch *consumed* (and checks that batch's
indices); `state_dict()` saves that copy and the batch count, and restoring re-primes the look-ahead sampler
from it, dropping whatever the workers had prefetched. `make_task_stream` picks the cached or streaming path.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ufo.data.augment import AugmentConfig, augment_batch
from ufo.data.images import decode_resized
from ufo.data.sampling import IdentitySampler, ShuffleSampler, TaskStream, build_sampler, stream_seeds
from ufo.data.types import DataError, Sample


class _Batch(NamedTuple):
    """What a worker sends back. A DataError travels as `error` so the main process raises it with the
    original message (torch would re-raise it wrapped in the worker's whole traceback)."""

    number: int
    indices: torch.Tensor
    images: torch.Tensor | None
    error: str | None = None


class _BatchPlan:
    """The DataLoader's sampler, iterated in the main process: (batch number, sample indices) from `sampler`,
    numbered from `start`. Re-iterating (a resume) continues from whatever state `sampler` holds then."""

    def __init__(self, sampler: IdentitySampler | ShuffleSampler, start: int):
        self.sampler, self.start = sampler, start

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        number = self.start
        while True:
            yield number, self.sampler.next_indices()
            number += 1


class _BatchDecoder(Dataset):
    """Runs in the workers: one whole batch per item, decoded from its files, then augmented."""

    def __init__(self, paths: Sequence[str], size: tuple[int, int], augment: AugmentConfig | None,
                 augment_seed: np.random.SeedSequence):
        # One numpy bytes array, not a list of str: reading Python objects in a forked worker touches their
        # refcounts and so copies their pages; 0.5M paths in a list would be copied into every worker.
        self.paths = np.asarray([os.fsencode(p) for p in paths])
        self.size = (int(size[0]), int(size[1]))
        self.augment = augment
        self.entropy, self.spawn_key = augment_seed.entropy, tuple(augment_seed.spawn_key)

    def __len__(self) -> int:
        return len(self.paths)

    def batch_rng(self, number: int) -> np.random.Generator:
        """Batch `number`'s augmentation generator: a child of the stream's augmentation seed."""
        return np.random.default_rng(np.random.SeedSequence(self.entropy, spawn_key=(*self.spawn_key, number)))

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """uint8 [B, H, W, 3]; each distinct file decoded once (P x K batches may repeat an image)."""
        unique, inverse = np.unique(indices, return_inverse=True)
        pixels = np.stack([decode_resized(os.fsdecode(self.paths[i]), self.size) for i in unique])
        return pixels[inverse]

    def __getitem__(self, item: tuple[int, np.ndarray]) -> _Batch:
        number, indices = item
        try:
            pixels = self.decode(indices)
        except DataError as exc:
            return _Batch(number, torch.from_numpy(indices), None, str(exc))
        images = augment_batch(pixels, self.augment, self.batch_rng(number))
        return _Batch(number, torch.from_numpy(indices), torch.from_numpy(images))


class LoaderStream:
    """Infinite (images float32 [B, 3, H, W], labels int64 [B]) batches for one task, read from the files.

    Arguments as `TaskStream`, plus `workers` decoding processes (0: decode in this process),
    `prefetch_factor` batches queued per worker, and `pin_memory` (default: when CUDA is available). The
    workers start on the first batch and stop with `close()` or when the stream is garbage-collected.
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
        workers: int = 2,
        prefetch_factor: int = 2,
        pin_memory: bool | None = None,
    ):
        if not samples:
            raise DataError("LoaderStream: no training samples")
        if workers < 0:
            raise ValueError(f"LoaderStream: workers must be >= 0, got {workers}")
        self.labels = np.asarray([s.label for s in samples], dtype=np.int64)
        sampler_seed, augment_seed = stream_seeds(seed)
        # Advances only as batches are consumed: its state is what a resume must start from.
        self.sampler = build_sampler(self.labels, batch_size, p, k, sampler_seed)
        self.batches = 0
        self.workers, self.prefetch_factor, self.seed = workers, prefetch_factor, seed
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self._decoder = _BatchDecoder([s.path for s in samples], size, augment, augment_seed)
        self._loader: DataLoader | None = None
        self._iterator: Iterator[_Batch] | None = None

    @property
    def batch_size(self) -> int:
        return self.sampler.batch_size

    def _make_loader(self) -> DataLoader:
        return DataLoader(
            self._decoder, sampler=_BatchPlan(copy.deepcopy(self.sampler), self.batches), batch_size=None,
            num_workers=self.workers, pin_memory=self.pin_memory, persistent_workers=self.workers > 0,
            prefetch_factor=self.prefetch_factor if self.workers > 0 else None,
            # its own generator: the workers' base seed must not draw from (and so shift) torch's global RNG
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _start(self) -> Iterator[_Batch]:
        """Start (or, after a restore, re-prime) the loader from the consumed sampler's state."""
        if self._loader is None:
            self._loader = self._make_loader()
        else:  # persistent workers are kept; iter() discards what they had prefetched
            plan = self._loader.sampler
            plan.sampler, plan.start = copy.deepcopy(self.sampler), self.batches
        return iter(self._loader)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._iterator is None:
            self._iterator = self._start()
        batch = next(self._iterator)
        if batch.error is not None:
            self._iterator = None  # nothing consumed: a retry re-reads this same batch
            raise DataError(batch.error)
        indices = self.sampler.next_indices()
        if batch.number != self.batches or not np.array_equal(batch.indices.numpy(), indices):
            raise RuntimeError(f"LoaderStream: got batch {batch.number}, expected {self.batches} (out of sync)")
        self.batches += 1
        return batch.images, torch.from_numpy(self.labels[indices])

    def __iter__(self) -> LoaderStream:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """The sampler after the last batch consumed (not the last prefetched) and the batch count."""
        return {"sampler": self.sampler.state_dict(), "batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore; a `TaskStream` state is accepted too (its augmentation generator state is not used)."""
        self.sampler.load_state_dict(state["sampler"])
        self.batches = int(state["batches"])
        self._iterator = None  # the next batch re-primes the loader from the restored sampler

    def close(self) -> None:
        """Stop the worker processes (dropping the DataLoader's iterator shuts them down)."""
        self._iterator = None
        self._loader = None


def make_task_stream(
    loader: str,
    samples: Sequence[Sample],
    size: tuple[int, int],
    batch_size: int,
    k: int | None = None,
    augment: AugmentConfig | None = None,
    seed: int = 0,
    workers: int = 2,
) -> TaskStream | LoaderStream:
    """The training stream of one task: "cache" decodes the split into memory once (small sets), "stream"
    reads every batch from the files in `workers` processes (sets that do not fit in memory)."""
    if loader == "cache":
        return TaskStream(samples, size, batch_size, k=k, augment=augment, seed=seed)
    if loader == "stream":
        return LoaderStream(samples, size, batch_size, k=k, augment=augment, seed=seed, workers=workers)
    raise ValueError(f"unknown data loader {loader!r}; expected cache or stream")
