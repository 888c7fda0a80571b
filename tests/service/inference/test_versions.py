"""A second version of a task's model beside the served one (model upgrades), on both backends: the embedded
one, and Triton against a REAL tritonserver that picks up a version exported while it runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from model_store.triton import TritonServer
from service.inference.base import InferenceBackend
from service.inference.embedded import EmbeddedBackend
from service.inference.errors import ModelNotFound, RepositoryError
from service.inference.triton import TritonBackend

from .conftest import export_tiny, random_pixels

pytestmark = pytest.mark.anyio


@pytest.fixture
def own_repo(repo: Path, tmp_path: Path) -> Path:
    """face_tiny/1 only, in a private folder (the tests export version 2 into it)."""
    shutil.copytree(repo / "face_tiny", tmp_path / "repo" / "face_tiny")
    return tmp_path / "repo"


async def reference(repository: Path, pixels: np.ndarray) -> np.ndarray:
    """Embeddings by the repository's newest face version, from a fresh embedded backend."""
    async with EmbeddedBackend(repository, tasks=["face"], sessions_per_model=1) as backend:
        return await backend.embed("face", pixels)


async def check_versions(backend: InferenceBackend, v1: np.ndarray, v2: np.ndarray, pixels: np.ndarray) -> None:
    """Load v2 beside v1, embed with each, switch the served version, release v1."""
    with pytest.raises(ModelNotFound, match="version 2 .* not loaded"):
        await backend.embed("face", pixels, version=2)
    with pytest.raises(RepositoryError, match="no version 7"):
        await backend.load_version("face", 7)
    info = await backend.load_version("face")  # None: the newest usable version
    assert info.version == 2 and sorted(backend.versions("face")) == [1, 2]
    np.testing.assert_allclose(await backend.embed("face", pixels), v1, atol=1e-5)  # still serving 1
    np.testing.assert_allclose(await backend.embed("face", pixels, version=2), v2, atol=1e-5)
    backend.serve_version("face", 2)
    assert backend.model("face").version == 2
    np.testing.assert_allclose(await backend.embed("face", pixels), v2, atol=1e-5)
    np.testing.assert_allclose(await backend.embed("face", pixels, version=1), v1, atol=1e-5)
    await backend.unload_version("face", 1)
    await backend.unload_version("face", 2)  # the served one: a no-op
    assert sorted(backend.versions("face")) == [2]
    with pytest.raises(ModelNotFound):
        await backend.embed("face", pixels, version=1)


async def test_embedded_backend_serves_a_second_version(own_repo: Path) -> None:
    pixels = random_pixels(5, seed=3)
    v1 = await reference(own_repo, pixels)
    async with EmbeddedBackend(own_repo, tasks=["face"], sessions_per_model=1) as backend:
        export_tiny(own_repo, "face", "face_tiny", seed=42)  # exported while the backend runs
        v2 = await reference(own_repo, pixels)
        assert not np.allclose(v1, v2, atol=1e-3)
        await check_versions(backend, v1, v2, pixels)


async def test_triton_backend_loads_a_version_exported_while_the_server_runs(own_repo: Path) -> None:
    pixels = random_pixels(5, seed=3)
    v1 = await reference(own_repo, pixels)
    with TritonServer(own_repo, load_models=["face_tiny"], ready_timeout_s=120) as server:
        async with TritonBackend(own_repo, server.grpc_url, tasks=["face"], load_models=True) as backend:
            export_tiny(own_repo, "face", "face_tiny", seed=42)
            v2 = await reference(own_repo, pixels)
            await check_versions(backend, v1, v2, pixels)
            assert await backend.health()
