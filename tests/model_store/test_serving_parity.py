"""The parity gate on the serving backend, on the real CPU tritonserver: a perturbed model version (weights
changed, its manifest's sha256 updated, so only parity can catch it) is refused by the gateway's upgrade
and by `ufo store verify --backend triton`, while the old version keeps serving; the demo models pass."""

from __future__ import annotations

import asyncio
import base64
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from numpy.testing import assert_allclose
from PIL import Image

from model_store.files import sha256_file
from model_store.manifest import MANIFEST_FILE, Manifest, read_manifest, write_manifest
from model_store.parity import onnx_embeddings
from model_store.serving_parity import ParityGateError, check_serving_parity, compare, parity_pixels
from model_store.triton import TritonServer
from tests.service.api.conftest import export_random_vit, start_server

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODELS = ROOT / "demo" / "models"


def perturb_version(model_dir: Path, source: int = 1, target: int = 2, scale: float = 0.3) -> Path:
    """Copy version `source` to `target` with every float weight moved by `scale`·(its std) of seeded noise, and
    the manifest rewritten to match the new file (version, sha256): integrity checks pass, numbers do not."""
    src, dst = model_dir / str(source), model_dir / str(target)
    shutil.copytree(src, dst)
    manifest = read_manifest(dst / MANIFEST_FILE)
    proto = onnx.load(str(dst / manifest.onnx_file))
    rng = np.random.default_rng(0)
    for init in proto.graph.initializer:
        weights = onnx.numpy_helper.to_array(init)
        if weights.dtype == np.float32 and weights.size > 16:
            noisy = weights + scale * weights.std() * rng.standard_normal(weights.shape).astype(np.float32)
            init.CopyFrom(onnx.numpy_helper.from_array(noisy.astype(np.float32), init.name))
    onnx.save(proto, str(dst / manifest.onnx_file))
    sha256 = sha256_file(dst / manifest.onnx_file)
    write_manifest(manifest.model_copy(update={"version": target, "onnx_sha256": sha256}), dst / MANIFEST_FILE)
    return dst


def png_b64(pixels_hwc: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels_hwc).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def face_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ufo_face/1 (a seeded random demo ViT) and ufo_face/2 (the same, perturbed, integrity intact)."""
    repository = tmp_path_factory.mktemp("parity") / "repo"
    export_random_vit(repository, "face", "ufo_face", seed=3)
    perturb_version(repository / "ufo_face")
    return repository


def test_old_manifests_get_the_default_serving_threshold(face_repo: Path) -> None:
    data = read_manifest(face_repo / "ufo_face" / "1" / MANIFEST_FILE).model_dump(mode="json")
    del data["parity"]["serving_min_cosine"]
    assert Manifest.model_validate(data).parity.serving_min_cosine == 0.999
    for bad in (0.0, 1.5):
        data["parity"]["serving_min_cosine"] = bad
        with pytest.raises(ValueError, match="serving_min_cosine"):
            Manifest.model_validate(data)


def test_perturbed_version_passes_integrity_but_not_parity(face_repo: Path) -> None:
    """The precondition of the gate tests: sha256 agrees, ONNX Runtime's numbers moved past the threshold."""
    version_dir = face_repo / "ufo_face" / "2"
    manifest = read_manifest(version_dir / MANIFEST_FILE)
    assert sha256_file(version_dir / manifest.onnx_file) == manifest.onnx_sha256
    pixels, expected = parity_pixels(version_dir, manifest)
    outcome = compare(onnx_embeddings(version_dir / manifest.onnx_file, pixels), expected, manifest)
    assert not outcome.passed and "serving_min_cosine" in outcome.message, outcome.message


def test_malformed_backend_answers_are_refused(face_repo: Path) -> None:
    version_dir = face_repo / "ufo_face" / "1"

    async def wrong_shape(pixels: np.ndarray) -> np.ndarray:
        return np.ones((len(pixels), 3), np.float32)

    with pytest.raises(ParityGateError, match="shape"):
        asyncio.run(check_serving_parity(wrong_shape, version_dir))


def verify_cli(repository: Path, url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ufo_cli", "store", "verify", "--repository", str(repository),
                           "--backend", "triton", "--url", url], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_gateway_and_verify_refuse_the_perturbed_version_on_triton(face_repo: Path, tmp_path: Path) -> None:
    version_1 = face_repo / "ufo_face" / "1"
    manifest = read_manifest(version_1 / MANIFEST_FILE)
    image = np.load(version_1 / manifest.parity.images)[0]
    with TritonServer(face_repo, load_models=["ufo_face"], ready_timeout_s=120) as triton:
        result = verify_cli(face_repo, triton.grpc_url)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "OK ufo_face/1" in result.stdout, result.stdout
        assert "serving_min_cosine" in result.stdout and "ufo_face/2" in result.stdout, result.stdout
        server = start_server(face_repo, tmp_path / "gw", backend="triton", triton__url=triton.grpc_url,
                              triton__load_models="true")
        try:
            with server.client() as client:
                before = client.post("/v1/tasks/face/embed", json={"images": [png_b64(image)]})
                assert before.status_code == 200 and before.json()["model_version"] == "ufo_face/1", before.text
                refused = client.post("/v1/tasks/face/model/upgrade", json={"version": 2})
                assert refused.status_code == 422, refused.text
                assert "serving_min_cosine" in refused.json()["detail"], refused.json()
                assert "still serving ufo_face/1" in refused.json()["detail"], refused.json()
                assert client.get("/v1/tasks/face/model").json()["model_version"] == "ufo_face/1"
                after = client.post("/v1/tasks/face/embed", json={"images": [png_b64(image)]})
                assert after.status_code == 200 and after.json()["model_version"] == "ufo_face/1", after.text
                assert_allclose(after.json()["embeddings"], before.json()["embeddings"], atol=1e-5)
            logs = server.logs()
            assert "serving ufo_face/1 instead of ufo_face/2" in logs, "a fresh gateway falls back to a passing version"
            assert "not upgrading" in logs, "auto_upgrade at start should have been refused by the gate too"
        finally:
            server.stop()


def test_demo_models_pass_the_gate_on_triton() -> None:
    models = sorted(p.name for p in DEMO_MODELS.iterdir() if p.is_dir())
    with TritonServer(DEMO_MODELS, load_models=models, ready_timeout_s=180) as triton:
        result = verify_cli(DEMO_MODELS, triton.grpc_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("OK ufo_") == len(models), result.stdout
