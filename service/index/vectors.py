"""Precondition checks for vectors entering an index: shape, dimension, finiteness, L2 norm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from service.index.errors import DimensionError, ModelVersionError

if TYPE_CHECKING:
    from service.store.records import Change, Item


def as_matrix(x: np.ndarray, dim: int, *, name: str = "xb") -> np.ndarray:
    """A (n, dim) float32 C-contiguous copy of `x` (a single (dim,) vector becomes (1, dim)).

    Raises DimensionError naming the problem: wrong rank, wrong dimension, NaN or Inf.
    """
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise DimensionError(f"{name} must be a (n, {dim}) matrix or a ({dim},) vector, got shape {x.shape}")
    if x.shape[1] != dim:
        raise DimensionError(f"{name} has dimension {x.shape[1]}, the index expects {dim}")
    if not np.issubdtype(x.dtype, np.number):
        raise DimensionError(f"{name} must be numeric, got dtype {x.dtype}")
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise DimensionError(f"{name} contains NaN or Inf in {int(bad.sum())} row(s), e.g. rows {rows}")
    return out


def normalize_rows(x: np.ndarray, *, name: str = "xb") -> np.ndarray:
    """L2-normalise rows in place (inner product = cosine); refuses zero rows. Returns `x`."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        rows = np.flatnonzero(zero)[:5].tolist()
        raise DimensionError(f"{name} has {int(zero.sum())} zero vector(s) that cannot be normalised, e.g. rows {rows}")
    x /= norms
    return x


def prepare(x: np.ndarray, dim: int, *, name: str = "xb") -> np.ndarray:
    """`as_matrix` then `normalize_rows`: what every vector goes through before FAISS sees it."""
    return normalize_rows(as_matrix(x, dim, name=name), name=name)


def check_model_version(got: str | None, bound: str, *, what: str = "vectors") -> None:
    """Refuse vectors embedded by another model version (None means 'not stated': accepted)."""
    if got is not None and got != bound:
        raise ModelVersionError(
            f"{what} come from model version {got!r} but this index holds version {bound!r}; "
            "re-embed with the index's model or rebuild the index for the new version"
        )


class ChangeLogWrites:
    """Store records and change-log entries written through the engine's own `upsert(ids, xb, metadata, *,
    model_version, offset)` and `delete(ids, *, offset)`: the same for every engine (`VectorIndex`,
    `MilvusIndex`)."""

    model_version: str

    def upsert_items(self, items: Sequence[Item], *, offset: int | None = None) -> None:
        """`upsert` store records (each must carry this index's model version)."""
        for item in items:
            check_model_version(item.model_version, self.model_version, what=f"item {item.id!r}")
        if items:
            self.upsert([i.id for i in items], np.stack([i.vector for i in items]), [i.metadata for i in items],
                        model_version=self.model_version, offset=offset)

    def apply_change(self, change: Change) -> None:
        """Apply one store change-log entry (idempotent) and advance `offset`."""
        if change.op == "upsert":
            assert change.item is not None
            self.upsert_items([change.item], offset=change.offset)
        else:
            self.delete([change.id], offset=change.offset)
