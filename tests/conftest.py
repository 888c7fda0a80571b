"""Shared fixtures: a tiny real demo data set (real ORL faces and Fashion-MNIST products, synthetic
person/vehicle identities), built once per test session."""

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    from ufo.demo.build import build_demo

    root = tmp_path_factory.mktemp("demo") / "data"
    build_demo(root, seed=0, scale=0.05)
    return root


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests share 2 cores with each other's servers: one torch thread avoids spin-wait collapse."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
