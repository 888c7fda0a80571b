"""Triton `config.pbtxt`: generated from the exported ONNX graph's own inputs and outputs, so names,
dims and types cannot drift from the model, and checked against it again by `ufo store verify`.

The text is produced and parsed with Triton's own protobuf schema (`tritonclient.grpc.model_config_pb2`
and `google.protobuf.text_format`), so what we write is exactly what tritonserver will parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

CONFIG_FILE = "config.pbtxt"
BACKEND = "onnxruntime"  # NVIDIA's native backend on GPU images; our Python-based shim on CPU-only ones
THREADS_PARAMETER = "intra_op_thread_count"  # the key NVIDIA's onnxruntime backend reads, too

Kind = Literal["gpu", "cpu", "auto"]  # auto: GPU instances where a GPU exists, else CPU
VersionPolicy = Literal["all", "latest"]

_KINDS = {
    "gpu": mc.ModelInstanceGroup.KIND_GPU,
    "cpu": mc.ModelInstanceGroup.KIND_CPU,
    "auto": mc.ModelInstanceGroup.KIND_AUTO,
}
_ONNX_TO_TRITON: dict[int, str] = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.DOUBLE: "TYPE_FP64",
    onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output as Triton sees it: dims leave out the (dynamic) batch axis."""

    name: str
    data_type: str  # Triton's name, e.g. "TYPE_FP32"
    dims: tuple[int, ...]  # -1 for a dynamic axis


@dataclass(frozen=True)
class GraphSignature:
    """The inputs/outputs of an ONNX graph and whether its first axis is a dynamic batch axis."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic_batch: bool


@dataclass(frozen=True)
class ServingOptions:
    """How Triton should run a model: the deliberate choices that go into config.pbtxt.

    Defaults: no preferred batch sizes and no queue delay, so the dynamic batcher runs whatever has
    queued while the instance was busy (batching under load, no added latency for a lone request).
    Auto-completed configs add `preferred_batch_size: [max_batch_size]`, which makes a lone request wait
    the full queue delay; we write the field ourselves and serve with auto-complete disabled.
    """

    kind: Kind = "gpu"
    max_batch_size: int = 32
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    instances: int = 1
    intra_op_threads: int | None = None
    tensorrt: bool = False
    tensorrt_fp16: bool = False
    version_policy: VersionPolicy = "all"
    extra_parameters: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {self.kind!r}")
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ValueError(f"preferred_batch_sizes {bad} outside 1..max_batch_size={self.max_batch_size}")
        if self.max_queue_delay_us < 0 or self.instances < 1:
            raise ValueError("max_queue_delay_us must be >= 0 and instances >= 1")
        if self.intra_op_threads is not None and self.intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0, got {self.intra_op_threads}")
        if self.tensorrt and self.kind == "cpu":
            raise ValueError("the TensorRT accelerator needs kind='gpu' or 'auto'")
        if self.version_policy not in ("all", "latest"):
            raise ValueError(f"version_policy must be 'all' or 'latest', got {self.version_policy!r}")


def _tensor_spec(value: onnx.ValueInfoProto, batched: bool) -> TensorSpec:
    tensor_type = value.type.tensor_type
    if tensor_type.elem_type not in _ONNX_TO_TRITON:
        raise ValueError(f"tensor {value.name!r} has unsupported ONNX type {tensor_type.elem_type}")
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
    return TensorSpec(value.name, _ONNX_TO_TRITON[tensor_type.elem_type], dims[1:] if batched else dims)


def _has_dynamic_batch(value: onnx.ValueInfoProto) -> bool:
    dims = value.type.tensor_type.shape.dim
    return len(dims) > 0 and not dims[0].HasField("dim_value")


def read_graph_signature(model: Path | onnx.ModelProto) -> GraphSignature:
    """Read an ONNX model's inputs/outputs (initializers excluded) in Triton's terms."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    initializers = {init.name for init in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in initializers]
    outputs = list(proto.graph.output)
    batched = all(_has_dynamic_batch(v) for v in inputs + outputs)
    return GraphSignature(
        inputs=tuple(_tensor_spec(v, batched) for v in inputs),
        outputs=tuple(_tensor_spec(v, batched) for v in outputs),
        dynamic_batch=batched,
    )


def _add_tensors(target, specs: Sequence[TensorSpec]) -> None:
    for spec in specs:
        entry = target.add()
        entry.name = spec.name
        entry.data_type = mc.DataType.Value(spec.data_type)
        entry.dims.extend(spec.dims)


def _profile_shapes(signature: GraphSignature, batch: int) -> str:
    """TensorRT optimisation-profile shapes for the graph inputs at one batch size ("pixels:8x3x64x48")."""
    return ",".join(f"{s.name}:{'x'.join(str(d) for d in (batch, *s.dims))}" for s in signature.inputs)


