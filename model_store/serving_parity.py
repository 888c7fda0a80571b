"""The parity gate on the serving backend: before a model version goes live, its manifest's parity images go
through the backend that will actually serve it (Triton on a GPU with TensorRT fp16, the embedded ONNX
Runtime, ...) and every embedding must reach the manifest's `parity.serving_min_cosine` against the stored
PyTorch reference. The sha256 check at load proves the file is the exported one; only this proves the
served numbers are (an fp16 engine or a changed backend could drift silently).

Backend-agnostic: the caller passes an async `embed(pixels [N,3,H,W] float32) -> [N,D]`. Used by the gateway
(start-up, upgrades, other replicas adopting a version: service/api/upgrades.py) and by
`ufo store verify --backend triton --url HOST:PORT` (`triton_embedder`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_store.manifest import MANIFEST_FILE, Manifest, load_parity, normalize_images, read_manifest
from model_store.parity import cosine_similarities

EmbedPixels = Callable[[np.ndarray], Awaitable[np.ndarray]]


class ParityGateError(RuntimeError):
    """The serving backend's embeddings of the parity images are too far from the reference."""


@dataclass(frozen=True)
class ParityOutcome:
    """Per-image cosines of the served embeddings against the reference, and the threshold they needed."""

    model_version: str
    cosines: np.ndarray
    threshold: float

    @property
    def passed(self) -> bool:
        return bool(self.cosines.size) and bool((self.cosines >= self.threshold).all())

    @property
    def message(self) -> str:
        worst = float(self.cosines.min()) if self.cosines.size else float("nan")
        if self.passed:
            return f"{self.model_version}: serving parity ok (min cosine {worst:.6f} >= {self.threshold})"
        bad = ", ".join(f"#{i}: {self.cosines[i]:.6f}" for i in np.flatnonzero(self.cosines < self.threshold))
        return (f"{self.model_version}: the serving backend's embeddings of the manifest's parity images fall "
                f"below parity.serving_min_cosine={self.threshold} ({bad}); refusing this version")


def parity_pixels(version_dir: Path, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """(pixels [N,3,H,W] as the backend takes them, reference embeddings [N,D])."""
    images, expected = load_parity(version_dir, manifest)
    return normalize_images(images, manifest.mean, manifest.std), expected.astype(np.float32)


def compare(actual: np.ndarray, expected: np.ndarray, manifest: Manifest) -> ParityOutcome:
    """The outcome for served embeddings `actual`; a wrong shape counts as failing every image."""
    label = f"{manifest.model_name}/{manifest.version}"
    actual = np.asarray(actual, dtype=np.float32)
    if actual.shape != expected.shape:
        raise ParityGateError(f"{label}: the serving backend answered shape {actual.shape} for the parity images, "
                              f"the reference is {expected.shape}; refusing this version")
    return ParityOutcome(label, cosine_similarities(actual, expected), manifest.parity.serving_min_cosine)


async def check_serving_parity(embed: EmbedPixels, version_dir: Path,
                               manifest: Manifest | None = None) -> ParityOutcome:
    """Embed the parity images through `embed` and compare (never raises on a mismatch: see `require`)."""
    version_dir = Path(version_dir)
    manifest = manifest or read_manifest(version_dir / MANIFEST_FILE)
    pixels, expected = parity_pixels(version_dir, manifest)
    return compare(await embed(pixels), expected, manifest)


async def require_serving_parity(embed: EmbedPixels, version_dir: Path,
                                 manifest: Manifest | None = None) -> ParityOutcome:
    """`check_serving_parity`, raising `ParityGateError` (the message names the images and cosines) on failure."""
    outcome = await check_serving_parity(embed, version_dir, manifest)
    if not outcome.passed:
        raise ParityGateError(outcome.message)
    return outcome


def triton_embedder(url: str, model_name: str, version: int, *, protocol: str = "grpc",
                    timeout_s: float = 60.0) -> EmbedPixels:
    """An `EmbedPixels` calling a Triton server directly (first input and output of the model's metadata)."""
    import asyncio

    def infer(pixels: np.ndarray) -> np.ndarray:
        if protocol == "grpc":
            import tritonclient.grpc as client_module
        else:
            import tritonclient.http as client_module
        client = client_module.InferenceServerClient(url=url)
        try:
            meta = client.get_model_metadata(model_name, str(version))
            as_dict = meta if isinstance(meta, dict) else {"inputs": [{"name": i.name} for i in meta.inputs],
                                                           "outputs": [{"name": o.name} for o in meta.outputs]}
            in_name, out_name = as_dict["inputs"][0]["name"], as_dict["outputs"][0]["name"]
            tensor = client_module.InferInput(in_name, list(pixels.shape), "FP32")
            tensor.set_data_from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
            wanted = client_module.InferRequestedOutput(out_name)
            kwargs = {"client_timeout": timeout_s} if protocol == "grpc" else {}
            result = client.infer(model_name, [tensor], model_version=str(version), outputs=[wanted], **kwargs)
            return result.as_numpy(out_name)
        finally:
            client.close()

    async def embed(pixels: np.ndarray) -> np.ndarray:
        return await asyncio.to_thread(infer, pixels)

    return embed
