"""Input checks shared by the metric functions: each raises ValueError naming what is wrong."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Rows of a (queries x gallery) block processed at once: bounds the temporaries to ~2^22 cells.
MAX_BLOCK_CELLS = 1 << 22


def check_matrix(name: str, x: object, *, dtype: type = np.float32) -> np.ndarray:
    """Return `x` as a 2-D finite array of `dtype`, or raise ValueError naming `name`."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(dtype, copy=False)
    check_finite(name, arr)
    return arr


def check_vector(name: str, x: object, length: int | None = None, *, dtype: type | None = None) -> np.ndarray:
    """Return `x` as a 1-D array (of `dtype` when given), checking its length when given."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {length}")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if np.issubdtype(arr.dtype, np.floating):
        check_finite(name, arr)
    return arr


def check_finite(name: str, arr: np.ndarray) -> None:
    """Raise ValueError when `arr` holds NaN or infinity, saying how many."""
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        raise ValueError(f"{name} holds {n_nan} NaN and {int(bad.sum()) - n_nan} infinite value(s)")


def check_bools(name: str, x: object, length: int) -> np.ndarray:
    """Return `x` as a 1-D bool array of `length`; only bools or 0/1 integers are accepted."""
    arr = check_vector(name, x, length)
    if arr.dtype != np.bool_:
        if not np.issubdtype(arr.dtype, np.integer) or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Return `ks` as a tuple of positive ints, or raise ValueError."""
    out = tuple(ks)
    if not out or any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1 for k in out):
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks!r}")
    return tuple(int(k) for k in out)


def block_rows(n_cols: int) -> int:
    """Rows per block so that a (rows x n_cols) temporary stays under MAX_BLOCK_CELLS cells."""
    return max(1, MAX_BLOCK_CELLS // max(1, n_cols))
