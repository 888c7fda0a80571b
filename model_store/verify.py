"""`ufo store verify`: check every model version in a Triton model repository.

For each `<model>/<version>`: config.pbtxt parses and agrees with the ONNX graph (names, dims, dtypes,
batching); model.onnx's sha256 matches the manifest; the manifest validates and fits the graph; ONNX
Runtime reproduces the parity embeddings (per-input cosine at least the manifest's `min_cosine`); with
`--backend triton --url`, the running Triton's embeddings too (`parity.serving_min_cosine`). Every
problem is one line naming the file it is about. Torch-free: runs wherever onnxruntime does.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from pydantic import ValidationError

from model_store.files import sha256_file
from model_store.manifest import MANIFEST_FILE, MODEL_FILE, Manifest, normalize_images, read_manifest
from model_store.model_config import (
    BACKEND,
    CONFIG_FILE,
    GraphSignature,
    config_disagreements,
    read_config,
    read_graph_signature,
)
from model_store.parity import cosine_similarities, onnx_embeddings

NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Problem:
    """One failed check: the file it concerns and what is wrong."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def list_version_dirs(model_dir: Path) -> list[Path]:
    """Integer-named version folders, ascending (Triton ignores the rest, and so do we)."""
    dirs = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(dirs, key=lambda p: int(p.name))


def check_config(model_dir: Path) -> tuple[object | None, list[Problem]]:
    """Parse config.pbtxt and check what does not depend on a version; returns (config or None, problems)."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return None, [Problem(path, "missing")]
    try:
        config = read_config(path)
    except (ValueError, OSError) as exc:
        return None, [Problem(path, str(exc))]
    problems = []
    if config.name and config.name != model_dir.name:
        problems.append(Problem(path, f"name {config.name!r} differs from its folder {model_dir.name!r}"))
    if config.backend != BACKEND:
        problems.append(Problem(path, f"backend {config.backend!r}, expected {BACKEND!r}"))
    return config, problems


def check_manifest(version_dir: Path) -> tuple[Manifest | None, list[Problem]]:
    """Load and validate manifest.json, and check it names its own folder."""
    path = version_dir / MANIFEST_FILE
    if not path.is_file():
        return None, [Problem(path, "missing")]
    try:
        manifest = read_manifest(path)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return None, [Problem(path, f"invalid manifest: {errors}")]
    except (OSError, ValueError) as exc:
        return None, [Problem(path, f"unreadable: {exc}")]
    problems = []
    if manifest.version != int(version_dir.name):
        problems.append(Problem(path, f"version {manifest.version} but folder is {version_dir.name}"))
    if manifest.model_name != version_dir.parent.name:
        problems.append(Problem(path, f"model_name {manifest.model_name!r} but folder is {version_dir.parent.name!r}"))
    return manifest, problems


def check_graph(onnx_path: Path) -> tuple[GraphSignature | None, list[Problem]]:
    """Load the ONNX file with onnx and run its checker."""
    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
        onnx.checker.check_model(proto)
        return read_graph_signature(proto), []
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...: all mean "not a usable graph"
        return None, [Problem(onnx_path, f"not a valid ONNX model: {type(exc).__name__}: {exc}")]


def check_manifest_fits(manifest: Manifest, signature: GraphSignature, version_dir: Path) -> list[Problem]:
    """The manifest's embedding_dim and input_size agree with the graph."""
    path = version_dir / MANIFEST_FILE
    problems = []
    input_dims = signature.inputs[0].dims if signature.inputs else ()
    output_dims = signature.outputs[0].dims if signature.outputs else ()
    if tuple(input_dims) != (3, *manifest.input_size):
        problems.append(Problem(path, f"input_size {list(manifest.input_size)} but the graph takes {list(input_dims)}"))
    if tuple(output_dims) != (manifest.embedding_dim,):
        message = f"embedding_dim {manifest.embedding_dim} but the graph gives {list(output_dims)}"
        problems.append(Problem(path, message))
    return problems


def check_parity(manifest: Manifest, version_dir: Path, onnx_path: Path) -> list[Problem]:
    """ONNX Runtime on the golden images reproduces the stored PyTorch embeddings, L2-normalised."""
    images_path = version_dir / manifest.parity.images
    expected_path = version_dir / manifest.parity.embeddings
    try:
        images = np.load(images_path, allow_pickle=False)
        expected = np.load(expected_path, allow_pickle=False)
        pixels = normalize_images(images, manifest.mean, manifest.std)
    except (OSError, ValueError) as exc:
        culprit = expected_path if images_path.is_file() else images_path
        return [Problem(culprit, f"parity set unreadable: {exc}")]
    try:
        actual = onnx_embeddings(onnx_path, pixels)
    except Exception as exc:  # onnxruntime raises its own exception types
        return [Problem(onnx_path, f"ONNX Runtime cannot run it: {exc}")]
    if actual.shape != expected.shape:
        return [Problem(expected_path, f"parity mismatch: shape {expected.shape}, ONNX Runtime gives {actual.shape}")]
    problems = []
    cosines = cosine_similarities(actual, expected)
    bad = np.flatnonzero(cosines < manifest.parity.min_cosine)
    if bad.size:
        worst = ", ".join(f"#{i}: {cosines[i]:.6f}" for i in bad)
        message = f"parity mismatch: cosine below {manifest.parity.min_cosine} ({worst})"
        problems.append(Problem(expected_path, message))
    norms = np.linalg.norm(actual, axis=1)
    if np.abs(norms - 1).max() > NORM_TOLERANCE:
        problems.append(Problem(onnx_path, f"output is not L2-normalised (norms {np.round(norms, 4).tolist()})"))
    return problems


