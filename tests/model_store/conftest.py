"""Shared pieces for the model_store tests: a tiny real torch embedder and a fresh exported repository."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model_store.export import export_model

INPUT_SIZE = (32, 32)
DIM = 16


class TinyEmbedder(nn.Module):
    """Conv stem + LayerNorm + linear: pixels [B,3,32,32] → embeddings [B,dim] (the subnet contract)."""

    def __init__(self, dim: int = DIM, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, kernel_size=4, stride=4)
        self.norm = nn.LayerNorm(width * 8 * 8)
        self.head = nn.Linear(width * 8 * 8, dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(F.gelu(self.stem(pixels)).flatten(1)))


def make_module(seed: int = 0, dim: int = DIM) -> TinyEmbedder:
    """A TinyEmbedder with seeded weights."""
    torch.manual_seed(seed)
    return TinyEmbedder(dim=dim).eval()


def export_tiny(repository: Path, model_name: str = "tiny", seed: int = 0, dim: int = DIM, **kwargs) -> Path:
    """Export a seeded TinyEmbedder for CPU serving; returns the version folder."""
    options = {"kind": "cpu", "task": "face", "input_size": INPUT_SIZE, "architecture": {"seed": seed}}
    options.update(kwargs)
    return export_model(make_module(seed, dim), repository, model_name=model_name, **options)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository holding one good model version: tiny/1."""
    repository = tmp_path / "repo"
    export_tiny(repository)
    return repository
