"""Face search through the real HTTP API on held-out people, beside the same model in process and two baselines.

A `ufo serve` process (embedded backend, a fresh temporary store and index folder) is started on a model
repository; the `ufo demo` face gallery (images 1-5 of each held-out test person) is enrolled over HTTP and
every other image of those people (6-10) is searched with k = the whole gallery. Rank-1 and mAP come from the
returned hits and scores (a query's relevant items: its person's enrolled images; `evaluate_reid`, cameras
unknown). On the same split: the same ONNX model run in this process with ONNX Runtime (its scores should match
the API's to ~1e-3), and the raw-pixel and Fisherfaces baselines fitted on every face training image, all with
the model's preprocessing (manifest input size, `ImageCache.normalized`).

    .venv/bin/python bench/face_api_eval.py --repository demo/models --data data/demo [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from bench.gateway_bench import gateway  # noqa: E402
from model_store.manifest import MANIFEST_FILE, read_manifest  # noqa: E402
from ufo.data.images import ImageCache  # noqa: E402
from ufo.data.readers import read_face_folders  # noqa: E402
from ufo.data.types import Sample  # noqa: E402
from ufo.demo.service import enroll_gallery, gallery_and_queries, item_id  # noqa: E402
from ufo.metrics.baselines import fit_fisherfaces, fit_pixels  # noqa: E402
from ufo.metrics.reid import UNKNOWN_CAMERA, evaluate_reid  # noqa: E402

AGREEMENT_TOLERANCE = 1e-3  # API vs in-process cosine, same model and preprocessing
MISSING_SCORE = -2.0  # below any cosine: a gallery item the API did not return ranks last
SERVED, IN_PROCESS = "served model, through the API", "same model, in process (ONNX Runtime)"


def search_all(url: str, queries: list[Sample], k: int) -> tuple[list[list[dict]], str]:
    """Each query's hits (k = the gallery) and the model version that answered."""
    hits, versions = [], set()
    with httpx.Client(base_url=url, timeout=120) as client:
        for q in queries:
            image = base64.b64encode(Path(q.path).read_bytes()).decode()
            response = client.post("/v1/tasks/face/search", json={"image": image, "k": k})
            if response.status_code != 200:
                raise RuntimeError(f"search failed: {response.status_code} {response.text[:300]}")
            body = response.json()
            hits.append(body["hits"])
            versions.add(body["model_version"])
    if len(versions) != 1:
        raise RuntimeError(f"the answers came from several model versions: {sorted(versions)}")
    return hits, versions.pop()


def hits_matrix(hits: list[list[dict]], gallery_ids: list[str]) -> tuple[np.ndarray, int]:
    """query x gallery scores from the hits, and how many (query, item) pairs no hit covered."""
    column = {item: j for j, item in enumerate(gallery_ids)}
    sim = np.full((len(hits), len(gallery_ids)), MISSING_SCORE, dtype=np.float64)
    for i, row in enumerate(hits):
        for hit in row:
            sim[i, column[hit["id"]]] = hit["score"]
    return sim, int((sim == MISSING_SCORE).sum())


def rank1_map(sim: np.ndarray, q_labels: np.ndarray, g_labels: np.ndarray) -> dict[str, float]:
    q_cams, g_cams = np.full(len(q_labels), UNKNOWN_CAMERA), np.full(len(g_labels), UNKNOWN_CAMERA)
    result = evaluate_reid(sim, q_labels, g_labels, q_cams, g_cams)
    return {"rank1": result["rank1"], "mAP": result["mAP"]}


