"""Gateway overhead and served throughput, measured through a real `ufo serve` process over HTTP.

1. Latency at batch 1: p50 of `POST /v1/tasks/{task}/embed` (one image: base64 in JSON, and the raw bytes as
   application/octet-stream) through the gateway vs p50 of the direct backend call it makes
   (`EmbeddedBackend.embed_images` in this process, same repository, same settings: decoding, preprocessing,
   batcher, ONNX Runtime). Both include decoding the image; the gateway adds HTTP, JSON, base64 (not with raw
   bodies), auth, limits, metrics and the client. Rounds alternate between the paths.
   Target (docs/benchmarks.md, summary): gateway p50 / direct p50 <= 1.10.
2. Throughput: `--clients` (32) concurrent single-image clients through the gateway (JSON and raw bodies), with
   the dynamic batcher (default settings) and without it (UFO_EMBEDDED__MAX_BATCH=1), plus the direct in-process
   backend under the same 32-way concurrency as the reference. The load generator is a minimal keep-alive
   HTTP/1.1 client on asyncio streams (httpx costs more CPU per request than the server does); it runs in
   this process and competes with the server for the same cores, so the CPU time each side used is reported
   too (server CPU ms per image, read from /proc).

All ratios come from one run. The machine may be shared: the CPU count and load average are printed.

    .venv/bin/python bench/gateway_bench.py [--repository R --task face | --preset small] [--calls 200] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from service.inference.embedded import EmbeddedBackend  # noqa: E402

RAW = "application/octet-stream"


def build_random_repository(root: Path, task: str, preset: str = "demo") -> Path:
    """A preset's largest subnet with random weights (fine for timing), exported for CPU serving."""
    import torch

    from model_store.export import export_model
    from ufo.model.config import largest_config
    from ufo.model.presets import get_arch
    from ufo.model.static import StaticViT

    arch = get_arch(preset)
    torch.manual_seed(0)
    repository = root / "repo"
    export_model(StaticViT(arch, largest_config(arch)).eval(), repository, model_name=f"ufo_{task}", task=task,
                 input_size=tuple(arch.img_size), architecture={"preset": preset, "config": "largest"}, kind="cpu",
                 verification_threshold=0.5)
    return repository


