"""Shared pieces for the inference tests: a tiny real torch embedder exported into a repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model_store.export import export_model

INPUT_SIZE = (32, 24)  # (H, W), deliberately not square: a swapped H/W cannot pass
DIM = 16
MAX_BATCH = 8  # the exported config's max_batch_size: small, so splitting is cheap to exercise
MODELS = {"face": "face_tiny", "person": "person_tiny", "product": "product_tiny"}


class TinyEmbedder(nn.Module):
    """Conv stem + LayerNorm + linear: pixels [B,3,32,24] → embeddings [B,16]."""

    def __init__(self, dim: int = DIM, width: int = 8) -> None:
        super().__init__()
        cells = (INPUT_SIZE[0] // 4) * (INPUT_SIZE[1] // 4)
        self.stem = nn.Conv2d(3, width, kernel_size=4, stride=4)
        self.norm = nn.LayerNorm(width * cells)
        self.head = nn.Linear(width * cells, dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(F.gelu(self.stem(pixels)).flatten(1)))


def export_tiny(repository: Path, task: str, model_name: str, seed: int) -> Path:
    """Export a seeded TinyEmbedder for CPU serving; returns the version folder."""
    torch.manual_seed(seed)
    return export_model(
        TinyEmbedder().eval(), repository, model_name=model_name, task=task, input_size=INPUT_SIZE,
        architecture={"seed": seed}, kind="cpu", max_batch_size=MAX_BATCH, instances=1, intra_op_threads=1,
        verification_threshold=0.5,
    )


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with face_tiny/1, person_tiny/1 and product_tiny/1 (one task each)."""
    repository = tmp_path_factory.mktemp("inference") / "repo"
    for seed, (task, name) in enumerate(MODELS.items()):
        export_tiny(repository, task, name, seed)
    return repository


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def random_pixels(n: int, seed: int) -> np.ndarray:
    """float32 [n,3,H,W] in [-1, 1]."""
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 3, *INPUT_SIZE)).astype(np.float32)
