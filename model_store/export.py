"""Export a static subnet into a Triton model repository.

`export_model` writes `<repo>/<model_name>/<version>/` with `model.onnx` (input `pixels` FP32 [3,H,W],
output `embedding` FP32 [D], L2-normalised inside the graph, dynamic batch axis), `manifest.json` and the
parity set, and `<repo>/<model_name>/config.pbtxt` generated from the graph itself. Versions are integers;
each export adds max+1 and never overwrites one. The version folder is built under a hidden temporary
name inside the model folder (Triton ignores non-numeric version folders) and renamed into place, so a
half-written version never appears.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from model_store.files import save_npy_atomic, sha256_file, write_text_atomic
from model_store.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    PARITY_EMBEDDINGS_FILE,
    PARITY_IMAGES_FILE,
    TASK_NAME_PATTERN,
    Manifest,
    ParitySet,
    Precision,
    normalize_images,
    write_manifest,
)
from model_store.model_config import (
    CONFIG_FILE,
    GraphSignature,
    Kind,
    ServingOptions,
    VersionPolicy,
    build_model_config,
    config_disagreements,
    parse_config,
    read_graph_signature,
    render_config,
)
from model_store.parity import cosine_similarities, golden_images, onnx_embeddings
from model_store.preprocessing import PAPER_MEAN, PAPER_STD

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "pixels"
OUTPUT_NAME = "embedding"
# fp16 weights move embeddings by ~1e-4 in cosine; fp32 export must match torch almost exactly.
MIN_COSINE: dict[str, float] = {"fp32": 0.9999, "fp16": 0.999}


class ExportError(ValueError):
    """The module cannot be exported as asked (the message says what and where)."""


class EmbeddingGraph(nn.Module):
    """What the ONNX graph holds: the subnet (in fp16 if asked, with casts at the edges so clients always
    send and receive fp32) followed by L2 normalisation (idempotent if the subnet normalises already)."""

    def __init__(self, subnet: nn.Module, half: bool = False) -> None:
        super().__init__()
        self.subnet = subnet
        self.half = half

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(torch.float16) if self.half else pixels
        embedding = self.subnet(x).float()
        return F.normalize(embedding, dim=1)


def count_params(module: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, input_size: tuple[int, int]) -> int:
    """FLOPs for one image (torch's flop counter: a multiply-add counts 2)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(torch.zeros(1, 3, *input_size))
    return int(counter.get_total_flops())


def torch_embeddings(module: nn.Module, pixels: np.ndarray) -> np.ndarray:
    """The reference: L2-normalised fp32 embeddings from the PyTorch module."""
    with torch.no_grad():
        out = module(torch.from_numpy(pixels))
    if out.ndim != 2:
        raise ExportError(f"the module must return [B, D] embeddings, got shape {list(out.shape)}")
    return F.normalize(out.float(), dim=1).numpy()


def export_onnx(
    module: nn.Module, path: Path, input_size: tuple[int, int], precision: Precision, opset: int = DEFAULT_OPSET
) -> None:
    """Write one self-contained ONNX file with a dynamic batch axis (TorchScript exporter: fast, one file)."""
    half = precision == "fp16"
    graph = EmbeddingGraph(copy.deepcopy(module).half() if half else module, half=half).eval()
    dummy = torch.zeros(2, 3, *input_size)  # batch 2, so nothing gets specialised to a batch of 1
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy-exporter deprecation notice; dynamo=False is deliberate
        torch.onnx.export(
            graph,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )


def resolve_output_shapes(path: Path) -> None:
    """Make the graph's output dims static where they are: the exporter leaves `embedding`'s D symbolic
    (F.normalize's expand hides it), and config.pbtxt is generated from these dims. ONNX shape inference
    with data propagation recovers them; only the declared outputs are updated."""
    proto = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    for declared, found in zip(proto.graph.output, inferred.graph.output, strict=True):
        declared.type.CopyFrom(found.type)
    onnx.save(proto, str(path))


def list_versions(model_dir: Path) -> list[int]:
    """The model's integer version folders, ascending (temporary and other folders are ignored)."""
    if not Path(model_dir).is_dir():
        return []
    return sorted(int(p.name) for p in Path(model_dir).iterdir() if p.is_dir() and p.name.isdigit())


def check_contract(signature: GraphSignature, input_size: tuple[int, int], embedding_dim: int) -> None:
    """The repository contract: input `pixels` FP32 [3,H,W], output `embedding` FP32 [D]."""
    want_in = [(INPUT_NAME, "TYPE_FP32", (3, *input_size))]
    want_out = [(OUTPUT_NAME, "TYPE_FP32", (embedding_dim,))]
    have_in = [(s.name, s.data_type, s.dims) for s in signature.inputs]
    have_out = [(s.name, s.data_type, s.dims) for s in signature.outputs]
    if have_in != want_in or have_out != want_out or not signature.dynamic_batch:
        raise ExportError(f"exported graph {have_in} -> {have_out} breaks the contract {want_in} -> {want_out}")


def ensure_config(model_dir: Path, config_text: str, signature: GraphSignature) -> bool:
    """Write config.pbtxt if the model is new or its config changes; returns True if written.

    Refuses (ExportError) when the existing config's inputs/outputs disagree with the new graph: all
    versions of a model share one config, so a new shape needs a new model name."""
    path = Path(model_dir) / CONFIG_FILE
    if path.exists():
        try:
            existing = parse_config(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ExportError(f"{path}: {exc}; fix or remove it before exporting") from exc
        disagreements = config_disagreements(existing, signature)
        if disagreements:
            raise ExportError(f"{path}: the new graph does not fit this model: {'; '.join(disagreements)}")
        if existing == parse_config(config_text):
            return False
    write_text_atomic(path, config_text)
    return True


def publish_version(model_dir: Path, staging: Path, make_manifest: Callable[[int], Manifest]) -> int:
    """Rename the finished staging folder to the next free version number (max+1); returns it.

    `os.rename` onto an existing non-empty folder fails, so a concurrent export cannot be overwritten:
    on a clash the next number is taken and the manifest rewritten."""
    for _ in range(1000):
        version = max(list_versions(model_dir), default=0) + 1
        write_manifest(make_manifest(version), staging / MANIFEST_FILE)
        try:
            os.rename(staging, Path(model_dir) / str(version))
            return version
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    raise ExportError(f"{model_dir}: could not find a free version number")


def _parity_images(images: np.ndarray | None, count: int, input_size: tuple[int, int]) -> np.ndarray:
    if images is None:
        return golden_images(count, input_size)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (*input_size, 3):
        raise ExportError(f"parity_images must be uint8 [N,{input_size[0]},{input_size[1]},3], got "
                          f"{images.dtype}{list(images.shape)}")
    return images


def _remove_failed_model(model_dir: Path, wrote_config: bool) -> None:
    """Undo a failed first export of a model: its config (if we wrote it) and the folder, if empty by then."""
    if list_versions(model_dir):
        return  # a concurrent export published meanwhile: the folder is not ours to remove
    if wrote_config:
        (model_dir / CONFIG_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: someone else is exporting into it right now
        model_dir.rmdir()


def _check_arguments(model_name: str, task: str, input_size: tuple[int, int], precision: str) -> None:
    if not re.match(TASK_NAME_PATTERN, task):
        raise ExportError(f"task name {task!r} must match {TASK_NAME_PATTERN}")
    if precision not in get_args(Precision):
        raise ExportError(f"precision must be one of {get_args(Precision)}, got {precision!r}")
    if len(input_size) != 2 or min(input_size) < 1:
        raise ExportError(f"input_size must be [H, W] with positive sides, got {input_size}")
    if not model_name or model_name.startswith(".") or not all(c.isalnum() or c in "_.-" for c in model_name):
        raise ExportError(f"model_name {model_name!r} must be letters, digits, '_', '.', '-' (no leading '.')")


def export_model(
    module: nn.Module,
    repository: Path | str,
    *,
    model_name: str,
    task: str,
    input_size: tuple[int, int],
    architecture: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    verification_threshold: float | None = None,
    source_checkpoint_sha256: str | None = None,
    params: int | None = None,
    flops: int | None = None,
    parity_images: np.ndarray | None = None,
    parity_count: int = 4,
    precision: Precision = "fp32",
    kind: Kind = "gpu",
    max_batch_size: int = 32,
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_delay_us: int = 0,
    instances: int = 1,
    intra_op_threads: int | None = None,
    tensorrt: bool = False,
    version_policy: VersionPolicy = "all",
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export `module` (pixels [B,3,H,W] → embeddings [B,D]) as a new version of `model_name`.

    Checks ONNX Runtime's output against PyTorch's on the parity images before publishing (ExportError
    below the precision's minimum cosine). `params`/`flops` are counted from the module when not given.
    Serving options (kind, batching, instances, threads, TensorRT, version policy) go into config.pbtxt;
    see `ServingOptions`. Returns the new version folder.
    """
    input_size = (int(input_size[0]), int(input_size[1]))
    _check_arguments(model_name, task, input_size, precision)
    options = ServingOptions(
        kind=kind, max_batch_size=max_batch_size, preferred_batch_sizes=tuple(preferred_batch_sizes),
        max_queue_delay_us=max_queue_delay_us, instances=instances, intra_op_threads=intra_op_threads,
        tensorrt=tensorrt, tensorrt_fp16=precision == "fp16", version_policy=version_policy,
    )
    images = _parity_images(parity_images, parity_count, input_size)
    pixels = normalize_images(images, PAPER_MEAN, PAPER_STD)
    model_dir = Path(repository) / model_name
    new_model = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    wrote_config = False
    try:
        staging.chmod(0o755)  # mkdtemp makes 0700; the server may run as another user
        onnx_path = staging / MODEL_FILE
        was_training = module.training
        module.eval()
        try:
            expected = torch_embeddings(module, pixels)
            export_onnx(module, onnx_path, input_size, precision, opset)
            resolve_output_shapes(onnx_path)
            params = count_params(module) if params is None else params
            flops = count_flops(module, input_size) if flops is None else flops
        finally:
            module.train(was_training)
        signature = read_graph_signature(onnx_path)
        check_contract(signature, input_size, expected.shape[1])
        cosines = cosine_similarities(onnx_embeddings(onnx_path, pixels), expected)
        if cosines.min() < MIN_COSINE[precision]:
            raise ExportError(f"{model_name}: ONNX Runtime disagrees with PyTorch (min cosine {cosines.min():.6f} "
                              f"< {MIN_COSINE[precision]} for {precision})")
        save_npy_atomic(staging / PARITY_IMAGES_FILE, images)
        save_npy_atomic(staging / PARITY_EMBEDDINGS_FILE, expected.astype(np.float32))
        fields = dict(
            task=task, model_name=model_name, architecture=dict(architecture or {}),
            embedding_dim=int(expected.shape[1]), input_size=input_size, mean=PAPER_MEAN, std=PAPER_STD,
            params=int(params), flops=int(flops), metrics=dict(metrics or {}),
            verification_threshold=verification_threshold, onnx_sha256=sha256_file(onnx_path), opset=opset,
            source_checkpoint_sha256=source_checkpoint_sha256, precision=precision,
            created_at=datetime.now(UTC),
            parity=ParitySet(count=len(images), min_cosine=MIN_COSINE[precision]),
        )
        Manifest(version=1, **fields)  # validate every field before anything becomes visible
        config = build_model_config(model_name, signature, options)
        wrote_config = ensure_config(model_dir, render_config(config), signature)
        version = publish_version(model_dir, staging, lambda v: Manifest(version=v, **fields))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if new_model:
            _remove_failed_model(model_dir, wrote_config)
        raise
    log.info("exported %s version %d (%s, min parity cosine %.6f)", model_name, version, precision, cosines.min())
    return model_dir / str(version)