def face_like_image(seed: int = 0) -> bytes:
    """A 92x112 grey PNG (the ORL faces' size), so decoding costs what a real request costs."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(112, 92), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gateway(repository: Path, workdir: Path, args: Sequence[str] = (), **settings: str) -> Iterator[tuple[str, int]]:
    """A `ufo serve` process (no access log, extra command-line `args`) on a free port; yields its base URL and
    process id."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UFO_")}
    env.update({"UFO_REPOSITORY": str(repository), "UFO_DATA_DIR": str(workdir / f"data-{port}"),
                "UFO_STORE_URL": f"sqlite:///{workdir / f'store-{port}'}", "PYTHONPATH": str(ROOT)})
    env.update({f"UFO_{k.upper()}": v for k, v in settings.items()})
    log = open(workdir / f"server-{port}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "service.main", "--port", str(port), "--no-access-log", *args],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"gateway exited: {(workdir / f'server-{port}.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.close()


# -- 1. latency at batch 1 ---------------------------------------------------------------------------------

def time_gateway_calls(conn: http.client.HTTPConnection, task: str, body: bytes, calls: int,
                       content_type: str = "application/json") -> list[float]:
    """Sequential keep-alive calls with the standard library's lean client, after one untimed call: the server
    closes a connection left idle for 5 s (while the direct path is timed, with a slow model)."""
    times = []
    headers = {"content-type": content_type}
    conn.close()  # reconnects on the untimed first call
    for number in range(calls + 1):
        started = time.perf_counter()
        conn.request("POST", f"/v1/tasks/{task}/embed", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if number:
            times.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"embed answered {response.status}")
    return times


async def time_direct_calls(backend: EmbeddedBackend, task: str, image: bytes, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await backend.embed_images(task, [image])
        times.append(time.perf_counter() - started)
    return times


def measure_latency(repository: Path, workdir: Path, task: str, image: bytes, calls: int, rounds: int) -> dict:
    """p50/p90 of gateway (JSON and raw bodies) vs direct at batch 1, rounds interleaved."""
    body = json.dumps({"images": [base64.b64encode(image).decode()]}).encode()
    direct: list[float] = []
    served: list[float] = []
    served_raw: list[float] = []
    loop = asyncio.new_event_loop()
    backend = EmbeddedBackend(repository, [task])
    loop.run_until_complete(backend.start())
    try:
        with gateway(repository, workdir) as (url, _):
            conn = http.client.HTTPConnection(*url.removeprefix("http://").split(":"), timeout=30)
            time_gateway_calls(conn, task, body, 20)  # warm-up both paths
            loop.run_until_complete(time_direct_calls(backend, task, image, 20))
            time_gateway_calls(conn, task, image, 20, RAW)
            for _ in range(rounds):
                served += time_gateway_calls(conn, task, body, calls)
                direct += loop.run_until_complete(time_direct_calls(backend, task, image, calls))
                served_raw += time_gateway_calls(conn, task, image, calls, RAW)
            conn.close()
    finally:
        loop.run_until_complete(backend.close())
        loop.close()
    p50_direct, p50_served, p50_raw = (statistics.median(t) for t in (direct, served, served_raw))
    return {"calls_each": len(direct), "direct_p50_ms": 1e3 * p50_direct, "gateway_p50_ms": 1e3 * p50_served,
            "gateway_raw_p50_ms": 1e3 * p50_raw, "direct_p90_ms": 1e3 * float(np.percentile(direct, 90)),
            "gateway_p90_ms": 1e3 * float(np.percentile(served, 90)),
            "gateway_raw_p90_ms": 1e3 * float(np.percentile(served_raw, 90)),
            "ratio_p50": p50_served / p50_direct, "ratio_p50_raw": p50_raw / p50_direct}


# -- 2. throughput with 32 concurrent single-image clients -------------------------------------------------

async def run_clients(call, clients: int, seconds: float) -> dict:
    """`clients` loops calling `call()` back to back for `seconds` (after a short warm-up)."""
    latencies: list[float] = []
    calls = 0
    warmup_until = time.perf_counter() + min(1.0, seconds / 5)
    stop_at = warmup_until + seconds

    async def client() -> None:
        nonlocal calls
        while (now := time.perf_counter()) < stop_at:
            await call()
            calls += 1
            if now >= warmup_until:
                latencies.append(time.perf_counter() - now)

    await asyncio.gather(*(client() for _ in range(clients)))
    return {"images_per_s": len(latencies) / seconds, "p50_ms": 1e3 * statistics.median(latencies),
            "p99_ms": 1e3 * float(np.percentile(latencies, 99)), "calls": calls}


class RawClient:
    """One keep-alive HTTP/1.1 connection: POST a prepared request, read the response (Content-Length only)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str) -> RawClient:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def post(self, request: bytes) -> bytes:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await self.reader.readexactly(length)
        if status != 200:
            raise RuntimeError(f"gateway answered {status}: {body[:200]!r}")
        return body

    def close(self) -> None:
        self.writer.close()


def embed_request(task: str, image: bytes, raw: bool = False) -> bytes:
    """One prepared HTTP/1.1 embed request: base64 in JSON, or (`raw`) the image as the body."""
    body = image if raw else json.dumps({"images": [base64.b64encode(image).decode()]}).encode()
    head = (f"POST /v1/tasks/{task}/embed HTTP/1.1\r\nHost: bench\r\nContent-Type: {RAW if raw else 'application/json'}"
            f"\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def process_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_pooled(url: str, request: bytes, clients: int, seconds: float) -> dict:
    """`run_clients` sending one prepared request over `clients` keep-alive connections."""
    connections = [await RawClient.connect(url) for _ in range(clients)]
    queue: asyncio.Queue[RawClient] = asyncio.Queue()
    for connection in connections:
        queue.put_nowait(connection)

    async def call() -> None:
        connection = await queue.get()
        try:
            await connection.post(request)
        finally:
            queue.put_nowait(connection)

    try:
        return await run_clients(call, clients, seconds)
    finally:
        for connection in connections:
            connection.close()


async def served_throughput(url: str, pid: int, task: str, image: bytes, clients: int, seconds: float,
                            raw: bool = False) -> dict:
    server_cpu, client_cpu = process_cpu_s(pid), time.process_time()
    result = await run_pooled(url, embed_request(task, image, raw), clients, seconds)
    server_cpu, client_cpu = process_cpu_s(pid) - server_cpu, time.process_time() - client_cpu
    images = result.pop("calls")
    result.update(server_cpu_ms_per_image=1e3 * server_cpu / images, client_cpu_ms_per_image=1e3 * client_cpu / images)
    return result


async def direct_throughput(backend: EmbeddedBackend, task: str, image: bytes, clients: int, seconds: float) -> dict:
    cpu = time.process_time()
    result = await run_clients(lambda: backend.embed_images(task, [image]), clients, seconds)
    result["cpu_ms_per_image"] = 1e3 * (time.process_time() - cpu) / result.pop("calls")
    return result


def median_result(rounds: list[dict]) -> dict:
    """Per key, the median over rounds."""
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def measure_throughput(repository: Path, workdir: Path, task: str, image: bytes, clients: int,
                       seconds: float, rounds: int) -> dict:
    """Direct, gateway with the batcher, gateway without it: rounds interleaved, medians reported."""
    runs: dict[str, list[dict]] = {"direct_in_process": [], "gateway_batched": [], "gateway_batched_raw": [],
                                   "gateway_unbatched": []}
    loop = asyncio.new_event_loop()
    backend = EmbeddedBackend(repository, [task])
    loop.run_until_complete(backend.start())
    try:
        with gateway(repository, workdir) as batched, gateway(repository, workdir, embedded__max_batch="1") as single:
            for _ in range(rounds):
                runs["direct_in_process"].append(
                    loop.run_until_complete(direct_throughput(backend, task, image, clients, seconds)))
                for name, (url, pid), raw in (("gateway_batched", batched, False), ("gateway_unbatched", single, False),
                                              ("gateway_batched_raw", batched, True)):
                    runs[name].append(loop.run_until_complete(served_throughput(url, pid, task, image, clients,
                                                                                seconds, raw)))
    finally:
        loop.run_until_complete(backend.close())
        loop.close()
    results = {name: median_result(values) for name, values in runs.items()}
    batched_r, unbatched_r = results["gateway_batched"], results["gateway_unbatched"]
    results["batching_gain"] = batched_r["images_per_s"] / unbatched_r["images_per_s"]
    results["served_vs_direct"] = batched_r["images_per_s"] / results["direct_in_process"]["images_per_s"]
    results["served_raw_vs_direct"] = (results["gateway_batched_raw"]["images_per_s"]
                                       / results["direct_in_process"]["images_per_s"])
    results["served_vs_direct_cpu"] = (results["direct_in_process"]["cpu_ms_per_image"]
                                       / batched_r["server_cpu_ms_per_image"])
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, help="an exported model repository (default: random demo ViT)")
    parser.add_argument("--task", default="face")
    parser.add_argument("--preset", default="demo", help="model preset of the random-weight default repository")
    parser.add_argument("--calls", type=int, default=200, help="sequential calls per path per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every measurement")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput measurement")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        workdir = Path(tmp)
        repository = args.repository or build_random_repository(workdir, args.task, args.preset)
        image = face_like_image()
        results = {
            "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
            "repository": str(args.repository or f"random {args.preset} ViT (largest config)"),
            "latency_batch1": measure_latency(repository, workdir, args.task, image, args.calls, args.rounds),
            "throughput": measure_throughput(repository, workdir, args.task, image, args.clients, args.seconds,
                                             args.rounds),
        }
        results["machine"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    lat, thr = results["latency_batch1"], results["throughput"]
    print(f"\nembed p50 at batch 1: gateway {lat['gateway_p50_ms']:.2f} ms vs direct {lat['direct_p50_ms']:.2f} ms "
          f"-> ratio {lat['ratio_p50']:.2f} (target <= 1.10); raw body {lat['gateway_raw_p50_ms']:.2f} ms -> "
          f"{lat['ratio_p50_raw']:.2f}")
    print(f"{args.clients} concurrent clients: batched {thr['gateway_batched']['images_per_s']:.0f} img/s, "
          f"unbatched {thr['gateway_unbatched']['images_per_s']:.0f} img/s (gain {thr['batching_gain']:.2f}x); "
          f"direct in-process {thr['direct_in_process']['images_per_s']:.0f} img/s "
          f"(served/direct {thr['served_vs_direct']:.2f} in img/s, {thr['served_vs_direct_cpu']:.2f} in CPU/image);\n"
          f"  raw bodies {thr['gateway_batched_raw']['images_per_s']:.0f} img/s (served/direct "
          f"{thr['served_raw_vs_direct']:.2f})")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
