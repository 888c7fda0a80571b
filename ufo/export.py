"""`ufo export`: the trimmed subnets of a pipeline run -> a versioned Triton model repository (model_store).

Per task: the subnet's ONNX graph, config.pbtxt, and a manifest carrying the report's test metrics and the
verification threshold calibrated on the validation identities (the best-accuracy threshold of same/different
pairs), which the service uses for /verify and `no_match`.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np

from ufo.data.types import EvalSet
from ufo.metrics.face import verification_accuracy
from ufo.search.trim import load_subnet
from ufo.tasks import TASKS, parse_tasks
from ufo.train.evaluate import EvalImages

log = logging.getLogger(__name__)

PARITY_IMAGES = 4


def model_name_for(task: str) -> str:
    return f"ufo_{task}"


def validation_pairs(eval_set: EvalSet, max_pairs: int = 4000, seed: int = 0) -> list[tuple[int, int, bool]]:
    """Same/different index pairs over the query list: the set's own pairs (face), else every same-identity
    pair plus as many random different-identity pairs."""
    if eval_set.pairs:
        return list(eval_set.pairs)
    samples = list(eval_set.query) + list(eval_set.gallery) if eval_set.query != eval_set.gallery \
        else list(eval_set.query)
    rng = random.Random(seed)
    same = [(i, j, True) for i in range(len(samples)) for j in range(i + 1, len(samples))
            if samples[i].label == samples[j].label]
    same = rng.sample(same, min(len(same), max_pairs // 2))
    diff: list[tuple[int, int, bool]] = []
    while len(diff) < len(same):
        i, j = rng.randrange(len(samples)), rng.randrange(len(samples))
        if samples[i].label != samples[j].label:
            diff.append((i, j, False))
    return same + diff


def calibrate_threshold(module: Any, eval_set: EvalSet, img_size: tuple[int, int]) -> dict[str, float]:
    """Best-accuracy cosine threshold on validation pairs (and the 10-fold accuracy it reaches)."""
    images = EvalImages(eval_set, img_size)
    feats = images.embed_all(module)
    rows = np.concatenate([images.query_rows, images.gallery_rows]) if eval_set.query != eval_set.gallery \
        else images.query_rows
    feats = feats[rows]
    pairs = validation_pairs(eval_set)
    i, j, same = (np.array(x) for x in zip(*pairs, strict=True))
    scores = np.sum(feats[i] * feats[j], axis=1)
    result = verification_accuracy(scores, same.astype(bool))
    return {"threshold": float(result["threshold"]), "val_pair_accuracy": float(result["accuracy"]),
            "val_pairs": len(pairs)}


def parity_images(eval_set: EvalSet, img_size: tuple[int, int]) -> np.ndarray:
    """A few real test images, uint8 [N,H,W,3] at the model's input size."""
    images = EvalImages(eval_set, img_size)
    return images.cache.pixels(images.query_rows[:PARITY_IMAGES])


def export_run(run_dir: str | Path, repository: str | Path, data_root: str | Path, tasks: tuple[str, ...],
               kind: str = "auto", precision: str = "fp32", instances: int = 2) -> list[Path]:
    from model_store.export import export_model
    from ufo.datasets import load_task_data

    run_dir = Path(run_dir)
    results_path = Path("docs/results.json")
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    written = []
    for task in tasks:
        subnet, meta = load_subnet(run_dir / "subnets" / f"{task}.pt")
        data = load_task_data(task, data_root)
        calibration = calibrate_threshold(subnet, data.val, subnet.arch.img_size)
        test_metrics = results.get("tasks", {}).get(task, {}).get("models", {}).get("trimmed", {}).get("metrics", {})
        version_dir = export_model(
            subnet, repository, model_name=model_name_for(task), task=task, input_size=subnet.arch.img_size,
            architecture={"arch": subnet.arch.to_dict(), "config": subnet.cfg.to_dict()},
            metrics={"test": test_metrics, "val": {meta["metric"]: meta["val_metric"]}, "calibration": calibration},
            verification_threshold=calibration["threshold"],
            source_checkpoint_sha256=meta["source_checkpoint_hash"].removeprefix("sha256:"),
            params=meta["params"], flops=meta["flops"], parity_images=parity_images(data.test, subnet.arch.img_size),
            precision=precision, kind=kind, instances=instances, intra_op_threads=1,
        )
        log.info("%s -> %s (threshold %.3f)", task, version_dir, calibration["threshold"])
        written.append(version_dir)
    return written


def cli_export(args: argparse.Namespace) -> int:
    tasks = parse_tasks(args.tasks) if args.tasks else TASKS
    for path in export_run(args.run, args.repository, args.data, tasks, args.kind, args.precision, args.instances):
        print(f"exported {path}")
    return 0
