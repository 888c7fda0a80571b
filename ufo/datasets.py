"""A task's data, read by its registry entry (`ufo.tasks`): train / val / test from `<root>/<task>/`.

Layouts under `<root>/<task>/`:
- face: `train/<identity>/*` and `test/<identity>/*` face folders, and `test/pairs.txt` (LFW format).
- person: Market-1501 (`bounding_box_train/`, `query/`, `bounding_box_test/`) or the MSMT17 release
  (`list_train.txt`, `list_query.txt`, `list_gallery.txt`, `train/`, `test/`).
- vehicle: VeRi-776 with its name lists (`name_train.txt`, `name_query.txt`, `name_test.txt`, labels from
  `train_label.xml` / `test_label.xml` when present) or, without the lists, the image folders alone
  (`image_train/`, `image_query/`, `image_test/`).
  A re-id folder holding none of its task's layouts is one DataError listing what each layout needs.
- product: Stanford Online Products (`Ebay_train.txt`, `Ebay_test.txt`, image paths relative to the folder).
"""

from __future__ import annotations

from pathlib import Path

from ufo.data.splits import split_task
from ufo.data.types import DataError, EvalSet, Sample, TaskData
from ufo.tasks import get_task


def read_task_splits(task: str, folder: Path) -> tuple[list[Sample], EvalSet]:
    """(train samples with original labels, the dataset's own test EvalSet) from `folder`, by the task's reader."""
    return get_task(task).read_splits(folder)


def load_task_data(task: str, root: str | Path, *, val_fraction: float = 0.2, seed: int = 0) -> TaskData:
    """TaskData for `task` from `<root>/<task>/` (`ufo.data.splits.split_task`). Deterministic for a `seed`."""
    spec = get_task(task)
    folder = Path(root) / task
    if not folder.is_dir():
        raise DataError(f"broken layout: task folder {folder} does not exist (expected <root>/{task}/)")
    train_all, test = spec.read_splits(folder)
    return split_task(task, spec.protocol, train_all, test, val_fraction=val_fraction, seed=seed)
