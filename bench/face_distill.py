"""Can a pretrained face embedder lift the from-scratch face model? Feature distillation on the demo faces.

The teacher is dlib's ResNet face embedder (trained on about 3 million faces; weights in the PyPI package
face_recognition_models, code in dlib-bin). It scores gallery mAP 1.0 on the demo's held-out people. The student
is the `demo` supernet at its largest config, trained on the face task alone (22 training people) with the
face recipe that learns here (CosFace s=30 m=0.2 + batch-hard triplet), plus `--lam` x (1 - cosine) between a
linear projection of its embedding and the teacher's (mean-centred) embedding of the same, un-augmented image.
Scored on the face-search protocol of `bench/face_api_eval.py` (photos 1-5 of each held-out person enrolled,
6-10 searched). Not part of the pipeline: dlib is an optional, heavy dependency, installed for this bench only:

    .venv/bin/pip install dlib-bin==20.0.1.post1 face_recognition_models==0.3.0
    .venv/bin/python bench/face_distill.py --data data/demo --lam 0 1 --steps 600
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from bench.face_api_eval import rank1_map  # noqa: E402
from ufo.data.augment import augment_batch  # noqa: E402
from ufo.data.images import ImageCache  # noqa: E402
from ufo.data.sampling import TaskStream  # noqa: E402
from ufo.datasets import load_task_data  # noqa: E402
from ufo.demo.service import gallery_and_queries  # noqa: E402
from ufo.model.presets import get_arch  # noqa: E402
from ufo.model.supernet import UFOSupernet  # noqa: E402
from ufo.tasks import get_task  # noqa: E402
from ufo.train.losses import batch_hard_triplet_loss, cosface_loss  # noqa: E402
from ufo.train.trainer import lr_factor  # noqa: E402


def teacher_embeddings(paths: list[str]) -> np.ndarray:
    """dlib's 128-d face descriptors: the largest detected face (the whole frame when none is found), aligned on
    5 landmarks."""
    import importlib.util

    import dlib

    # the package's __init__ needs pkg_resources (gone from recent setuptools) only to find these two files
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install dlib-bin==20.0.1.post1 face_recognition_models==0.3.0 (see the docstring)")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    detect = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    describe = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    out = []
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        faces = detect(image, 1)
        box = max(faces, key=lambda r: r.area()) if faces else dlib.rectangle(0, 0, image.shape[1] - 1,
                                                                                image.shape[0] - 1)
        out.append(np.asarray(describe.compute_face_descriptor(image, landmarks(image, box), 1)))
    return np.stack(out).astype(np.float32)


def search_scores(embed, data: Path, size: tuple[int, int]) -> dict[str, float]:
    gallery, queries = gallery_and_queries("face", data)
    feats = embed([s.path for s in gallery + queries], size)
    feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    return rank1_map(feats[len(gallery):] @ feats[: len(gallery)].T, np.array([s.label for s in queries]),
                     np.array([s.label for s in gallery]))


def train_student(data: Path, teacher: torch.Tensor, lam: float, steps: int, seed: int) -> UFOSupernet:
    torch.manual_seed(seed)
    arch, task = get_arch("demo"), load_task_data("face", data)
    stream = TaskStream(task.train, arch.img_size, 32, k=4, augment=get_task("face").augment, seed=seed)
    model = UFOSupernet(arch, {"face": task.num_classes}, drop_path_rate=0.1)
    project = torch.nn.Linear(arch.embed_dim, teacher.shape[1])
    optimizer = torch.optim.SGD([*model.parameters(), *project.parameters()], lr=0.03, momentum=0.9,
                                nesterov=True, weight_decay=5e-4)
    cfg = model.largest_config()
    model.train()
    for step in range(steps):
        rows = stream.sampler.next_indices()
        images = torch.from_numpy(augment_batch(stream.cache.pixels(stream._rows[rows]), stream.augment, stream.rng))
        labels = torch.from_numpy(stream.labels[rows])
        for group in optimizer.param_groups:
            group["lr"] = 0.03 * lr_factor(step, steps, 0.1)
        pre, post = model(images, [("face", len(labels))], cfg)["face"]
        loss = cosface_loss(post, model.classifiers["face"][:, : cfg.embed_dim], labels, 30.0, 0.2)
        loss = loss + batch_hard_triplet_loss(pre, labels)
        if lam > 0:
            loss = loss + lam * (1 - (F.normalize(project(post), dim=1) * teacher[rows]).sum(dim=1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/demo"))
    parser.add_argument("--lam", type=float, nargs="+", default=[0.0, 1.0], help="distillation weights to compare")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train = load_task_data("face", args.data).train
    stream_paths = [s.path for s in train]  # TaskStream keeps the samples' order
    started = time.perf_counter()
    raw = teacher_embeddings(stream_paths)
    teacher = F.normalize(torch.from_numpy(raw - raw.mean(axis=0)), dim=1)
    results = {"teacher": search_scores(lambda paths, size: teacher_embeddings(paths), args.data, (0, 0)),
               "teacher_seconds": round(time.perf_counter() - started, 1)}
    for lam in args.lam:
        started = time.perf_counter()
        model = train_student(args.data, teacher, lam, args.steps, args.seed)

        def embed(paths: list[str], size: tuple[int, int], model=model) -> np.ndarray:
            pixels = ImageCache(paths, size).normalized(np.arange(len(paths)))
            with torch.no_grad():
                return model.embed(torch.from_numpy(pixels), "face", model.largest_config()).numpy()

        results[f"student lam={lam:g}"] = {**search_scores(embed, args.data, get_arch("demo").img_size),
                                           "seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps({f"lam={lam:g}": results[f"student lam={lam:g}"]}), flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "seed": args.seed, **results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
