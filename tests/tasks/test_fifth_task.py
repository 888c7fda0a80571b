"""A fifth task is one registry entry plus a reader: a toy task (coloured shapes, recall protocol) registered
here, trained, searched, trimmed and exported by the science code, then served by a real `ufo serve`
process that was never told about it (the service learns its tasks from the model repository)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.service.api.conftest import start_server
from ufo.data.augment import AugmentConfig
from ufo.data.readers import read_class_folders
from ufo.data.types import EvalSet, Sample
from ufo.export import export_run
from ufo.model.config import largest_config
from ufo.model.cost import subnet_cost
from ufo.model.presets import get_arch
from ufo.search.budget import Budget
from ufo.search.evolution import EvolutionSettings
from ufo.search.run import run_search
from ufo.search.trim import trim
from ufo.tasks import TASK_SPECS, TaskSpec, get_task, register_task
from ufo.train.config import get_train_config
from ufo.train.run import run_training

SHAPES = ("ellipse", "rectangle", "triangle")
COLOURS = ((220, 40, 40), (40, 160, 60), (40, 70, 220), (230, 200, 40))


def read_shapes(folder: Path) -> tuple[list[Sample], EvalSet]:
    """The toy task's reader: `train/<class>/*.png`, `test/<class>/*.png`; the test set is its own gallery."""
    test = read_class_folders(folder / "test")
    return read_class_folders(folder / "train"), EvalSet(test, test)


def shape_image(shape: str, colour: tuple[int, int, int], rng: np.random.Generator) -> bytes:
    image = Image.new("RGB", (48, 64), tuple(int(v) for v in rng.integers(0, 60, 3)))
    x0, y0 = (int(v) for v in rng.integers(2, 14, 2))
    box = (x0, y0, x0 + 30, y0 + 44)
    draw = ImageDraw.Draw(image)
    if shape == "triangle":
        draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=colour)
    else:
        getattr(draw, shape)(box, fill=colour)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def write_shapes(root: Path) -> None:
    """12 classes (shape x colour): 8 train, 4 test, 6 images each."""
    rng = np.random.default_rng(0)
    classes = [(s, c) for s in SHAPES for c in COLOURS]
    for index, (shape, colour) in enumerate(classes):
        split = "train" if index < 8 else "test"
        folder = root / "shapes" / split / f"{shape}-{index}"
        folder.mkdir(parents=True)
        for n in range(6):
            (folder / f"{n}.png").write_bytes(shape_image(shape, colour, rng))


@pytest.fixture
def shapes_task():
    register_task(TaskSpec("shapes", "recall", read_shapes, AugmentConfig(translate=0.05), 30.0, 0.2, True))
    yield get_task("shapes")
    del TASK_SPECS["shapes"]


def test_a_registered_task_trains_exports_and_is_served(shapes_task, tmp_path: Path) -> None:
    write_shapes(tmp_path / "data")
    data, run = tmp_path / "data", tmp_path / "run"
    cfg = get_train_config("demo").with_overrides(tasks=("shapes",), steps=3, batch_per_task=8, checkpoint_every=3)
    metrics = run_training(cfg, data, run / "supernet")
    assert "recall@1" in metrics["metrics"]["test"]["shapes"]  # the protocol's metric, from the registry

    arch = get_arch("demo")
    budget = Budget(max_params=int(0.7 * subnet_cost(arch, largest_config(arch)).params))
    run_search(run / "supernet" / "checkpoint.pt", "shapes", data, run / "search" / "shapes", budget,
               EvolutionSettings(population=4, generations=1), progress=False)
    trim(run / "supernet" / "checkpoint.pt", run / "search" / "shapes" / "search.json", data,
         run / "subnets" / "shapes.pt")
    [version_dir] = export_run(run, tmp_path / "repo", data, ("shapes",), kind="cpu", instances=1)
    assert version_dir.parent.name == "ufo_shapes"

    server = start_server(tmp_path / "repo", tmp_path / "serve")
    try:
        with server.client() as client:
            assert client.get("/v1/tasks").json()["tasks"][0]["task"] == "shapes"
            images = sorted((data / "shapes" / "test").rglob("*.png"))
            for path in images[:3]:
                body = {"id": path.stem + path.parent.name, "image": base64.b64encode(path.read_bytes()).decode()}
                assert client.post("/v1/tasks/shapes/items", json=body).status_code in (200, 201)
            hits = client.post("/v1/tasks/shapes/search", json={"image": base64.b64encode(
                images[0].read_bytes()).decode(), "k": 3}).json()["hits"]
            assert hits[0]["id"] == images[0].stem + images[0].parent.name  # itself, at cosine ~1
    finally:
        server.stop()
