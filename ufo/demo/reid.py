"""Person and vehicle parts of the demo set: SYNTHETIC identities in the Market-1501 / VeRi-776 layouts.

Each identity appears in 2-5 of the cameras with 6-10 images spread over them (every chosen camera at
least once). Training identities go to the train folder; each test identity is split into one query per
camera and the rest gallery, keeping only queries that have a same-identity gallery image from another camera
(the same rule load_task_data uses for val). The person gallery also gets Market's extras: distractors
(identity 0000: other people who never appear as queries) and junk frames (identity -1: background-only
detections, which the reader ignores).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ufo.data.splits import split_query_gallery
from ufo.data.types import Sample
from ufo.demo.synth_common import CameraStyle, apply_camera, draw_background, make_camera_styles
from ufo.demo.synth_person import PERSON_SIZE, PERSON_VIEWS, random_person, render_person
from ufo.demo.synth_vehicle import VEHICLE_VIEWS, random_vehicle, render_vehicle

IMAGES_PER_IDENTITY = (6, 10)  # inclusive
CAMERAS_PER_IDENTITY = (2, 5)  # inclusive, capped by the camera count


@dataclass(frozen=True)
class ReidLayout:
    folders: dict[str, str]  # split -> folder name
    cameras: int
    views: int
    random_look: Callable[[np.random.Generator], Any]
    render: Callable[[Any, CameraStyle, np.random.Generator], Image.Image]
    name: Callable[[int, int, int], str]  # (identity, camera, frame) -> file name


def _market_name(identity: int, camera: int, frame: int) -> str:
    pid = "-1" if identity < 0 else f"{identity:04d}"
    return f"{pid}_c{camera}s1_{frame:06d}_01.jpg"


def _veri_name(identity: int, camera: int, frame: int) -> str:
    return f"{identity:04d}_c{camera:03d}_{frame:08d}_0.jpg"


LAYOUTS: dict[str, ReidLayout] = {
    "person": ReidLayout(
        {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"},
        6, len(PERSON_VIEWS), random_person, render_person, _market_name,
    ),
    "vehicle": ReidLayout(
        {"train": "image_train", "query": "image_query", "gallery": "image_test"},
        5, len(VEHICLE_VIEWS), random_vehicle, render_vehicle, _veri_name,
    ),
}


class _Writer:
    """Renders frames and writes them with unique, increasing frame numbers per camera."""

    def __init__(self, folder: Path, layout: ReidLayout, styles: list[CameraStyle], rng: np.random.Generator):
        self.folder, self.layout, self.styles, self.rng = folder, layout, styles, rng
        self.frames = [0] * len(styles)

    def plan(self, identity: int, camera_index: int) -> Sample:
        self.frames[camera_index] += int(self.rng.integers(1, 60))
        name = self.layout.name(identity, camera_index + 1, self.frames[camera_index])
        return Sample(name, identity, camera_index + 1)

    def write(self, split: str, sample: Sample, image: Image.Image) -> None:
        style = self.styles[sample.camera - 1]
        image.save(self.folder / self.layout.folders[split] / sample.path, quality=style.quality)


def _identity_cameras(rng: np.random.Generator, cameras: int) -> list[int]:
    """Camera index of each image of one identity: 2-5 cameras, each used at least once."""
    used = rng.choice(cameras, size=int(rng.integers(CAMERAS_PER_IDENTITY[0],
                                                     min(CAMERAS_PER_IDENTITY[1], cameras) + 1)), replace=False)
    count = int(rng.integers(IMAGES_PER_IDENTITY[0], IMAGES_PER_IDENTITY[1] + 1))
    return sorted(used.tolist() + rng.choice(used, size=count - len(used)).tolist())


def _write_identity(writer: _Writer, identity: int, train: bool, rng: np.random.Generator) -> list[Sample]:
    look = writer.layout.random_look(rng)
    planned = [writer.plan(identity, c) for c in _identity_cameras(rng, len(writer.styles))]
    images = {s.path: writer.layout.render(look, writer.styles[s.camera - 1], rng) for s in planned}
    if train:
        for sample in planned:
            writer.write("train", sample, images[sample.path])
        return planned
    queries, gallery = split_query_gallery(planned, rng)
    for split, samples in (("query", queries), ("gallery", gallery)):
        for sample in samples:
            writer.write(split, sample, images[sample.path])
    return queries


def _count(samples: list[Sample]) -> dict[str, int]:
    return {"images": len(samples), "identities": len({s.label for s in samples})}


def build_reid(folder: Path, task: str, rng: np.random.Generator, train_ids: int, test_ids: int,
               distractors: int = 0, junk: int = 0) -> dict[str, Any]:
    """Write one synthetic re-id dataset for `task` ('person' | 'vehicle'); return its manifest entry."""
    layout = LAYOUTS[task]
    for name in layout.folders.values():
        (folder / name).mkdir(parents=True)
    styles = make_camera_styles(rng, layout.cameras, layout.views)
    writer = _Writer(folder, layout, styles, rng)
    train: list[Sample] = []
    for identity in range(1, train_ids + 1):
        train += _write_identity(writer, identity, True, rng)
    queries: list[Sample] = []
    for identity in range(train_ids + 1, train_ids + test_ids + 1):
        queries += _write_identity(writer, identity, False, rng)
    for _ in range(distractors):  # Market's 0000: other people, gallery only
        sample = writer.plan(0, int(rng.integers(len(styles))))
        writer.write("gallery", sample, layout.render(layout.random_look(rng), styles[sample.camera - 1], rng))
    for _ in range(junk):  # Market's -1: bad detections (scene only); readers drop them
        sample = writer.plan(-1, int(rng.integers(len(styles))))
        style = styles[sample.camera - 1]
        scene = draw_background(style, PERSON_SIZE, rng)
        writer.write("gallery", sample, apply_camera(scene, style, rng))
    gallery_files = sorted((folder / layout.folders["gallery"]).iterdir())
    gallery_ids = {int(p.name.split("_")[0]) for p in gallery_files}
    return {
        "source": f"SYNTHETIC {task}s (procedural, no real images)",
        "cameras": layout.cameras,
        "train": _count(train),
        "query": _count(queries),
        "gallery": {
            "images": len(gallery_files) - distractors - junk,  # images of the test identities
            "identities": len(gallery_ids - {0, -1}),
            "distractor_images": distractors,
            "junk_images": junk,
        },
    }
