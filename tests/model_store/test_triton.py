"""The repository served by a REAL tritonserver (bundled in nvidia-pytriton) through our onnxruntime shim."""

from __future__ import annotations

import importlib.util
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from model_store.parity import onnx_embeddings
from model_store.triton import SHIM_DIR, TritonServer, TritonServerError, find_tritonserver

from .conftest import INPUT_SIZE, export_tiny


@pytest.fixture(scope="session")
def triton_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("triton") / "repo"
    export_tiny(repository, "tiny", seed=0, instances=2, intra_op_threads=1)
    # Long queue delay, no preferred sizes: concurrent requests deterministically meet in one batch.
    export_tiny(repository, "batched", seed=1, max_queue_delay_us=300_000)
    export_tiny(repository, "multi", seed=2)
    broken = export_tiny(repository, "broken", seed=3) / "model.onnx"
    broken.write_bytes(broken.read_bytes()[:100])
    return repository


@pytest.fixture(scope="session")
def server(triton_repo: Path) -> Iterator[TritonServer]:
    with TritonServer(triton_repo, load_models=["tiny", "batched", "multi"], ready_timeout_s=120) as running:
        yield running


def _pixels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 3, *INPUT_SIZE)).astype(np.float32)


def _direct(repo: Path, model: str, version: int, pixels: np.ndarray) -> np.ndarray:
    return onnx_embeddings(repo / model / str(version) / "model.onnx", pixels)


def _infer_http(url: str, model: str, pixels: np.ndarray, version: str = "") -> np.ndarray:
    client = httpclient.InferenceServerClient(url)
    inp = httpclient.InferInput("pixels", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels)
    return client.infer(model, [inp], model_version=version).as_numpy("embedding")


def _infer_grpc(url: str, model: str, pixels: np.ndarray, version: str = "") -> np.ndarray:
    with grpcclient.InferenceServerClient(url) as client:
        inp = grpcclient.InferInput("pixels", list(pixels.shape), "FP32")
        inp.set_data_from_numpy(pixels)
        return client.infer(model, [inp], model_version=version).as_numpy("embedding")


def test_http_and_grpc_equal_onnxruntime(server: TritonServer, triton_repo: Path) -> None:
    pixels = _pixels(3, seed=0)
    direct = _direct(triton_repo, "tiny", 1, pixels)
    np.testing.assert_allclose(_infer_http(server.http_url, "tiny", pixels), direct, atol=1e-6)
    np.testing.assert_allclose(_infer_grpc(server.grpc_url, "tiny", pixels), direct, atol=1e-6)


def test_concurrent_requests_are_batched_and_correct(server: TritonServer, triton_repo: Path) -> None:
    requests = [_pixels(1 + i % 2, seed=100 + i) for i in range(16)]  # 24 images: fits max_batch_size 32
    stats = httpclient.InferenceServerClient(server.http_url)
    before = stats.get_inference_statistics("batched")["model_stats"][0]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda p: _infer_grpc(server.grpc_url, "batched", p), requests))
    for pixels, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result, _direct(triton_repo, "batched", 1, pixels), atol=1e-6)
    after = stats.get_inference_statistics("batched")["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 24
    executions = after["execution_count"] - before["execution_count"]
    assert executions < 16, f"{executions} executions for 16 requests: the shim is not batching"


def test_new_version_loads_and_both_versions_serve(server: TritonServer, triton_repo: Path) -> None:
    export_tiny(triton_repo, "multi", seed=4)
    server.load_model("multi")  # a reload picks up version 2 (version_policy: all)
    pixels = _pixels(2, seed=5)
    v1 = _infer_http(server.http_url, "multi", pixels, version="1")
    v2 = _infer_grpc(server.grpc_url, "multi", pixels, version="2")
    np.testing.assert_allclose(v1, _direct(triton_repo, "multi", 1, pixels), atol=1e-6)
    np.testing.assert_allclose(v2, _direct(triton_repo, "multi", 2, pixels), atol=1e-6)
    assert not np.allclose(v1, v2)


def test_unknown_model_gives_a_clear_error(server: TritonServer) -> None:
    with pytest.raises(InferenceServerException, match="nope"):
        _infer_http(server.http_url, "nope", _pixels(1, seed=6))
    with pytest.raises(TritonServerError, match="nope"):
        server.load_model("nope")


def test_corrupt_model_fails_to_load_while_the_good_one_serves(server: TritonServer, triton_repo: Path) -> None:
    with pytest.raises(TritonServerError, match="broken"):
        server.load_model("broken")
    client = httpclient.InferenceServerClient(server.http_url)
    assert not client.is_model_ready("broken") and client.is_model_ready("tiny")
    pixels = _pixels(1, seed=7)
    np.testing.assert_allclose(_infer_http(server.http_url, "tiny", pixels), _direct(triton_repo, "tiny", 1, pixels))


def test_metrics_endpoint_counts_requests(server: TritonServer) -> None:
    _infer_http(server.http_url, "tiny", _pixels(1, seed=8))
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    assert 'nv_inference_request_success{model="tiny"' in text


def _load_shim(monkeypatch: pytest.MonkeyPatch):
    """Import the shim's model.py with the real triton_python_backend_utils from the bundled server."""
    monkeypatch.syspath_prepend(str(find_tritonserver().python_backend))
    spec = importlib.util.spec_from_file_location("ufo_ort_shim", SHIM_DIR / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shim_thread_count_comes_from_config_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    shim = _load_shim(monkeypatch)
    monkeypatch.delenv(shim.THREADS_ENV, raising=False)
    assert shim.intra_op_threads({}) == 0
    monkeypatch.setenv(shim.THREADS_ENV, "3")
    assert shim.intra_op_threads({}) == 3
    config = {"parameters": {"intra_op_thread_count": {"string_value": "1"}}}
    assert shim.intra_op_threads(config) == 1
    args = {"model_repository": "/r/tiny", "model_version": "2"}
    assert shim.model_path(args, {"default_model_filename": ""}) == Path("/r/tiny/2/model.onnx")