def in_process_embeddings(version_dir: Path, pixels: np.ndarray) -> np.ndarray:
    """The served version's ONNX model on already-preprocessed pixels, one ONNX Runtime thread."""
    import onnxruntime as ort

    manifest = read_manifest(version_dir / MANIFEST_FILE)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(version_dir / manifest.onnx_file), options,
                                   providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: pixels.astype(np.float32)})[0]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def baseline_embeddings(train_root: Path, size: tuple[int, int], pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Raw pixels and Fisherfaces, fitted on every face training image at the model's input size."""
    train = read_face_folders(train_root)
    train_pixels = ImageCache([s.path for s in train], size).normalized(np.arange(len(train)))
    labels = np.asarray([s.label for s in train])
    print(f"baselines fitted on {len(train)} training images of {len(set(labels.tolist()))} people", flush=True)
    return {"raw pixels": fit_pixels(train_pixels)(pixels),
            "Fisherfaces": fit_fisherfaces(train_pixels, labels)(pixels)}


def ensure_data(data: Path) -> bool:
    if data.exists():
        return True
    print(f"{data} does not exist: building the demo data (`ufo data demo --out {data}`)", flush=True)
    try:
        from ufo.demo.build import build_demo

        build_demo(data)
    except Exception as exc:  # noqa: BLE001 - any failure: say how to build it by hand
        print(f"could not build it ({exc}); run: .venv/bin/ufo data demo --out {data}", file=sys.stderr)
        return False
    return True


def evaluate(repository: Path, data: Path) -> dict:
    gallery, queries = gallery_and_queries("face", data)
    gallery_ids = [item_id("face", s, data) for s in gallery]
    g_labels, q_labels = np.asarray([s.label for s in gallery]), np.asarray([s.label for s in queries])
    # face only, one ONNX Runtime session: the scores do not depend on either, the CPU time does
    with tempfile.TemporaryDirectory(prefix="face-api-eval-") as tmp, gateway(
            repository, Path(tmp), tasks='["face"]', embedded__sessions_per_model="1") as (url, _):
        enroll_gallery(url, data, ("face",), {})
        hits, model_version = search_all(url, queries, len(gallery))
    api_sim, missing = hits_matrix(hits, gallery_ids)
    name, version = model_version.split("/")
    version_dir = repository / name / version
    size = read_manifest(version_dir / MANIFEST_FILE).input_size
    cache = ImageCache([s.path for s in gallery + queries], size)
    pixels = cache.normalized(np.arange(len(cache)))
    in_process = in_process_embeddings(version_dir, pixels)
    embeddings = {IN_PROCESS: in_process, **baseline_embeddings(data / "face" / "train", size, pixels)}
    results = {SERVED: rank1_map(api_sim, q_labels, g_labels)}
    for label, emb in embeddings.items():
        results[label] = rank1_map(emb[len(gallery):] @ emb[: len(gallery)].T, q_labels, g_labels)
    in_sim = in_process[len(gallery):] @ in_process[: len(gallery)].T
    covered = api_sim != MISSING_SCORE
    return {"model_version": model_version, "people": len(set(g_labels.tolist())), "gallery": len(gallery),
            "queries": len(queries), "missing_hits": missing,
            "api_vs_in_process_max_abs_score_diff": float(np.abs(api_sim - in_sim)[covered].max()),
            "results": results}


def print_report(report: dict) -> None:
    print(f"\nface, {report['model_version']}: {report['people']} held-out people, gallery {report['gallery']} "
          f"images (1-5 each), {report['queries']} queries (6-10), k = {report['gallery']}\n")
    print("| embedding | rank-1 | mAP |\n|---|---:|---:|")
    for label, r in report["results"].items():
        print(f"| {label} | {r['rank1']:.3f} | {r['mAP']:.3f} |")
    diff = report["api_vs_in_process_max_abs_score_diff"]
    print(f"\nAPI vs in-process scores: max |diff| {diff:.1e}"
          + ("" if diff <= AGREEMENT_TOLERANCE else f"  ** ABOVE {AGREEMENT_TOLERANCE:g}: they disagree **"))
    if report["missing_hits"]:
        print(f"** the hits did not cover the gallery: {report['missing_hits']} (query, item) pairs missing "
              "(ranked last) **")
    print(f"took {report['seconds']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("demo/models"), help="model repository")
    parser.add_argument("--data", type=Path, default=Path("data/demo"), help="demo data (`ufo data demo`)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if not ensure_data(args.data):
        return 2
    report = evaluate(args.repository.resolve(), args.data.resolve())
    report["seconds"] = time.perf_counter() - started
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
