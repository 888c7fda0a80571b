"""The embedded backend: ONNX Runtime in process behind the batcher, checked against ONNX Runtime direct."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from model_store.parity import onnx_embeddings
from service.inference.embedded import EmbeddedBackend
from service.inference.errors import BackendUnavailable, InvalidInput, ModelNotFound

from .conftest import DIM, INPUT_SIZE, MODELS, random_pixels


def direct(repo: Path, task: str, pixels: np.ndarray) -> np.ndarray:
    return onnx_embeddings(repo / MODELS[task] / "1" / "model.onnx", pixels)


@pytest.mark.anyio
async def test_equals_onnxruntime_direct_and_splits_large_batches(repo: Path) -> None:
    async with EmbeddedBackend(repo, max_batch=8) as backend:
        assert await backend.health()
        info = backend.models()["person"]
        assert (info.model_name, info.version, info.embedding_dim, info.input_size) == ("person_tiny", 1, DIM,
                                                                                         INPUT_SIZE)
        assert info.verification_threshold == 0.5 and info.params > 0 and info.flops > 0
        for task in MODELS:
            pixels = random_pixels(21, seed=hash(task) % 1000)  # 3 chunks of at most 8
            np.testing.assert_allclose(await backend.embed(task, pixels), direct(repo, task, pixels), atol=1e-5)
        assert backend.batchers["face"].batch_sizes == {8: 2, 5: 1}
        empty = await backend.embed("face", random_pixels(0, seed=0))
        assert empty.shape == (0, DIM)
    assert not await backend.health()


@pytest.mark.anyio
async def test_32_concurrent_single_images_batch_and_match_one_by_one(repo: Path) -> None:
    pixels = random_pixels(32, seed=7)
    async with EmbeddedBackend(repo, tasks=["face"], max_batch=32, max_delay_ms=20) as backend:
        one_by_one = [await backend.embed("face", pixels[i : i + 1]) for i in range(32)]
        batcher = backend.batchers["face"]
        before = batcher.batches_run
        concurrent = await asyncio.gather(*(backend.embed("face", pixels[i : i + 1]) for i in range(32)))
        batches = batcher.batches_run - before
    assert batches < 32 and max(batcher.batch_sizes) > 1, f"{batches} batches for 32 concurrent requests"
    for alone, together in zip(one_by_one, concurrent, strict=True):
        np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(concurrent), direct(repo, "face", pixels), atol=1e-5)


@pytest.mark.anyio
async def test_typed_errors(repo: Path) -> None:
    backend = EmbeddedBackend(repo, tasks=["face"])
    with pytest.raises(BackendUnavailable, match="not started"):
        await backend.embed("face", random_pixels(1, seed=0))
    async with backend:
        with pytest.raises(ModelNotFound, match="'vehicle'"):
            await backend.embed("vehicle", random_pixels(1, seed=0))
        with pytest.raises(InvalidInput, match=r"expects pixels \[B,3,32,24\]"):
            await backend.embed("face", np.zeros((1, 3, 24, 32), np.float32))
        with pytest.raises(InvalidInput, match="float32"):
            await backend.embed("face", random_pixels(1, seed=0).astype(np.float64))
        bad = random_pixels(1, seed=0)
        bad[0, 0, 0, 0] = np.nan
        with pytest.raises(InvalidInput, match="NaN"):
            await backend.embed("face", bad)
    with pytest.raises(BackendUnavailable, match="closed"):
        await backend.embed("face", random_pixels(1, seed=0))
