"""Seeded synthetic embeddings: a Gaussian mixture on the unit sphere (clustered, like real ones).

The centres depend only on `centre_seed`, so database and query sets drawn with different `seed`s
come from the same mixture (held-out queries, not queries from another distribution).
"""

from __future__ import annotations

import numpy as np


def clustered(n: int, d: int = 32, *, centres: int = 40, sigma: float = 0.5, seed: int = 0,
              centre_seed: int = 12345) -> np.ndarray:
    """n L2-normalised float32 vectors drawn around `centres` random unit centres."""
    c = np.random.default_rng(centre_seed).standard_normal((centres, d)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    x = c[rng.integers(0, centres, n)] + sigma / np.sqrt(d) * rng.standard_normal((n, d)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def ids_for(n: int, prefix: str = "item") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]
