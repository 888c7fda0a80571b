"""The parity set: golden inputs, and the comparison between ONNX Runtime's output and PyTorch's.

Torch-free on purpose: `ufo store verify` and the serving images need only numpy and onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def golden_images(count: int, input_size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """`count` deterministic uint8 RGB images [N,H,W,3]: a colour gradient, then smooth random blobs
    (blocky noise, so they exercise the whole input rather than averaging out like white noise)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    h, w = input_size
    rng = np.random.default_rng(seed)
    images = np.empty((count, h, w, 3), dtype=np.uint8)
    ys, xs = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    images[0] = (np.stack([ys, xs, 1 - (ys + xs) / 2], axis=-1) * 255).round().astype(np.uint8)
    for i in range(1, count):
        cell = 2 + i  # a different blob size per image
        low = rng.integers(0, 256, size=(-(-h // cell), -(-w // cell), 3), dtype=np.uint8)
        images[i] = np.repeat(np.repeat(low, cell, axis=0), cell, axis=1)[:h, :w]
    return images


def cosine_similarities(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Row-wise cosine between two [N,D] arrays (0 where a row is all zeros)."""
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    a = actual.astype(np.float64)
    b = expected.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-300), 0.0)


def onnx_embeddings(onnx_path: Path, pixels: np.ndarray, threads: int = 1) -> np.ndarray:
    """Run the exported graph with ONNX Runtime on the CPU: float32 pixels [N,3,H,W] → embeddings [N,D]."""
    import onnxruntime as ort  # imported here so importing this module stays cheap

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors surface as exceptions; ORT's own warnings are noise here
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return session.run(None, {input_name: np.ascontiguousarray(pixels, dtype=np.float32)})[0]
