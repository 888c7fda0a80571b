"""GPU measurements for bench/gpu.sh, one subcommand each; every one prints one JSON line of rows
{"what", "value", "unit", "note"} and, with --dry-run, only checks that it can run (imports, arguments) and
prints its rows as "not measured".

    faiss   FAISS GPU vs CPU on N x D clustered vectors (bench/search_bench.py's mixture): IVF-Flat tuned to
            recall@10 >= target on held-out queries on each device, QPS of each, GPU index build time
    train   training step time, AMP (fp16 autocast + GradScaler) vs fp32, of the preset's largest subnet
            (StaticViT forward + backward + SGD on a synthetic batch: the backbone's share of a trainer step)
    triton  images/s of 32 concurrent clients against a GPU Triton model with dynamic batching vs the same
            model without it, and the best in-process throughput (ONNX Runtime CUDA, batch 32) beside them
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

NOT_MEASURED = "not measured"


def row(what: str, value: float | str, unit: str = "", note: str = "") -> dict:
    return {"what": what, "value": value, "unit": unit, "note": note}


def faiss_rows(args: argparse.Namespace) -> list[dict]:
    import faiss
    import numpy as np

    from bench.search_bench import draw, make_centres
    from service.index import build_index, exact_knn, recall_at_k, tune_search_params

    whats = ("FAISS CPU QPS", "FAISS GPU QPS", "FAISS GPU/CPU QPS ratio", "FAISS GPU index build")
    if args.dry_run or faiss.get_num_gpus() < 1:
        note = "dry run" if args.dry_run else "faiss sees no GPU"
        return [row(w, NOT_MEASURED, note=note) for w in whats]
    centres = make_centres(args.centres, args.d, 0)
    xb, xq_tune, xq = draw(centres, args.n, 0.75, 1), draw(centres, 500, 0.75, 2), draw(centres, 2000, 0.75, 3)
    ids = np.arange(len(xb), dtype=np.int64)
    truth, truth_tune = exact_knn(xq, xb, 10)[1], exact_knn(xq_tune, xb, 10)[1]
    out, qps = [], {}
    for device in ("cpu", "gpu"):
        start = time.perf_counter()
        index = build_index(xb, ids, "IVF{nlist},Flat", train_sample=64 * 4096, use_gpu=device == "gpu")
        built = time.perf_counter() - start
        point = tune_search_params(index, xq_tune, truth_tune, k=10, target_recall=args.recall)
        start = time.perf_counter()
        _, found = index.search(xq, 10)
        qps[device] = len(xq) / (time.perf_counter() - start)
        recall = recall_at_k(found, truth, 10)
        out.append(row(f"FAISS {device.upper()} QPS", round(qps[device]), "queries/s",
                       f"{args.n}x{args.d}, {point.params}, recall@10 {recall:.3f}"))
        if device == "gpu":
            out.append(row("FAISS GPU index build", round(built, 2), "s", "IVF train + add on the GPU"))
    out.append(row("FAISS GPU/CPU QPS ratio", round(qps["gpu"] / qps["cpu"], 2), "x"))
    return out


def train_rows(args: argparse.Namespace) -> list[dict]:
    import torch

    from ufo.model.config import largest_config
    from ufo.model.presets import get_arch
    from ufo.model.static import StaticViT

    rows = []
    for preset in args.presets:
        arch = get_arch(preset)
        if args.dry_run or not torch.cuda.is_available():
            note = "dry run" if args.dry_run else "no CUDA device"
            rows += [row(f"train step {preset} {mode}", NOT_MEASURED, note=note) for mode in ("fp32", "AMP")]
            continue
        times = {}
        for amp in (False, True):
            model = StaticViT(arch, largest_config(arch)).cuda().train()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            scaler = torch.amp.GradScaler("cuda", enabled=amp)
            images = torch.randn(args.batch, 3, *arch.img_size, device="cuda")

            def step() -> None:
                with torch.autocast("cuda", dtype=torch.float16, enabled=amp):  # noqa: B023 - used at once
                    loss = model(images).float().pow(2).mean()  # noqa: B023
                optimizer.zero_grad(set_to_none=True)  # noqa: B023
                scaler.scale(loss).backward()  # noqa: B023
                scaler.step(optimizer)  # noqa: B023
                scaler.update()  # noqa: B023

            for _ in range(3):
                step()
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            torch.cuda.synchronize()
            times[amp] = (time.perf_counter() - start) / args.steps * 1000
            rows.append(row(f"train step {preset} {'AMP' if amp else 'fp32'}", round(times[amp], 2), "ms",
                            f"batch {args.batch}, {arch.img_size[0]}x{arch.img_size[1]}"))
        rows.append(row(f"train step {preset} AMP speed-up", round(times[False] / times[True], 2), "x"))
    return rows


def triton_rows(args: argparse.Namespace) -> list[dict]:
    import numpy as np
    import tritonclient.grpc  # noqa: F401 - the dry run checks the client imports

    whats = ("Triton GPU batched", "Triton GPU unbatched", "Triton GPU batching gain", "in-process best")
    if args.dry_run or not args.url:
        return [row(w, NOT_MEASURED, note="dry run" if args.dry_run else "no GPU tritonserver (--url)") for w in whats]
    from concurrent.futures import ThreadPoolExecutor

    from model_store.manifest import MANIFEST_FILE, read_manifest
    from model_store.serving_parity import triton_embedder

    manifest = read_manifest(Path(args.repository) / args.model / "1" / MANIFEST_FILE)
    pixels = np.random.default_rng(0).standard_normal((1, 3, *manifest.input_size)).astype(np.float32)

    def throughput(model: str) -> float:
        import asyncio

        embed = triton_embedder(args.url, model, 1)
        done = time.perf_counter() + args.seconds
        counts = []

        def client() -> int:
            n = 0
            while time.perf_counter() < done:
                asyncio.run(embed(pixels))
                n += 1
            return n

        with ThreadPoolExecutor(args.clients) as pool:
            counts = list(pool.map(lambda _: client(), range(args.clients)))
        return sum(counts) / args.seconds

    batched, unbatched = throughput(args.model), throughput(args.model + "_nobatch")
    rows = [row("Triton GPU batched", round(batched), "images/s", f"{args.clients} clients, batch-1 requests"),
            row("Triton GPU unbatched", round(unbatched), "images/s", "same model, no dynamic_batching"),
            row("Triton GPU batching gain", round(batched / unbatched, 2), "x")]
    rows.append(in_process_row(Path(args.repository) / args.model / "1" / manifest.onnx_file, manifest, batched))
    return rows


def in_process_row(onnx_path: Path, manifest, served: float) -> dict:
    import numpy as np
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return row("in-process best", NOT_MEASURED, note="onnxruntime has no CUDA provider (onnxruntime-gpu)")
    session = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider"])
    batch = np.zeros((32, 3, *manifest.input_size), np.float32)
    name = session.get_inputs()[0].name
    for _ in range(5):
        session.run(None, {name: batch})
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 3:
        session.run(None, {name: batch})
        n += 32
    best = n / (time.perf_counter() - start)
    return row("in-process best", round(best), "images/s", f"ORT CUDA batch 32; served/in-process {served / best:.2f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="GPU measurements for bench/gpu.sh (one JSON line of rows)")
    parser.add_argument("--dry-run", action="store_true", help="check imports and arguments; rows 'not measured'")
    sub = parser.add_subparsers(dest="what", required=True)
    faiss_p = sub.add_parser("faiss")
    faiss_p.add_argument("--n", type=int, default=1_000_000)
    faiss_p.add_argument("--d", type=int, default=256)
    faiss_p.add_argument("--centres", type=int, default=10_000)
    faiss_p.add_argument("--recall", type=float, default=0.95)
    train_p = sub.add_parser("train")
    train_p.add_argument("--presets", nargs="+", default=["demo", "small"])
    train_p.add_argument("--batch", type=int, default=64)
    train_p.add_argument("--steps", type=int, default=20)
    triton_p = sub.add_parser("triton")
    triton_p.add_argument("--url", default=None, help="GPU Triton gRPC host:port")
    triton_p.add_argument("--repository", default="demo/models")
    triton_p.add_argument("--model", default="ufo_face", help="served with batching; <model>_nobatch without")
    triton_p.add_argument("--clients", type=int, default=32)
    triton_p.add_argument("--seconds", type=float, default=10.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = {"faiss": faiss_rows, "train": train_rows, "triton": triton_rows}[args.what](args)
    print(json.dumps({"what": args.what, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
