"""One reader per dataset layout family: a task folder -> (training samples, the dataset's own test EvalSet).

A task in the registry (`ufo.tasks`) names one of these; a new task with a new layout adds one here.
Training labels are the layout's own (remapped later by `ufo.data.splits`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ufo.data.readers import read_face_folders, read_face_pairs, read_sop
from ufo.data.readers_lists import ReidLayout, detect_reid_layout
from ufo.data.types import EvalSet, Sample

log = logging.getLogger(__name__)

TaskReader = Callable[[Path], tuple[list[Sample], EvalSet]]


def read_face_task(folder: Path) -> tuple[list[Sample], EvalSet]:
    """`train/<identity>/*` and `test/<identity>/*` face folders, with `test/pairs.txt` (LFW format)."""
    test = read_face_folders(folder / "test")
    pairs = read_face_pairs(folder / "test" / "pairs.txt", folder / "test")
    return read_face_folders(folder / "train"), EvalSet(test, test, pairs)


def read_sop_task(folder: Path) -> tuple[list[Sample], EvalSet]:
    """Stanford Online Products: `Ebay_train.txt`, `Ebay_test.txt`; the test set is its own gallery."""
    test = read_sop(folder, "test")
    return read_sop(folder, "train"), EvalSet(test, test)


def reid_reader(task: str, *layouts: ReidLayout) -> TaskReader:
    """A re-id task read from the first of `layouts` its folder holds (in order of preference); a folder
    holding none of them is one DataError listing what each layout needs."""

    def read(folder: Path) -> tuple[list[Sample], EvalSet]:
        layout = detect_reid_layout(folder, layouts, task)
        log.info("%s: reading %s as %s", task, folder, layout.name)
        return layout.read(folder, "train"), EvalSet(layout.read(folder, "query"), layout.read(folder, "gallery"))

    return read
