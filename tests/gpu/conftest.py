"""The `gpu` tests: collected everywhere, run where CUDA is visible, skipped with the reason otherwise.

The marker is registered here (pyproject.toml's pytest markers belong to another part of the tree), and every
test under tests/gpu/ gets it, so `pytest -m gpu` selects exactly these and `-m "not gpu"` leaves them out.
"""

from __future__ import annotations

import functools
import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU (skipped with the reason where none is visible)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.gpu)


@functools.cache
def cuda_devices() -> int:
    """CUDA devices torch sees (0 without CUDA or without a CUDA build of torch)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@functools.cache
def faiss_gpus() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def skip_without_cuda(min_devices: int = 1) -> pytest.MarkDecorator:
    found = cuda_devices()
    return pytest.mark.skipif(found < min_devices, reason=f"needs {min_devices} CUDA device(s), torch sees {found} "
                              "(no NVIDIA GPU here, or a CPU build of torch)")


def skip_without_faiss_gpu() -> pytest.MarkDecorator:
    found = faiss_gpus()
    return pytest.mark.skipif(found < 1, reason="faiss sees no GPU (the faiss-cpu build, or no NVIDIA GPU): install "
                              "faiss-gpu-cu12 (docker/requirements-gpu.txt) on a GPU machine")
