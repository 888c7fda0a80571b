"""A Triton Python-based backend named `onnxruntime`: the CPU fallback for our model repositories.

Triton resolves `backend: "onnxruntime"` to `<backend-directory>/onnxruntime/`. On GPU images that folder
holds NVIDIA's native `libtriton_onnxruntime.so`; on CPU-only machines (the tritonserver bundled with
nvidia-pytriton ships only the Python backend) `model_store.triton` puts this file there instead, so the
very same repository loads unchanged in both places.

It runs `<model>/<version>/model.onnx` with the onnxruntime package. A dynamic batch of requests is
concatenated into ONE ONNX Runtime run and the outputs are split back (one run per request would get
nothing from Triton's batching). Every request gets exactly one response; failures are per-request error
responses, never exceptions out of `execute`.

Intra-op threads: the model config parameter `intra_op_thread_count` (the key NVIDIA's backend reads too),
else the environment variable UFO_ORT_INTRA_OP_THREADS, else ONNX Runtime's default (0 = all cores).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

THREADS_PARAMETER = "intra_op_thread_count"
THREADS_ENV = "UFO_ORT_INTRA_OP_THREADS"

_NUMPY_TYPES = {
    "TYPE_FP32": np.float32,
    "TYPE_FP16": np.float16,
    "TYPE_FP64": np.float64,
    "TYPE_INT8": np.int8,
    "TYPE_UINT8": np.uint8,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_BOOL": np.bool_,
}


def intra_op_threads(config: dict) -> int:
    """Threads per ONNX Runtime session: config parameter, then environment, then 0 (ORT decides)."""
    value = config.get("parameters", {}).get(THREADS_PARAMETER, {}).get("string_value")
    if value is None:
        value = os.environ.get(THREADS_ENV, "0")
    return int(value)


def model_path(args: dict, config: dict) -> Path:
    """`<model folder>/<version>/<default_model_filename or model.onnx>`."""
    filename = config.get("default_model_filename") or "model.onnx"
    return Path(args["model_repository"]) / args["model_version"] / filename


class TritonPythonModel:
    """One instance = one ONNX Runtime session (scale with instance_group count, not threads)."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        if int(config.get("max_batch_size", 0)) < 1:
            raise ValueError("the onnxruntime shim needs max_batch_size >= 1 (it batches requests)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads(config)
        options.inter_op_num_threads = 1
        path = model_path(args, config)
        # A missing or corrupt file raises here, so Triton reports the model as failed to load.
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [(i["name"], _NUMPY_TYPES[i["data_type"]], [int(d) for d in i["dims"]]) for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def read_request(self, request) -> dict[str, np.ndarray]:
        """The request's input arrays, checked against the config (raises ValueError)."""
        arrays = {}
        for name, dtype, dims in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input {name!r}")
            array = tensor.as_numpy()
            item_shape = array.shape[1:]
            shape_ok = len(item_shape) == len(dims) and all(d in (-1, s) for d, s in zip(dims, item_shape, strict=True))
            if not shape_ok or array.dtype != dtype:
                raise ValueError(f"input {name!r} is {array.dtype}{list(array.shape)}, expected {dims} per item")
            arrays[name] = array
        rows = {a.shape[0] for a in arrays.values()}
        if len(rows) != 1:
            raise ValueError(f"inputs disagree on batch size: {sorted(rows)}")
        return arrays

    def run_batch(self, batch: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
        """One ORT run over the concatenation of all requests; outputs split back per request."""
        feeds = {name: np.concatenate([arrays[name] for arrays in batch]) for name, _, _ in self.inputs}
        results = self.session.run(self.outputs, feeds)
        first = self.inputs[0][0]
        bounds = np.cumsum([arrays[first].shape[0] for arrays in batch])[:-1]
        per_output = [np.split(result, bounds) for result in results]
        return [[np.ascontiguousarray(parts[i]) for parts in per_output] for i in range(len(batch))]

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        batch, positions = [], []
        for i, request in enumerate(requests):
            try:
                batch.append(self.read_request(request))
                positions.append(i)
            except Exception as exc:  # a bad request fails alone, never the batch
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc)))
        if batch:
            try:
                outputs = self.run_batch(batch)
            except Exception as exc:
                error = pb_utils.TritonError(f"onnxruntime run failed: {exc}")
                outputs = None
            for k, i in enumerate(positions):
                if outputs is None:
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=error)
                else:
                    tensors = [pb_utils.Tensor(n, a) for n, a in zip(self.outputs, outputs[k], strict=True)]
                    responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def finalize(self) -> None:
        self.session = None
