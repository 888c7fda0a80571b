"""Datasets: readers for the standard layouts, task splits, preprocessing, augmentation, samplers.

Modules: `types` (records), `readers` (Market/MSMT, VeRi, SOP, face folders + pairs, class folders),
`readers_lists` (the official MSMT17 and VeRi-776 list files), `loader` (streaming training batches),
`task_readers` (one per layout family), `splits` (train / val / test by protocol; `ufo.datasets.load_task_data`
reads a task), `images` (the paper's preprocessing, `ImageCache`), `augment`, `sampling`
(`IdentitySampler`, `TaskStream`); the demo set is built by `ufo.demo`. Names below are imported lazily, so importing
`ufo.data` (or `ufo.data.images` from the service) never pulls in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DataError": "types", "EvalSet": "types", "Sample": "types", "TaskData": "types",
    "read_market": "readers", "read_veri": "readers", "read_sop": "readers", "read_face_folders": "readers",
    "read_face_pairs": "readers", "read_class_folders": "readers",
    "read_msmt17": "readers_lists", "read_veri_lists": "readers_lists", "read_veri_labels": "readers_lists",
    "load_image": "images", "preprocess": "images", "ImageCache": "images",
    "AugmentConfig": "augment", "augment_batch": "augment",
    "IdentitySampler": "sampling", "ShuffleSampler": "sampling", "TaskStream": "sampling",
    "LoaderStream": "loader", "make_task_stream": "loader",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ufo.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ufo.data.{_EXPORTS[name]}"), name)
