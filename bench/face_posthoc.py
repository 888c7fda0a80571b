"""Post-hoc fixes tried on a served face model, on the face-search protocol of `bench/face_api_eval.py`.

The model's own embedding, then: test-time flip (the embeddings of the image and its mirror image added),
centring on the training images' mean embedding, and an LDA fitted on the training images' embeddings (the
Fisherfaces recipe applied to the model's features instead of pixels, at several PCA variance levels). Beside
them the raw-pixel and Fisherfaces baselines. All in process with ONNX Runtime, on the served version's ONNX file.

    .venv/bin/python bench/face_posthoc.py --repository demo/models --data data/demo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from bench.face_api_eval import in_process_embeddings, rank1_map  # noqa: E402
from model_store.manifest import MANIFEST_FILE, read_manifest  # noqa: E402
from ufo.data.images import ImageCache  # noqa: E402
from ufo.data.readers import read_face_folders  # noqa: E402
from ufo.demo.service import gallery_and_queries  # noqa: E402
from ufo.metrics.baselines import fit_fisherfaces, fit_pixels  # noqa: E402


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def evaluate(repository: Path, data: Path) -> dict[str, dict[str, float]]:
    version_dir = max((repository / "ufo_face").glob("[0-9]*"), key=lambda p: int(p.name))
    size = tuple(read_manifest(version_dir / MANIFEST_FILE).input_size)
    gallery, queries = gallery_and_queries("face", data)
    pixels = ImageCache([s.path for s in gallery + queries], size).normalized(np.arange(len(gallery) + len(queries)))
    train = read_face_folders(data / "face" / "train")
    train_pixels = ImageCache([s.path for s in train], size).normalized(np.arange(len(train)))
    train_labels = np.asarray([s.label for s in train])

    def embed(x: np.ndarray) -> np.ndarray:
        return in_process_embeddings(version_dir, x)

    model, train_model = embed(pixels), embed(train_pixels)
    variants = {
        "model": model,
        "model + flip": unit(model) + unit(embed(np.ascontiguousarray(pixels[..., ::-1]))),
        "model, centred on the training mean": model - train_model.mean(axis=0),
        **{f"model + LDA (PCA {v:.0%})": fit_fisherfaces(train_model, train_labels, variance=v)(model)
           for v in (0.95, 0.99, 1.0)},
        "raw pixels": fit_pixels(train_pixels)(pixels),
        "Fisherfaces": fit_fisherfaces(train_pixels, train_labels)(pixels),
    }
    g_labels, q_labels = np.array([s.label for s in gallery]), np.array([s.label for s in queries])
    n = len(gallery)
    return {name: rank1_map(unit(e)[n:] @ unit(e)[:n].T, q_labels, g_labels) for name, e in variants.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("demo/models"))
    parser.add_argument("--data", type=Path, default=Path("data/demo"))
    args = parser.parse_args(argv)
    results = evaluate(args.repository, args.data)
    print("| embedding | rank-1 | mAP |\n|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['rank1']:.3f} | {r['mAP']:.3f} |")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