def _add_tensorrt(config: mc.ModelConfig, options: ServingOptions, signature: GraphSignature) -> None:
    """TensorRT as ONNX Runtime's accelerator (the CUDA execution provider runs what TensorRT cannot), with one
    optimisation profile over the whole batch range so no engine is rebuilt while serving; engines cached."""
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add()
    accelerator.name = "tensorrt"
    accelerator.parameters["precision_mode"] = "FP16" if options.tensorrt_fp16 else "FP32"
    accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
    accelerator.parameters["trt_engine_cache_enable"] = "1"
    if all(d > 0 for s in signature.inputs for d in s.dims):  # profiles need every non-batch dim fixed
        optimal = max(options.preferred_batch_sizes, default=options.max_batch_size)
        accelerator.parameters["trt_profile_min_shapes"] = _profile_shapes(signature, 1)
        accelerator.parameters["trt_profile_opt_shapes"] = _profile_shapes(signature, optimal)
        accelerator.parameters["trt_profile_max_shapes"] = _profile_shapes(signature, options.max_batch_size)


def gpu_serving_options(max_batch_size: int = 32, *, tensorrt: bool = True, fp16: bool = True,
                        instances: int = 1) -> ServingOptions:
    """The GPU serving choice: KIND_GPU on NVIDIA's native onnxruntime backend (CUDA execution provider),
    TensorRT fp16 as accelerator (the parity gate refuses a version it moves too far), dynamic batching that
    prefers the largest batches with a 100 us queue delay. The preferred sizes and the delay are NOT measured
    yet (no GPU run so far: docs/gpu.md); bench/gpu.sh measures batched vs unbatched on a card."""
    preferred = tuple(sorted({b for b in (max_batch_size // 4, max_batch_size // 2, max_batch_size) if b >= 1}))
    return ServingOptions(kind="gpu", max_batch_size=max_batch_size, preferred_batch_sizes=preferred,
                          max_queue_delay_us=100, instances=instances, tensorrt=tensorrt, tensorrt_fp16=fp16)


def build_model_config(model_name: str, signature: GraphSignature, options: ServingOptions) -> mc.ModelConfig:
    """The full Triton model config for a model with this graph signature."""
    if not signature.dynamic_batch:
        raise ValueError(f"model {model_name!r}: the graph has no dynamic batch axis, Triton batching needs one")
    config = mc.ModelConfig(name=model_name, backend=BACKEND, max_batch_size=options.max_batch_size)
    config.default_model_filename = "model.onnx"
    _add_tensors(config.input, signature.inputs)
    _add_tensors(config.output, signature.outputs)
    config.dynamic_batching.preferred_batch_size.extend(options.preferred_batch_sizes)
    config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    group = config.instance_group.add()
    group.count = options.instances
    group.kind = _KINDS[options.kind]
    if options.version_policy == "all":
        config.version_policy.all.SetInParent()
    else:
        config.version_policy.latest.num_versions = 1
    if options.intra_op_threads is not None:
        config.parameters[THREADS_PARAMETER].string_value = str(options.intra_op_threads)
    for key, value in options.extra_parameters.items():
        config.parameters[key].string_value = value
    if options.tensorrt:
        _add_tensorrt(config, options, signature)
    return config


def render_config(config: mc.ModelConfig) -> str:
    """config.pbtxt text: a short header comment, then protobuf text format."""
    batching = config.dynamic_batching
    header = (
        "# Generated by model_store.export from the ONNX graph's own inputs/outputs; do not edit by hand.\n"
        "# Serve with auto-complete disabled (--disable-auto-complete-config) so Triton uses it as written.\n"
        f"# Dynamic batching, deliberately: preferred sizes {list(batching.preferred_batch_size)}, "
        f"max queue delay {batching.max_queue_delay_microseconds} us (zero values are omitted below).\n"
    )
    return header + text_format.MessageToString(config)


def parse_config(text: str) -> mc.ModelConfig:
    """Parse config.pbtxt text with Triton's schema; raises ValueError naming the parse error."""
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ValueError(f"not a valid Triton model config: {exc}") from exc


def read_config(path: Path) -> mc.ModelConfig:
    """Read and parse a config.pbtxt file."""
    return parse_config(Path(path).read_text(encoding="utf-8"))


def _spec_of(entry) -> TensorSpec:
    return TensorSpec(entry.name, mc.DataType.Name(entry.data_type), tuple(entry.dims))


def config_disagreements(config: mc.ModelConfig, signature: GraphSignature) -> list[str]:
    """Human-readable differences between a parsed config and an ONNX graph signature (empty if none)."""
    problems: list[str] = []
    if config.max_batch_size > 0 and not signature.dynamic_batch:
        problems.append(f"max_batch_size is {config.max_batch_size} but the graph has no dynamic batch axis")
    if config.max_batch_size == 0 and signature.dynamic_batch:
        problems.append("max_batch_size is 0 but the graph has a dynamic batch axis")
    for role, declared, actual in (
        ("input", config.input, signature.inputs),
        ("output", config.output, signature.outputs),
    ):
        declared_specs = {e.name: _spec_of(e) for e in declared}
        actual_specs = {s.name: s for s in actual}
        if set(declared_specs) != set(actual_specs):
            problems.append(f"{role} names {sorted(declared_specs)} != graph {role}s {sorted(actual_specs)}")
            continue
        for name, spec in actual_specs.items():
            have = declared_specs[name]
            if have.data_type != spec.data_type:
                problems.append(f"{role} {name!r} data_type {have.data_type} != graph {spec.data_type}")
            if have.dims != spec.dims:
                problems.append(f"{role} {name!r} dims {list(have.dims)} != graph {list(spec.dims)}")
    return problems
