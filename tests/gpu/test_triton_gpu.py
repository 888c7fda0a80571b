"""GPU Triton: the GPU config.pbtxt (KIND_GPU, TensorRT fp16, preferred batch sizes) loads in NVIDIA's
tritonserver and answers within the parity gate. That server is NVIDIA's image (not a wheel), so the test
uses one already running: set TRITON_GPU_URL=host:8001 to a server whose repository is demo/models
converted with `python -m model_store.gpu_config` (bench/gpu.sh prints the commands). The config's
structure is checked everywhere (tests/model_store/test_gpu_config.py)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from model_store.serving_parity import check_serving_parity, triton_embedder

from .conftest import skip_without_cuda

ROOT = Path(__file__).resolve().parents[2]
URL = os.environ.get("TRITON_GPU_URL")
pytestmark = [skip_without_cuda(),
              pytest.mark.skipif(not URL, reason="TRITON_GPU_URL is not set: no GPU tritonserver to test against "
                                 "(run NVIDIA's image on the demo models converted by model_store.gpu_config)")]


@pytest.mark.parametrize("model", ["ufo_face", "ufo_person", "ufo_product", "ufo_vehicle"])
def test_gpu_triton_answers_within_parity(model: str) -> None:
    outcome = asyncio.run(check_serving_parity(triton_embedder(URL, model, 1), ROOT / "demo" / "models" / model / "1"))
    assert outcome.passed, outcome.message
