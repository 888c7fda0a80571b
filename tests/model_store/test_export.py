"""Export: ONNX equals torch, unit-norm output, versioning without overwrites, fp16, config.pbtxt."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from google.protobuf import text_format

from model_store.export import ExportError, export_model, list_versions
from model_store.manifest import read_manifest
from model_store.model_config import (
    ServingOptions,
    build_model_config,
    parse_config,
    read_config,
    read_graph_signature,
    render_config,
)
from model_store.verify import verify_repository

from .conftest import DIM, INPUT_SIZE, export_tiny, make_module


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(folder.iterdir())}


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_equals_torch_and_is_unit_norm(repo: Path) -> None:
    pixels = np.random.default_rng(1).uniform(-1, 1, size=(5, 3, *INPUT_SIZE)).astype(np.float32)
    expected = F.normalize(make_module(0)(torch.from_numpy(pixels)), dim=1).detach().numpy()
    session = _session(repo / "tiny" / "1" / "model.onnx")
    (actual,) = session.run(None, {"pixels": pixels})
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(actual, axis=1), 1.0, atol=1e-5)
    assert [(i.name, i.type, i.shape[1:]) for i in session.get_inputs()] == [("pixels", "tensor(float)", [3, 32, 32])]
    assert [(o.name, o.type, o.shape[1:]) for o in session.get_outputs()] == [("embedding", "tensor(float)", [DIM])]


def test_normalisation_is_idempotent_for_a_normalising_module(tmp_path: Path) -> None:
    module = make_module(3)
    normalising = torch.nn.Sequential(module, torch.nn.Identity())
    normalising.forward = lambda x: F.normalize(module(x), dim=1)  # a subnet that normalises already
    version_dir = export_model(normalising, tmp_path, model_name="n", task="person", input_size=INPUT_SIZE)
    pixels = np.zeros((1, 3, *INPUT_SIZE), dtype=np.float32)
    (actual,) = _session(version_dir / "model.onnx").run(None, {"pixels": pixels})
    np.testing.assert_allclose(actual, F.normalize(module(torch.from_numpy(pixels)), dim=1).detach(), atol=1e-5)


def test_second_export_adds_version_2_without_touching_version_1(repo: Path) -> None:
    before = _snapshot(repo / "tiny" / "1")
    config_before = (repo / "tiny" / "config.pbtxt").stat().st_ino
    version_dir = export_tiny(repo, seed=1)
    assert version_dir == repo / "tiny" / "2"
    assert list_versions(repo / "tiny") == [1, 2]
    assert _snapshot(repo / "tiny" / "1") == before
    assert read_manifest(version_dir / "manifest.json").version == 2
    assert (repo / "tiny" / "config.pbtxt").stat().st_ino == config_before, "unchanged config was rewritten"
    assert sorted(p.name for p in (repo / "tiny").iterdir()) == ["1", "2", "config.pbtxt"], "staging left behind"
    assert verify_repository(repo) == []


def test_config_is_rewritten_only_when_it_changes(repo: Path) -> None:
    export_tiny(repo, seed=1, instances=3, max_queue_delay_us=500, preferred_batch_sizes=(4, 8))
    config = read_config(repo / "tiny" / "config.pbtxt")
    assert config.instance_group[0].count == 3
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]


def test_graph_that_does_not_fit_the_model_is_refused(repo: Path) -> None:
    with pytest.raises(ExportError, match="config.pbtxt.*dims"):
        export_tiny(repo, seed=1, dim=8)
    assert sorted(p.name for p in (repo / "tiny").iterdir()) == ["1", "config.pbtxt"]


def test_fp16_export_keeps_fp32_interface_within_tolerance(tmp_path: Path) -> None:
    version_dir = export_tiny(tmp_path, precision="fp16")
    proto = onnx.load(str(version_dir / "model.onnx"))
    assert {init.data_type for init in proto.graph.initializer if init.dims} == {onnx.TensorProto.FLOAT16}
    session = _session(version_dir / "model.onnx")
    assert session.get_inputs()[0].type == session.get_outputs()[0].type == "tensor(float)"
    pixels = np.random.default_rng(2).uniform(-1, 1, size=(4, 3, *INPUT_SIZE)).astype(np.float32)
    expected = F.normalize(make_module(0)(torch.from_numpy(pixels)), dim=1).detach().numpy()
    (actual,) = session.run(None, {"pixels": pixels})
    assert actual.dtype == np.float32
    assert np.abs(actual - expected).max() < 5e-3
    assert ((actual * expected).sum(axis=1) > 0.999).all()
    assert read_manifest(version_dir / "manifest.json").precision == "fp16"
    assert verify_repository(tmp_path) == []


def test_config_pbtxt_round_trips(repo: Path) -> None:
    path = repo / "tiny" / "config.pbtxt"
    config = read_config(path)
    assert config.name == "tiny" and config.backend == "onnxruntime" and config.max_batch_size == 32
    assert [(i.name, list(i.dims)) for i in config.input] == [("pixels", [3, 32, 32])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("embedding", [DIM])]
    assert config.version_policy.HasField("all")
    assert parse_config(render_config(config)) == config
    assert text_format.MessageToString(config) in path.read_text()
    signature = read_graph_signature(repo / "tiny" / "1" / "model.onnx")
    assert build_model_config("tiny", signature, ServingOptions(kind="cpu")) == config


def test_gpu_config_with_tensorrt(repo: Path) -> None:
    signature = read_graph_signature(repo / "tiny" / "1" / "model.onnx")
    config = build_model_config("tiny", signature, ServingOptions(kind="gpu", tensorrt=True, intra_op_threads=1))
    text = render_config(config)
    assert "KIND_GPU" in text and 'name: "tensorrt"' in text and "intra_op_thread_count" in text
    assert parse_config(text) == config
    with pytest.raises(ValueError, match="TensorRT"):
        ServingOptions(kind="cpu", tensorrt=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"task": "Cats!"}, "task name"), ({"model_name": "../x"}, "model_name"), ({"precision": "int8"}, "precision")],
)
def test_bad_arguments_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        export_tiny(tmp_path, **change)
    assert not any(os.scandir(tmp_path))


def test_failed_first_export_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="source_checkpoint_sha256"):
        export_tiny(tmp_path, source_checkpoint_sha256="not-a-hash")
    assert not any(os.scandir(tmp_path))
