"""Model upgrade benchmark: search-by-image latency through a real gateway while the gallery is re-embedded
with a second model version beside the live index, against the same load before it (ratios, one run).

A `ufo serve` process (embedded backend, SQLite store) over two versions of the `demo` preset's largest
subnet with random weights (fine for timing; the two versions embed an image to unrelated vectors, so a
query of one model searched in the other's index could not find itself). `--n` synthetic 92x112 grey
images are enrolled as images (kept), version 2 is exported, then `--clients` closed-loop clients search
enrolled images for themselves: `--steady-s` seconds before the upgrade, then from POST
/v1/tasks/face/model/upgrade until the upgrade is done. Reported: p50/p99 steady vs during the upgrade and
their ratio, the upgrade's duration and images re-embedded per second, failed searches, and searches whose
top hit was not the query itself at a score > 0.99 (a model mix, or worse).

    .venv/bin/python bench/upgrade_bench.py --n 2000 --clients 2
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway_bench import face_like_image, gateway  # noqa: E402


def export_version(repository: Path, seed: int) -> None:
    """One more version of ufo_face: the demo preset's largest subnet, random weights from `seed`."""
    import torch

    from model_store.export import export_model
    from ufo.model.config import largest_config
    from ufo.model.presets import get_arch
    from ufo.model.static import StaticViT

    arch = get_arch("demo")
    torch.manual_seed(seed)
    export_model(StaticViT(arch, largest_config(arch)).eval(), repository, model_name="ufo_face", task="face",
                 input_size=tuple(arch.img_size), architecture={"preset": "demo", "seed": seed}, kind="cpu",
                 verification_threshold=0.5)


class Load:
    """Closed-loop clients searching enrolled images for themselves; each answer is (start, seconds, ok)."""

    def __init__(self, url: str, images: list[bytes], clients: int):
        self.url, self.images, self.clients = url, images, clients
        self.answers: list[tuple[float, float, bool]] = []
        self.failures = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in range(clients)]

    def _run(self, client_id: int) -> None:
        rng = np.random.default_rng(client_id)
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                i = int(rng.integers(len(self.images)))
                body = {"image": base64.b64encode(self.images[i]).decode(), "k": 1}
                t0 = time.perf_counter()
                try:
                    response = client.post("/v1/tasks/face/search", json=body)
                    response.raise_for_status()
                except httpx.HTTPError:
                    self.failures += 1
                    continue
                hit = response.json()["hits"][0]
                self.answers.append((t0, time.perf_counter() - t0, hit["id"] == f"img{i}" and hit["score"] > 0.99))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def window(self, start: float, end: float) -> np.ndarray:
        return np.array([s for t0, s, _ in self.answers if start <= t0 < end])


def enroll(url: str, images: list[bytes], batch: int = 32) -> None:
    with httpx.Client(base_url=url, timeout=300) as client:
        for start in range(0, len(images), batch):
            items = [{"id": f"img{i}", "image": base64.b64encode(images[i]).decode()}
                     for i in range(start, min(start + batch, len(images)))]
            client.post("/v1/tasks/face/items", json={"items": items}).raise_for_status()


def run(args: argparse.Namespace, work: Path) -> dict:
    repository = work / "repo"
    export_version(repository, seed=0)
    images = [face_like_image(seed) for seed in range(args.n)]
    with gateway(repository, work, auto_upgrade="false") as (url, _):
        t0 = time.perf_counter()
        enroll(url, images)
        enroll_s = time.perf_counter() - t0
        export_version(repository, seed=1)
        with Load(url, images, args.clients) as load, httpx.Client(base_url=url, timeout=60) as client:
            time.sleep(args.steady_s)
            started = time.perf_counter()
            client.post("/v1/tasks/face/model/upgrade", json={}).raise_for_status()
            while (upgrade := client.get("/v1/tasks/face/model").json()["upgrade"])["state"] == "running":
                time.sleep(0.1)
            done = time.perf_counter()
            time.sleep(1.0)
        steady, during = load.window(started - args.steady_s, started), load.window(started, done)
    assert upgrade["state"] == "done", upgrade
    p = {name: (float(np.percentile(x, 50)) * 1e3, float(np.percentile(x, 99)) * 1e3)
         for name, x in (("steady", steady), ("upgrade", during))}
    return {"n": args.n, "clients": args.clients, "enroll_s": enroll_s, "upgrade_s": done - started,
            "images_per_s": upgrade["embedded"] / (done - started), "p": p, "searches": (len(steady), len(during)),
            "failures": load.failures, "wrong": sum(not ok for _, _, ok in load.answers),
            "answers": len(load.answers)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="gallery images")
    parser.add_argument("--clients", type=int, default=2, help="concurrent closed-loop search clients")
    parser.add_argument("--steady-s", type=float, default=20.0, help="seconds of load before the upgrade")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="upgrade-bench-") as tmp:
        r = run(args, Path(tmp))
    (s50, s99), (u50, u99) = r["p"]["steady"], r["p"]["upgrade"]
    print(f"gallery {r['n']} images (enrolled in {r['enroll_s']:.1f} s), {r['clients']} search clients")
    print(f"upgrade: {r['upgrade_s']:.1f} s, {r['images_per_s']:.0f} images re-embedded/s")
    print(f"search p50 {s50:.1f} -> {u50:.1f} ms ({u50 / s50:.2f}x), p99 {s99:.1f} -> {u99:.1f} ms "
          f"({u99 / s99:.2f}x); searches {r['searches'][0]} steady / {r['searches'][1]} during")
    print(f"failed searches: {r['failures']}; wrong or mixed answers: {r['wrong']} of {r['answers']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
