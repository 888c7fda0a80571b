"""Rewrite a model repository's config.pbtxt files for GPU serving (`gpu_serving_options`): KIND_GPU on
NVIDIA's native onnxruntime backend, TensorRT fp16 as accelerator, dynamic batching with preferred sizes.

The manifests and ONNX files are untouched (config.pbtxt is not part of a version), so the same exported
repository can be turned into the GPU deployment's with
`python -m model_store.gpu_config --repository R [--out COPY] [--no-tensorrt] [--fp32]`, then checked with
`ufo store verify` and, once Triton serves it, `ufo store verify --backend triton --url HOST:8001`
(the parity gate: docs/gpu.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from model_store.files import write_text_atomic
from model_store.manifest import MANIFEST_FILE, read_manifest
from model_store.model_config import (
    CONFIG_FILE,
    build_model_config,
    gpu_serving_options,
    read_config,
    read_graph_signature,
    render_config,
)
from model_store.verify import list_version_dirs


def gpu_config_text(model_dir: Path, *, tensorrt: bool = True, fp16: bool = True) -> str:
    """The GPU config.pbtxt for one model folder, from its newest version's graph; keeps max_batch_size."""
    versions = list_version_dirs(model_dir)
    if not versions:
        raise ValueError(f"{model_dir}: no integer version folders")
    newest = versions[-1]
    onnx_file = read_manifest(newest / MANIFEST_FILE).onnx_file
    signature = read_graph_signature(newest / onnx_file)
    max_batch = read_config(model_dir / CONFIG_FILE).max_batch_size if (model_dir / CONFIG_FILE).is_file() else 32
    options = gpu_serving_options(max_batch or 32, tensorrt=tensorrt, fp16=fp16)
    return render_config(build_model_config(model_dir.name, signature, options))


def convert_repository(repository: Path, out: Path | None = None, *, tensorrt: bool = True,
                       fp16: bool = True) -> list[Path]:
    """Write GPU configs for every model in `repository` (into a copy at `out` when given); returns them."""
    repository = Path(repository)
    if not repository.is_dir():
        raise FileNotFoundError(f"repository {repository} does not exist")
    if out is not None:
        shutil.copytree(repository, out, dirs_exist_ok=False)
        repository = Path(out)
    written = []
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir() and not p.name.startswith(".")):
        text = gpu_config_text(model_dir, tensorrt=tensorrt, fp16=fp16)
        write_text_atomic(model_dir / CONFIG_FILE, text)
        written.append(model_dir / CONFIG_FILE)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write a converted copy here (default: in place)")
    parser.add_argument("--no-tensorrt", action="store_true", help="CUDA execution provider only")
    parser.add_argument("--fp32", action="store_true", help="TensorRT in FP32 instead of FP16")
    args = parser.parse_args(argv)
    for path in convert_repository(args.repository, args.out, tensorrt=not args.no_tensorrt, fp16=not args.fp32):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