def verify_version(version_dir: Path, config) -> list[Problem]:
    """All checks for one `<model>/<version>` folder (config may be None when it failed to parse)."""
    manifest, problems = check_manifest(version_dir)
    onnx_path = version_dir / (manifest.onnx_file if manifest else MODEL_FILE)
    if not onnx_path.is_file():
        return [*problems, Problem(onnx_path, "missing")]
    if manifest and sha256_file(onnx_path) != manifest.onnx_sha256:
        message = f"sha256 differs from {MANIFEST_FILE}'s onnx_sha256 (modified or truncated)"
        problems.append(Problem(onnx_path, message))
    signature, graph_problems = check_graph(onnx_path)
    problems += graph_problems
    if signature is None:
        return problems
    if config is not None:
        config_path = version_dir.parent / CONFIG_FILE
        problems += [Problem(config_path, f"{d} (in {onnx_path})") for d in config_disagreements(config, signature)]
    if manifest:
        problems += check_manifest_fits(manifest, signature, version_dir)
        problems += check_parity(manifest, version_dir, onnx_path)
    return problems


def iter_verified(repository: Path) -> Iterator[tuple[str, list[Problem]]]:
    """Yield ("model" or "model/version", problems) for everything in the repository."""
    repository = Path(repository)
    if not repository.is_dir():
        yield str(repository), [Problem(repository, "repository folder does not exist")]
        return
    model_dirs = sorted(p for p in repository.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not model_dirs:
        yield str(repository), [Problem(repository, "no models in the repository")]
    for model_dir in model_dirs:
        config, problems = check_config(model_dir)
        versions = list_version_dirs(model_dir)
        if not versions:
            problems.append(Problem(model_dir, "no integer version folders"))
        if problems:
            yield model_dir.name, problems
        for version_dir in versions:
            yield f"{model_dir.name}/{version_dir.name}", verify_version(version_dir, config)


def verify_repository(path: Path | str) -> list[Problem]:
    """Every problem in the repository (empty when all models and versions are good)."""
    return [problem for _, problems in iter_verified(Path(path)) for problem in problems]


def serving_problems(repository: Path, label: str, url: str, protocol: str) -> list[Problem]:
    """The parity gate through a running Triton for one "model/version" (`model_store.serving_parity`)."""
    import asyncio

    from model_store.serving_parity import ParityGateError, check_serving_parity, triton_embedder

    model, version = label.split("/")
    version_dir = Path(repository) / model / version
    try:
        outcome = asyncio.run(check_serving_parity(triton_embedder(url, model, int(version), protocol=protocol),
                                                   version_dir))
    except ParityGateError as exc:
        return [Problem(version_dir, str(exc))]
    except Exception as exc:  # tritonclient raises its own types: a server that cannot answer is a failure too
        return [Problem(version_dir, f"Triton at {url} cannot embed the parity images: {type(exc).__name__}: {exc}")]
    return [] if outcome.passed else [Problem(version_dir, outcome.message)]


def cli_verify(args: argparse.Namespace) -> int:
    """`ufo store verify --repository PATH [--backend triton --url HOST:PORT]`: prints "OK model/version" or
    one line per problem; exit 1 on any. With Triton, each version is also embedded through the server."""
    backend = getattr(args, "backend", "onnxruntime")
    url = getattr(args, "url", None)
    if backend == "triton" and not url:
        print("FAIL --backend triton needs --url HOST:PORT (gRPC, or HTTP with --protocol http)")
        return 2
    failures = 0
    checked = 0
    for label, found in iter_verified(Path(args.repository)):
        problems = list(found)
        if backend == "triton" and "/" in label:
            problems += serving_problems(Path(args.repository), label, url, getattr(args, "protocol", "grpc"))
        checked += "/" in label
        if not problems:
            print(f"OK {label}")
        for problem in problems:
            failures += 1
            print(f"FAIL {problem}")
    print(f"{checked} version(s) checked, {failures} problem(s)")
    return 1 if failures else 0
