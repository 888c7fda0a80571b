"""Gateway search throughput with 1 vs 2 worker processes (`ufo serve --workers N`) on one Milvus server.

In Milvus mode a gateway process keeps no index of its own, so one replica may run several worker processes
that serve the same gallery (issue 13). A Milvus Lite gRPC server (`python -m milvus_lite server`, the local
stand-in for a Milvus cluster; not the Milvus server itself) holds the face gallery, enrolled once from the
demo face images; then the same `--clients` concurrent raw-body searches (k=5) run for `--seconds` against
`--workers 1` and `--workers 2`, rounds alternating, same store, same collection. On a 2-core machine the
Milvus server, the gateway workers and this load generator share the cores: read the ratio, not the QPS.

    .venv/bin/python bench/milvus_workers.py --repository demo/models --data data/demo [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from bench.gateway_bench import RAW, gateway, run_pooled  # noqa: E402
from tests.service.api.milvus_server import MilvusServer  # noqa: E402


def face_images(data: Path, count: int) -> list[Path]:
    return sorted((data / "face").rglob("*.pgm"))[:count]


def enroll(url: str, images: list[Path]) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for path in images:
            item_id = f"{path.parent.name}-{path.stem}"
            response = client.put(f"/v1/tasks/face/items/{item_id}", content=path.read_bytes(),
                                  headers={"Content-Type": RAW})
            if response.status_code not in (200, 201):
                raise RuntimeError(f"enroll {item_id}: {response.status_code} {response.text[:200]}")


def search_request(image: bytes) -> bytes:
    head = (f"POST /v1/tasks/face/search?k=5 HTTP/1.1\r\nHost: bench\r\nContent-Type: {RAW}\r\n"
            f"Content-Length: {len(image)}\r\n\r\n")
    return head.encode() + image


async def search_throughput(url: str, image: bytes, clients: int, seconds: float) -> dict:
    result = await run_pooled(url, search_request(image), clients, seconds)
    result["searches_per_s"] = result.pop("images_per_s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "demo" / "models")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "demo")
    parser.add_argument("--gallery", type=int, default=200, help="face images enrolled")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    images = face_images(args.data, args.gallery)
    if not images:
        raise SystemExit(f"no face images under {args.data}/face: run `ufo data demo --out {args.data}`")
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="milvus-workers-") as tmp:
        work = Path(tmp)
        server = MilvusServer(work / "milvus").start()
        settings = {"index__engine": "milvus", "milvus__uri": server.uri, "store_url": f"sqlite:///{work / 'store'}",
                    "data_dir": str(work / "data"), "embedded__sessions_per_model": "1"}
        try:
            with gateway(args.repository, work, ["--workers", "1"], **settings) as (url, _):
                enroll(url, images)
            results: dict[int, list[dict]] = {1: [], 2: []}
            for _ in range(args.rounds):
                for workers in (1, 2):
                    with gateway(args.repository, work, ["--workers", str(workers)], **settings) as (url, _):
                        result = asyncio.run(search_throughput(url, images[0].read_bytes(), args.clients,
                                                               args.seconds))
                    print(json.dumps({"workers": workers, **result}), flush=True)
                    results[workers].append(result)
        finally:
            server.stop()
    summary = {w: {k: statistics.median(r[k] for r in rs) for k in ("searches_per_s", "p50_ms", "p99_ms")}
               for w, rs in results.items()}
    summary["ratio_2_vs_1"] = summary[2]["searches_per_s"] / summary[1]["searches_per_s"]
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"rounds": results, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
