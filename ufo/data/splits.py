"""A task's train / val / test splits from what its reader found, by the task's evaluation protocol (the
protocols: `ufo.tasks`). `ufo.datasets.load_task_data` reads a task folder and calls `split_task`.

Splits:
- train: the training identities that are not held out, labels remapped to 0..C-1 in sorted order of the
  original labels.
- val: `round(val_fraction * identities)` TRAIN identities held out, chosen by `seed` among those that can
  form a valid evaluation (re-id: images from >= 2 cameras; face and product: >= 2 images), at least one
  identity always left for training. Turned into an EvalSet: re-id: per held-out identity one query image
  per camera, the rest gallery, keeping only queries that still have a same-identity gallery image from
  another camera (Market's same-id-same-camera exclusion would leave them unanswerable); product: query =
  gallery = the held-out images; face: balanced same / different pairs among the held-out images (all same
  pairs up to `max_pairs`, as many different pairs). Val labels are the original ones.
- test: the dataset's own test split: re-id query / gallery folders, SOP test list (query = gallery), face
  test folders with pairs.txt. Labels as the layout gives them (face: index of the test identity folder);
  they share no identities with train and are only compared within the EvalSet.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ufo.data.types import DataError, EvalSet, Sample, TaskData

log = logging.getLogger(__name__)

def group_by_label(samples: Sequence[Sample]) -> dict[int, list[Sample]]:
    groups: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[sample.label].append(sample)
    return dict(groups)


def split_query_gallery(
    samples: Sequence[Sample], rng: np.random.Generator
) -> tuple[list[Sample], list[Sample]]:
    """One identity's images -> (queries, gallery): at most one query per camera, in random camera order,
    each query kept only if the gallery still holds an image of this identity from another camera."""
    by_camera: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_camera[sample.camera].append(sample)
    gallery = list(samples)
    queries: list[Sample] = []
    for camera in rng.permutation(sorted(by_camera)).tolist():
        options = by_camera[camera]
        candidate = options[int(rng.integers(len(options)))]
        rest = [s for s in gallery if s is not candidate]
        if all(any(g.camera != q.camera for g in rest) for q in [*queries, candidate]):
            queries.append(candidate)
            gallery = rest
    return queries, gallery


def make_face_pairs(
    samples: Sequence[Sample], rng: np.random.Generator, max_pairs: int = 300
) -> list[tuple[int, int, bool]]:
    """Balanced (i, j, same) pairs over `samples`: up to `max_pairs` same pairs, as many different pairs."""
    labels = np.asarray([s.label for s in samples])
    same = [(i, j) for i in range(len(samples)) for j in range(i + 1, len(samples)) if labels[i] == labels[j]]
    chosen = rng.permutation(len(same))[:max_pairs]
    pairs = [(same[c][0], same[c][1], True) for c in sorted(chosen.tolist())]
    if len(np.unique(labels)) < 2:
        return pairs
    different: set[tuple[int, int]] = set()
    n_different = min(len(pairs), len(samples) * (len(samples) - 1) // 2 - len(same))  # never loop forever
    while len(different) < n_different:
        i, j = sorted(rng.choice(len(samples), size=2, replace=False).tolist())
        if labels[i] != labels[j]:
            different.add((i, j))
    return pairs + [(i, j, False) for i, j in sorted(different)]


def _eligible(protocol: str, samples: list[Sample]) -> bool:
    if protocol == "reid":
        return len({s.camera for s in samples}) >= 2
    return len(samples) >= 2


def hold_out_identities(
    task: str, protocol: str, train: Sequence[Sample], val_fraction: float, seed: int
) -> tuple[list[Sample], dict[int, list[Sample]]]:
    """(kept train samples, held-out identity -> samples); see the module docstring for the rule."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups = group_by_label(train)
    wanted = min(int(round(val_fraction * len(groups))), len(groups) - 1)
    eligible = sorted(label for label, group in groups.items() if _eligible(protocol, group))
    if wanted > len(eligible):
        log.warning("%s: only %d identities can form a val set, %d wanted", task, len(eligible), wanted)
        wanted = len(eligible)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(eligible, size=wanted, replace=False).tolist()) if wanted else set()
    kept = [s for s in train if s.label not in held]
    return kept, {label: groups[label] for label in sorted(held)}


def build_val_set(protocol: str, held: dict[int, list[Sample]], seed: int) -> EvalSet:
    """EvalSet over held-out identities, by the task's protocol (module docstring)."""
    rng = np.random.default_rng([seed, 1])  # a stream apart from the identity choice
    samples = [s for label in sorted(held) for s in held[label]]
    if protocol == "reid":
        query, gallery = [], []
        for label in sorted(held):
            q, g = split_query_gallery(held[label], rng)
            query += q
            gallery += g
        return EvalSet(query, gallery)
    if protocol == "verification":
        return EvalSet(samples, samples, make_face_pairs(samples, rng))
    return EvalSet(samples, samples)


def remap_labels(samples: Sequence[Sample]) -> tuple[list[Sample], int]:
    """Labels -> 0..C-1 in sorted order of the original labels."""
    mapping = {label: i for i, label in enumerate(sorted({s.label for s in samples}))}
    return [Sample(s.path, mapping[s.label], s.camera) for s in samples], len(mapping)


def split_task(task: str, protocol: str, train_all: list[Sample], test: EvalSet, *, val_fraction: float,
               seed: int) -> TaskData:
    """TaskData: train (remapped labels), val (held-out train identities), test (the dataset's own split).
    Deterministic for a given `seed`."""
    kept, held = hold_out_identities(task, protocol, train_all, val_fraction, seed)
    train, num_classes = remap_labels(kept)
    val = build_val_set(protocol, held, seed)
    log.info(
        "%s: train %d images / %d ids, val %d ids (%d query, %d gallery), test %d query / %d gallery",
        task, len(train), num_classes, len(held), len(val.query), len(val.gallery), len(test.query),
        len(test.gallery),
    )
    return TaskData(task=task, train=train, num_classes=num_classes, val=val, test=test)
