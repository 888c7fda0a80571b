"""The Triton workers go away: answers are 503 + Retry-After and /readyz is false — fast, never a hang or a 500."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

from PIL import Image

from model_store.triton import TritonServer, free_port

from .conftest import MODELS, start_server


def image() -> str:
    out = io.BytesIO()
    Image.linear_gradient("L").resize((48, 64)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_triton_stopped_means_503_and_not_ready(api_repo: Path, tmp_path: Path) -> None:
    with TritonServer(api_repo, load_models=list(MODELS.values()), ready_timeout_s=120) as triton:
        live = start_server(api_repo, tmp_path, backend="triton", triton__url=triton.grpc_url,
                            triton__timeout_s="3", triton__retries="1")
        try:
            with live.client() as client:
                vector = [1.0] + [0.0] * 127
                assert client.post("/v1/tasks/face/items", json={"id": "kept", "embedding": vector}).status_code == 200
                assert client.post("/v1/tasks/face/embed", json={"images": [image()]}).status_code == 200
                assert client.get("/readyz").status_code == 200

                triton.stop()
                for path, body in [("/v1/tasks/face/embed", {"images": [image()]}),
                                   ("/v1/tasks/face/search", {"image": image()}),
                                   ("/v1/tasks/face/verify", {"image_a": image(), "image_b": image()}),
                                   ("/v1/tasks/face/items", {"id": "new", "image": image()})]:
                    started = time.monotonic()
                    response = client.post(path, json=body)
                    assert time.monotonic() - started < 15, f"{path} took too long"
                    assert response.status_code == 503, response.text
                    assert int(response.headers["retry-after"]) >= 1
                    assert response.headers["content-type"] == "application/problem+json"
                    assert "triton" in response.json()["detail"]

                ready = client.get("/readyz")
                assert ready.status_code == 503 and ready.json()["ready"] is False
                assert ready.json()["checks"]["backend"] is False
                assert client.get("/healthz").status_code == 200  # alive, just not ready
                # The gallery does not need the backend: searching by embedding still works.
                hits = client.post("/v1/tasks/face/search", json={"embedding": vector, "k": 1}).json()["hits"]
                assert [h["id"] for h in hits] == ["kept"]
                assert client.get("/v1/tasks/face/items/new").status_code == 404
        finally:
            code = live.stop()
    assert code in (0, -15) and "Application shutdown complete" in live.logs(), live.logs()[-3000:]
    assert "Traceback" not in live.logs()


def test_triton_never_started_is_not_ready(api_repo: Path, tmp_path: Path) -> None:
    """Over tritonclient's HTTP protocol this time: the gateway starts anyway, not ready, 503 on use."""
    live = start_server(api_repo, tmp_path, backend="triton", triton__url=f"127.0.0.1:{free_port()}",
                        triton__protocol="http", triton__timeout_s="2", triton__retries="0")
    try:
        with live.client() as client:
            assert client.get("/readyz").status_code == 503
            response = client.post("/v1/tasks/face/embed", json={"images": [image()]})
            assert response.status_code == 503 and "retry-after" in response.headers
    finally:
        assert live.stop() in (0, -15)  # uvicorn re-raises the SIGTERM it handled gracefully
