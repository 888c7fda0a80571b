"""`enroll` (ufo serve --enroll TASK=DIR): a labelled folder becomes the gallery at start, once."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

from service.main import parse_enroll

from .conftest import app_settings, running_app


@pytest.fixture
def gallery_folder(tmp_path: Path, faces: dict[str, list[bytes]]) -> Path:
    folder = tmp_path / "gallery"
    for person in ("s29", "s30"):
        (folder / person).mkdir(parents=True)
        for n, image in enumerate(faces[person][:3], start=1):
            (folder / person / f"{person}_{n:04d}.pgm").write_bytes(image)
    (folder / "s29" / "notes.txt").write_text("not an image: skipped by suffix")
    return folder


@pytest.mark.anyio
async def test_folder_enrolled_at_start_once(api_repo: Path, tmp_path: Path, gallery_folder: Path,
                                             faces: dict[str, list[bytes]], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = app_settings(api_repo, tmp_path, enroll={"face": gallery_folder})
    async with running_app(settings) as client:
        assert "enrolled 6 new images" in caplog.text and "try: curl -s -X POST" in caplog.text
        item = await client.get("/v1/tasks/face/items/s30/s30_0002.pgm")  # ids hold a '/': the route takes it
        assert item.status_code == 200 and item.json()["metadata"] == {"label": "s30"}
        query = {"image": base64.b64encode(faces["s30"][1]).decode(), "k": 1}
        hits = (await client.post("/v1/tasks/face/search", json=query)).json()["hits"]
        assert hits[0]["id"] == "s30/s30_0002.pgm"
        assert (await client.delete("/v1/tasks/face/items/s29/s29_0001.pgm")).status_code == 204
    caplog.clear()
    async with running_app(settings) as client:
        assert "enrolled 1 new images" in caplog.text  # only the deleted one comes back
        assert (await client.get("/v1/tasks/face/index")).json()["size"] == 6


def test_enroll_flag_parsing() -> None:
    assert parse_enroll(["face=data/demo/face/test", "product=x"]) == {"face": "data/demo/face/test", "product": "x"}
    with pytest.raises(ValueError, match="TASK=DIR"):
        parse_enroll(["data/demo/face/test"])
