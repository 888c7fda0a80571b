"""The GPU config.pbtxt (`gpu_serving_options`, `python -m model_store.gpu_config`): KIND_GPU on the native
onnxruntime backend, TensorRT fp16 with one optimisation profile over the batch range, dynamic batching with
preferred sizes; it parses with Triton's protobuf schema and `ufo store verify` accepts it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from model_store.gpu_config import convert_repository, main
from model_store.model_config import BACKEND, CONFIG_FILE, ServingOptions, gpu_serving_options, read_config
from model_store.verify import verify_repository

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_options_choose_gpu_tensorrt_fp16_and_preferred_sizes() -> None:
    options = gpu_serving_options(32)
    assert (options.kind, options.tensorrt, options.tensorrt_fp16) == ("gpu", True, True)
    assert options.preferred_batch_sizes == (8, 16, 32) and options.max_queue_delay_us > 0
    assert gpu_serving_options(1).preferred_batch_sizes == (1,)
    with pytest.raises(ValueError, match="TensorRT"):
        ServingOptions(kind="cpu", tensorrt=True)


def test_converted_demo_repository_parses_and_verifies(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    written = convert_repository(ROOT / "demo" / "models", out)
    assert len(written) == 4
    for path in written:
        config = read_config(path)  # Triton's own schema: a parse error raises
        assert config.backend == BACKEND and config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
        assert list(config.dynamic_batching.preferred_batch_size) == [8, 16, 32]
        (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
        dims = "x".join(str(d) for d in config.input[0].dims)
        assert accelerator.parameters["trt_profile_min_shapes"] == f"{config.input[0].name}:1x{dims}"
        assert accelerator.parameters["trt_profile_max_shapes"] == f"{config.input[0].name}:32x{dims}"
    assert verify_repository(out) == [], "ufo store verify refuses the GPU configs"
    assert (ROOT / "demo" / "models" / "ufo_face" / CONFIG_FILE).read_text() != written[0].read_text()


def test_cli_options_and_bad_input(tmp_path: Path) -> None:
    repo = Path(shutil.copytree(ROOT / "demo" / "models" / "ufo_face", tmp_path / "repo" / "ufo_face"))
    assert main(["--repository", str(repo.parent), "--no-tensorrt"]) == 0
    config = read_config(repo / CONFIG_FILE)
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert_repository(tmp_path / "missing")
    (tmp_path / "empty" / "model").mkdir(parents=True)
    with pytest.raises(ValueError, match="no integer version folders"):
        convert_repository(tmp_path / "empty")
