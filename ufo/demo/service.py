"""`ufo demo`: the first-run experience. Starts the gateway on the committed demo models, enrolls the demo
gallery (held-out test identities of every task) over HTTP, prints how to search with curl, and keeps serving
until Ctrl-C. Enrollment is an upsert with stable ids, so running it again changes nothing.

The gallery per task: face — images 1-5 of each held-out ORL person (6-10 stay out as queries); person and
vehicle — the re-id test gallery; product — the first view of each test product (the other views are queries).
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from ufo.data.types import Sample
from ufo.tasks import TASKS, get_task

CHUNK = 64  # items per batch-enroll request


def gallery_and_queries(task: str, data_root: Path) -> tuple[list[Sample], list[Sample]]:
    from ufo.datasets import load_task_data

    test = load_task_data(task, data_root).test
    protocol = get_task(task).protocol
    if protocol == "reid":
        return list(test.gallery), list(test.query)
    first: dict[int, Sample] = {}
    for s in test.query:
        first.setdefault(s.label, s)
    if protocol == "verification":  # face photos 1-5 of each person enrolled, 6-10 held out
        enrolled = [s for s in test.query if image_number(s) <= 5]
        return enrolled, [s for s in test.query if image_number(s) > 5]
    enrolled = list(first.values())
    chosen = {s.path for s in enrolled}
    return enrolled, [s for s in test.query if s.path not in chosen]


def image_number(sample: Sample) -> int:
    """The n of LFW-style face file names `<person>_<n>.<ext>` (or plain `<n>.<ext>`)."""
    return int(Path(sample.path).stem.rsplit("_", 1)[-1])


def item_id(task: str, sample: Sample, data_root: Path) -> str:
    return f"{task}/" + Path(sample.path).relative_to(data_root / task).as_posix()


def identity_of(task: str, sample: Sample) -> str:
    return Path(sample.path).parent.name if get_task(task).protocol == "verification" else str(sample.label)


def enroll_items(task: str, samples: list[Sample], data_root: Path) -> Iterator[dict]:
    for s in samples:
        yield {"id": item_id(task, s, data_root),
               "image": base64.b64encode(Path(s.path).read_bytes()).decode(),
               "metadata": {"identity": identity_of(task, s), **({"camera": s.camera} if s.camera >= 0 else {})}}


def enroll_gallery(url: str, data_root: Path, tasks: tuple[str, ...], headers: dict[str, str]) -> dict[str, int]:
    counts = {}
    with httpx.Client(base_url=url, timeout=120, headers=headers) as client:
        for task in tasks:
            gallery, _ = gallery_and_queries(task, data_root)
            items = list(enroll_items(task, gallery, data_root))
            for start in range(0, len(items), CHUNK):
                response = client.post(f"/v1/tasks/{task}/items", json={"items": items[start:start + CHUNK]})
                if response.status_code >= 400:
                    raise RuntimeError(f"enrolling {task} failed: {response.status_code} {response.text[:300]}")
            counts[task] = len(items)
            print(f"enrolled {len(items):5d} {task} gallery items", flush=True)
    return counts


def wait_ready(url: str, server: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the gateway exited with code {server.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the gateway at {url} was not ready within {timeout_s:.0f} s")


def check_port_free(port: int) -> None:
    """ValueError when something already listens on 127.0.0.1:`port` (its answers would pass for ours)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise ValueError(f"port {port} is in use (another `ufo demo` or `ufo serve`?): stop it, or pass "
                             "--port") from None


def print_examples(url: str, data_root: Path) -> None:
    _, queries = gallery_and_queries("face", data_root)
    query = queries[0]
    print(f"""
The UFO demo service is up at {url}  (OpenAPI docs: {url}/docs)

Search the face gallery with a held-out image of an enrolled person ({Path(query.path).parent.name}):
  curl -s -X POST {url}/v1/tasks/face/search -F image=@{query.path} -F k=3

Verify two images:
  curl -s -X POST {url}/v1/tasks/face/verify -F image_a=@{queries[0].path} -F image_b=@{queries[1].path}

Tasks, models and index sizes:   curl -s {url}/v1/tasks
Prometheus metrics:              curl -s {url}/metrics
Ctrl-C stops the service.""", flush=True)


def cli_demo(args: argparse.Namespace) -> int:
    data_root = Path(args.data).resolve()
    url = f"http://127.0.0.1:{args.port}"
    env = {**os.environ, "UFO_REPOSITORY": args.repository, "UFO_DATA_DIR": args.data_dir,
           "UFO_STORE_URL": f"sqlite:///{Path(args.data_dir) / 'store'}"}
    check_port_free(args.port)
    server = subprocess.Popen([sys.executable, "-m", "service.main", "--host", "127.0.0.1", "--port",
                               str(args.port), "--no-access-log"], env=env)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` stops the gateway too, like Ctrl-C
    try:
        wait_ready(url, server)
        enroll_gallery(url, data_root, TASKS, {})
        print_examples(url, data_root)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
