"""How long exact truth costs on Milvus: one full read of a collection (`milvus_tune.scan_top_k`, 16 queries).

Why `index.exact_scan_max_items` is small: the scan reads every vector back through pymilvus's query iterator.
Random vectors, an embedded Milvus Lite file (FLAT, so no index build is timed), two scans per size.

    .venv/bin/python bench/milvus_scan.py --sizes 10000 20000 100000 --dim 128
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.index.milvus_catalog import MilvusCatalog  # noqa: E402
from service.index.milvus_settings import MilvusSettings  # noqa: E402
from service.index.milvus_tune import scan_top_k  # noqa: E402


def measure(n: int, dim: int, folder: Path) -> list[float]:
    """Seconds of two full scans of an n x dim collection."""
    catalog = MilvusCatalog(MilvusSettings(uri=str(folder / f"scan-{n}.db"), timeout_s=3600), flat_below=10**12)
    try:
        index = catalog.create("bench", "bench/1", dim, n_expected=n)
        rng = np.random.default_rng(0)
        for start in range(0, n, 5000):
            x = rng.standard_normal((min(5000, n - start), dim)).astype(np.float32)
            index.upsert([f"i{j}" for j in range(start, start + len(x))], x, model_version="bench/1")
        xq = rng.standard_normal((16, dim)).astype(np.float32)
        seconds = []
        for _ in range(2):
            t0 = time.perf_counter()
            scan_top_k(index, xq, 10)
            seconds.append(time.perf_counter() - t0)
        return seconds
    finally:
        catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 100_000])
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            seconds = measure(n, args.dim, Path(folder))
            print(f"{n} x {args.dim}: scan " + ", ".join(f"{s:.1f} s" for s in seconds), flush=True)


if __name__ == "__main__":
    main()
