"""Exhaustive search over a live FAISS main index without a second copy of its vectors (the recall canary's truth).

IVF-Flat with nprobe = nlist, HNSW and IVF-PQ with re-ranking through their flat storage / re-ranking index,
Flat as is. Other types (IVF-PQ without re-ranking) keep no exact vectors: `supported` is False for them.
"""

from __future__ import annotations

import faiss
import numpy as np


class ExactMain:
    """Duck-typed stand-in for a main index whose `search` is exhaustive (see the module docstring)."""

    def __init__(self, main: faiss.Index):
        self.main = main
        self.ntotal = main.ntotal
        index = faiss.downcast_index(main)
        self.id_map: np.ndarray | None = None
        if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
            self.id_map = faiss.vector_to_array(index.id_map)
            index = faiss.downcast_index(index.index)
        self.inner = index

    def flat(self) -> faiss.Index | None:
        """The flat index holding exact vectors in add order, when the inner index has one."""
        if isinstance(self.inner, faiss.IndexHNSW):
            return faiss.downcast_index(self.inner.storage)
        if isinstance(self.inner, faiss.IndexRefine):
            return faiss.downcast_index(self.inner.refine_index)
        return None

    @property
    def supported(self) -> bool:
        return (isinstance(self.inner, faiss.IndexFlat | faiss.IndexIVFFlat) or
                isinstance(self.flat(), faiss.IndexFlat))

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.inner, faiss.IndexFlat):
            return self.main.search(xq, k)
        if isinstance(self.inner, faiss.IndexIVFFlat):
            return self.main.search(xq, k, params=faiss.SearchParametersIVF(nprobe=self.inner.nlist))
        flat = self.flat()
        if flat is None:
            raise TypeError(f"no exact vectors in {type(self.inner).__name__}")
        D, rows = flat.search(xq, k)
        if self.id_map is None:
            return D, rows
        return D, np.where(rows >= 0, self.id_map[np.maximum(rows, 0)], -1)


def set_faiss_threads(threads: int) -> None:
    """FAISS OpenMP threads for the calling thread (1 inside a gateway so searches keep a core)."""
    faiss.omp_set_num_threads(threads)
