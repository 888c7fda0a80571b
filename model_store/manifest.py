"""The manifest: one JSON file per model version that says what the model is and how to feed it.

`<repo>/<model>/<version>/manifest.json` sits next to `model.onnx`. The service reads its preprocessing
(input size, mean, std, interpolation) and verification threshold from here and nowhere else; `ufo store
verify` checks the ONNX file's hash and the parity set against it. The JSON Schema in
`model_store/manifest.schema.json` is generated from this model (`python -m model_store.manifest`).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from model_store.files import write_text_atomic
from model_store.preprocessing import PAPER_MEAN, PAPER_STD, normalize

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
PARITY_IMAGES_FILE = "parity_images.npy"
PARITY_EMBEDDINGS_FILE = "parity_embeddings.npy"
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")

# Tasks are open: the training side's registry (ufo.tasks) decides which exist; a served task is any model in the
# repository. A name is also a URL path segment and part of a Triton model name, hence the pattern.
TASK_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
Task = Annotated[str, Field(pattern=TASK_NAME_PATTERN)]
Precision = Literal["fp32", "fp16"]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]


class ParitySet(BaseModel):
    """Golden inputs with the embeddings PyTorch produced for them, stored as .npy files beside the
    manifest. `images` are uint8 RGB [N,H,W,3] already at the input size (so only mean/std remain to
    apply); `embeddings` are float32 [N,D], L2-normalised."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: FileName = PARITY_IMAGES_FILE
    embeddings: FileName = PARITY_EMBEDDINGS_FILE
    count: int = Field(ge=1)
    min_cosine: float = Field(gt=0.0, le=1.0, description="per-input cosine the ONNX output must reach")
    # The serving backend (Triton on GPU, maybe TensorRT fp16) may round differently from ONNX Runtime on the CPU:
    # its own, looser gate, checked before a version goes live. Manifests written before it get the default.
    serving_min_cosine: float = Field(
        default=0.999, gt=0.0, le=1.0,
        description="per-input cosine the serving backend's output must reach before the version goes live",
    )


class Manifest(BaseModel):
    """Everything a consumer needs to know about one exported model version."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="UFO model manifest")

    schema_version: Literal[1] = SCHEMA_VERSION
    task: Task
    model_name: FileName
    version: int = Field(ge=1)
    architecture: dict[str, Any] = Field(description="the subnet config the model was built from")
    embedding_dim: int = Field(ge=1)
    input_size: tuple[int, int] = Field(description="[H, W] the image is resized to, no crop")
    mean: tuple[float, float, float] = PAPER_MEAN  # preprocessing: model_store.preprocessing
    std: tuple[float, float, float] = PAPER_STD
    interpolation: Literal["bicubic"] = "bicubic"
    channel_order: Literal["RGB"] = "RGB"
    params: int = Field(ge=0)
    flops: int = Field(ge=0, description="FLOPs per image (a multiply-add counts 2)")
    metrics: dict[str, Any] = Field(default_factory=dict, description="held-out metrics from the report")
    verification_threshold: float | None = Field(
        default=None, description="cosine above which two images are the same identity (verify/no_match)"
    )
    onnx_file: FileName = MODEL_FILE
    onnx_sha256: Sha256
    opset: int = Field(ge=1)
    source_checkpoint_sha256: Sha256 | None = None
    precision: Precision = "fp32"
    created_at: datetime
    parity: ParitySet


def read_manifest(path: Path) -> Manifest:
    """Load and validate a manifest file (raises pydantic.ValidationError or OSError)."""
    return Manifest.model_validate_json(Path(path).read_text(encoding="utf-8"))


def write_manifest(manifest: Manifest, path: Path) -> None:
    """Write a manifest atomically as indented JSON."""
    write_text_atomic(Path(path), manifest.model_dump_json(indent=2) + "\n")


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of the manifest, as the checked-in schema file holds it."""
    return Manifest.model_json_schema(mode="validation")


def render_json_schema() -> str:
    """The exact text of `manifest.schema.json` (stable key order, trailing newline)."""
    return json.dumps(manifest_json_schema(), indent=2, sort_keys=True) + "\n"


def load_parity(version_dir: Path, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """Read the parity images (uint8 NHWC) and expected embeddings (float32 [N,D])."""
    images = np.load(Path(version_dir) / manifest.parity.images, allow_pickle=False)
    embeddings = np.load(Path(version_dir) / manifest.parity.embeddings, allow_pickle=False)
    return images, embeddings


def normalize_images(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 RGB [N,H,W,3] (already resized) → float32 pixels [N,3,H,W] with the manifest's mean/std."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images [N,H,W,3], got shape {images.shape}")
    return normalize(images, mean, std)


def main() -> int:
    """Regenerate (default) or check (`--check`) the checked-in JSON Schema file."""
    text = render_json_schema()
    if "--check" in sys.argv[1:]:
        in_sync = SCHEMA_PATH.exists() and SCHEMA_PATH.read_text(encoding="utf-8") == text
        print(f"{SCHEMA_PATH}: {'in sync' if in_sync else 'OUT OF DATE (run python -m model_store.manifest)'}")
        return 0 if in_sync else 1
    write_text_atomic(SCHEMA_PATH, text)
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
