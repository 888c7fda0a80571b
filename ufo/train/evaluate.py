"""Embed an EvalSet with any embedding function and score it with the task's metrics."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ufo.data.images import ImageCache
from ufo.data.types import EvalSet
from ufo.metrics.evaluate import evaluate_embeddings

EmbedFn = Callable[[torch.Tensor], torch.Tensor]  # pixels [B,3,H,W] -> L2-normalised [B,D]


class EvalImages:
    """Decoded eval images per task, cached so repeated scoring (search, report) decodes each file once."""

    def __init__(self, eval_set: EvalSet, size: tuple[int, int]) -> None:
        self.eval_set = eval_set
        paths = list(dict.fromkeys(s.path for s in (*eval_set.query, *eval_set.gallery)))
        self.cache = ImageCache(paths, size)
        self.query_rows = np.array([self.cache.row_of(s.path) for s in eval_set.query])
        self.gallery_rows = np.array([self.cache.row_of(s.path) for s in eval_set.gallery])

    def embed_all(self, embed: EmbedFn, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
        """Embeddings of every cached image, in cache row order."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(self.cache), batch_size):
                rows = np.arange(start, min(start + batch_size, len(self.cache)))
                pixels = torch.from_numpy(self.cache.normalized(rows)).to(device)
                out.append(embed(pixels).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def score(self, task: str, embed: EmbedFn, batch_size: int = 256, device: str = "cpu") -> dict[str, float]:
        feats = self.embed_all(embed, batch_size, device)
        return evaluate_embeddings(task, feats[self.query_rows], feats[self.gallery_rows], self.eval_set)
