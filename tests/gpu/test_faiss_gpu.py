"""FAISS on a GPU gives the service's CPU results: build (Flat and IVF through the GPU cloner with the
configured options), search, tombstones (deletes and overwrites), snapshot round trip."""

from __future__ import annotations

import numpy as np
import pytest

from service.index import VectorIndex
from service.index.build import GpuOptions, build_index, configure_gpu, is_gpu_index, to_cpu
from service.index.snapshot import load_snapshot, save_snapshot

from .conftest import skip_without_faiss_gpu

pytestmark = skip_without_faiss_gpu()
DIM = 64


def unit_rows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def default_gpu_options():
    configure_gpu(GpuOptions())
    yield
    configure_gpu(GpuOptions())


@pytest.mark.parametrize("factory", ["Flat", "IVF64,Flat"])
def test_gpu_index_equals_cpu(factory: str) -> None:
    xb, xq, ids = unit_rows(5000, 0), unit_rows(50, 1), np.arange(5000, dtype=np.int64) * 3
    cpu = build_index(xb, ids, factory, use_gpu=False, search_params="nprobe=64" if "IVF" in factory else "")
    gpu = build_index(xb, ids, factory, use_gpu=True, search_params="nprobe=64" if "IVF" in factory else "")
    assert is_gpu_index(gpu) and not is_gpu_index(cpu)
    d_cpu, i_cpu = cpu.search(xq, 10)
    d_gpu, i_gpu = gpu.search(xq, 10)
    assert (i_cpu == i_gpu).mean() > 0.99, "GPU and CPU disagree on the neighbours"
    np.testing.assert_allclose(d_gpu, d_cpu, atol=1e-4)
    assert to_cpu(gpu).ntotal == len(xb)


def test_temp_memory_and_float16_options_apply() -> None:
    configure_gpu(GpuOptions(enabled=True, temp_memory_mb=64, float16=True))
    xb, ids = unit_rows(4000, 2), np.arange(4000, dtype=np.int64)
    index = build_index(xb, ids, "IVF32,Flat", use_gpu=True, search_params="nprobe=32")
    _, found = index.search(xb[:20], 1)
    assert (found[:, 0] == ids[:20]).mean() >= 0.95, "float16 storage lost the vectors' own neighbours"
    configure_gpu(GpuOptions(enabled=False))
    assert not is_gpu_index(build_index(xb, ids, "Flat")), "enabled=false must keep indexes on the CPU"


def test_tombstones_and_snapshots_on_gpu_equal_cpu(tmp_path) -> None:
    xb = unit_rows(3000, 3)
    ids = [f"id{i}" for i in range(len(xb))]
    results = {}
    for use_gpu in (False, True):
        index = VectorIndex.build(ids, xb, model_version="m/1", factory="Flat", use_gpu=use_gpu)
        assert is_gpu_index(index.main) is use_gpu, "use_gpu did not decide where the main index lives"
        index.delete("id5")
        index.upsert("id7", xb[9:10], model_version="m/1")  # an overwrite tombstones the old row
        path = tmp_path / f"snap-{use_gpu}"
        save_snapshot(index, path)
        loaded = load_snapshot(path, model_version="m/1", use_gpu=use_gpu)
        for name, current in (("live", index), ("loaded", loaded)):
            hits = current.search(xb[:12], 5, model_version="m/1").hits
            results[(use_gpu, name)] = [[h.id for h in row] for row in hits]
            assert all("id5" not in row for row in results[(use_gpu, name)]), f"{name}: a deleted id came back"
    assert results[(True, "live")] == results[(False, "live")] == results[(True, "loaded")]
