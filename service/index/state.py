"""One generation of a task index: main index + exact delta + tombstones, over one label space.

Labels are int64 assigned in write order (0, 1, 2, ...); every write of an id gets a new label,
so the old copy (in main or delta) and the new one are told apart and the old one is tombstoned.

Concurrency model: `Generation` is mutated only under the owning VectorIndex's lock. Searches read
an `IndexView`, a frozen record published by one reference assignment. Everything a view points
at is either immutable (the main index, delta rows [:n_delta], list entries [:n_labels]) or changes
monotonically in a way readers tolerate (an alive flag only ever goes True → False). Buffers grow
by copying into a new array, never by resizing one a reader may hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

_MIN_CAPACITY = 1024


@dataclass(frozen=True, slots=True)
class IndexView:
    """What one search reads. Rows/labels beyond n_delta/n_labels are invisible to it."""

    main: faiss.Index | None
    main_ntotal: int
    delta_xb: np.ndarray  # (capacity, d) float32, rows [:n_delta] valid
    delta_labels: np.ndarray  # (capacity,) int64
    n_delta: int
    alive: np.ndarray  # (capacity,) bool, indexed by label
    ids: list[str]  # label → id (append-only, shared with the writer)
    metadata: list[dict[str, Any]]  # label → metadata (append-only, shared)
    n_labels: int
    n_live: int

    @property
    def n_dead(self) -> int:
        """Labels tombstoned (deleted or overwritten) but still inside main or delta."""
        return self.n_labels - self.n_live


def _grow(buffer: np.ndarray, needed: int) -> np.ndarray:
    """`buffer` if it holds `needed` rows, else a copy with doubled capacity (never in place)."""
    if needed <= len(buffer):
        return buffer
    capacity = max(_MIN_CAPACITY, len(buffer))
    while capacity < needed:
        capacity *= 2
    grown = np.zeros((capacity,) + buffer.shape[1:], dtype=buffer.dtype)
    grown[: len(buffer)] = buffer
    return grown


class Generation:
    """Writer-side state of one label space. Not thread-safe: the owner holds a lock."""

    def __init__(self, dim: int, main: faiss.Index | None = None):
        self.dim = dim
        self.main = main
        self.id_to_label: dict[str, int] = {}
        self.ids: list[str] = []
        self.metadata: list[dict[str, Any]] = []
        self.alive = np.zeros(0, dtype=bool)
        self.delta_xb = np.zeros((0, dim), dtype=np.float32)
        self.delta_labels = np.zeros(0, dtype=np.int64)
        self.n_delta = 0

    @classmethod
    def with_main(cls, dim: int, main: faiss.Index, ids: list[str], metadata: list[dict[str, Any]]) -> Generation:
        """A generation whose labels 0..n-1 are the rows of a freshly built `main`."""
        gen = cls(dim, main)
        gen.ids = list(ids)
        gen.metadata = list(metadata)
        gen.id_to_label = {item_id: label for label, item_id in enumerate(ids)}
        gen.alive = _grow(gen.alive, len(ids))
        gen.alive[: len(ids)] = True
        return gen

    @property
    def n_labels(self) -> int:
        return len(self.ids)

    def view(self) -> IndexView:
        """Freeze the current state for readers."""
        return IndexView(
            main=self.main,
            main_ntotal=0 if self.main is None else int(self.main.ntotal),
            delta_xb=self.delta_xb,
            delta_labels=self.delta_labels,
            n_delta=self.n_delta,
            alive=self.alive,
            ids=self.ids,
            metadata=self.metadata,
            n_labels=len(self.ids),
            n_live=len(self.id_to_label),
        )

    def add(self, ids: list[str], xb: np.ndarray, metadata: list[dict[str, Any]]) -> list[int]:
        """Append new copies to the delta; return the labels they supersede (not yet tombstoned:
        the caller publishes a view first, then calls `kill`, so a reader never misses the id)."""
        first, n = len(self.ids), len(ids)
        labels = np.arange(first, first + n, dtype=np.int64)
        self.delta_xb = _grow(self.delta_xb, self.n_delta + n)
        self.delta_labels = _grow(self.delta_labels, self.n_delta + n)
        self.delta_xb[self.n_delta : self.n_delta + n] = xb
        self.delta_labels[self.n_delta : self.n_delta + n] = labels
        self.alive = _grow(self.alive, first + n)
        self.alive[first : first + n] = True
        self.ids.extend(ids)
        self.metadata.extend(metadata)
        self.n_delta += n
        superseded = []
        for item_id, label in zip(ids, labels.tolist(), strict=True):
            old = self.id_to_label.get(item_id)
            if old is not None:
                superseded.append(old)
            self.id_to_label[item_id] = label
        return superseded

    def remove(self, ids: list[str]) -> list[int]:
        """Forget ids; return their labels for `kill`."""
        return [label for label in (self.id_to_label.pop(i, None) for i in ids) if label is not None]

    def kill(self, labels: list[int]) -> None:
        """Tombstone labels (in place: views already published see it, which is the point)."""
        if labels:
            self.alive[np.asarray(labels, dtype=np.int64)] = False

    def label_of(self, item_id: str) -> int | None:
        return self.id_to_label.get(item_id)
