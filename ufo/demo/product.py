"""Product part of the demo set: instance-level "products" made from REAL Fashion-MNIST images, SOP layout.

Each product is one distinct Fashion-MNIST image (from its t10k split) in its own colour (a random tint, so
colour helps but never decides: many products have near colours); its 4-6 views are synthetic
re-photographs of that image: scale, shift, small rotation, a per-view background tint and brightness.
class_id = product, super_class_id = the Fashion-MNIST category (1-based). Train and test products are
disjoint images, balanced over the ten categories; class ids run 1..N_train for train and on from there for
test, as in SOP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ufo.data.readers import SOP_HEADER
from ufo.demo.sources import FASHION_MNIST_CLASSES

PRODUCT_SIZE = 64
VIEWS = (4, 6)  # views per product, inclusive


def render_view(item: np.ndarray, tint: tuple[float, float, float], rng: np.random.Generator) -> Image.Image:
    """One photo of a 28x28 Fashion-MNIST item on a tinted background, PRODUCT_SIZE square."""
    size = PRODUCT_SIZE
    side = int(size * rng.uniform(0.7, 0.95))
    grey = Image.fromarray(item).resize((side, side), Image.BICUBIC)
    grey = grey.rotate(float(rng.uniform(-10, 10)), resample=Image.BICUBIC)
    canvas = np.zeros((size, size), dtype=np.float32)
    room = size - side
    top = int(room / 2 + rng.uniform(-0.4, 0.4) * room)
    left = int(room / 2 + rng.uniform(-0.4, 0.4) * room)
    canvas[top : top + side, left : left + side] = np.asarray(grey, dtype=np.float32)
    alpha = np.clip(canvas / 40.0, 0, 1)[..., None]  # Fashion-MNIST items lie on black: faint pixels are edge
    obj = canvas[..., None] * np.asarray(tint, dtype=np.float32)
    background = rng.uniform(40, 230) * rng.uniform(0.75, 1.0, 3).astype(np.float32)
    image = (alpha * obj + (1 - alpha) * background) * rng.uniform(0.75, 1.25)
    image += rng.normal(0, 3, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def choose_items(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> list[int]:
    """`per_class` distinct item indices of each category, in category order."""
    chosen = []
    for category in range(len(FASHION_MNIST_CLASSES)):
        members = np.flatnonzero(labels == category)
        chosen += sorted(rng.choice(members, size=per_class, replace=False).tolist())
    return chosen


def write_split(folder: Path, name: str, items: list[int], first_class: int, images: np.ndarray,
                labels: np.ndarray, rng: np.random.Generator) -> dict[str, int]:
    lines = [" ".join(SOP_HEADER)]
    for offset, item in enumerate(items):
        class_id = first_class + offset
        category = int(labels[item])
        subdir = f"{FASHION_MNIST_CLASSES[category]}_final"
        (folder / subdir).mkdir(exist_ok=True)
        tint = tuple(float(v) for v in rng.uniform(0.45, 1.0, 3))
        for view in range(int(rng.integers(VIEWS[0], VIEWS[1] + 1))):
            path = f"{subdir}/{class_id:06d}_{view}.jpg"
            render_view(images[item], tint, rng).save(folder / path, quality=90)
            lines.append(f"{len(lines)} {class_id} {category + 1} {path}")
    (folder / f"Ebay_{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"products": len(items), "images": len(lines) - 1, "categories": len(FASHION_MNIST_CLASSES)}


def build_product(folder: Path, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  train_per_class: int, test_per_class: int) -> dict[str, Any]:
    """Write the SOP-layout product set into `folder`; return the manifest entry."""
    folder.mkdir(parents=True)
    items = choose_items(labels, train_per_class + test_per_class, rng)
    per_class = train_per_class + test_per_class
    train_items = [i for c in range(len(FASHION_MNIST_CLASSES)) for i in items[c * per_class:][:train_per_class]]
    test_items = sorted(set(items) - set(train_items), key=items.index)
    train = write_split(folder, "train", train_items, 1, images, labels, rng)
    test = write_split(folder, "test", test_items, len(train_items) + 1, images, labels, rng)
    return {"source": "REAL images: Fashion-MNIST t10k items; SYNTHETIC views", "train": train, "test": test}
