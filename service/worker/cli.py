"""`ufo worker`: flags (argparse only, so `ufo --help` loads nothing heavy) and the entry point.

Settings come from the environment (UFO_*) and the YAML file named by UFO_CONFIG_FILE, like `ufo serve`;
the flags override them. SIGTERM/SIGINT let the running job finish, then the worker exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `ufo --help` builds these flags without loading pydantic
    from service.config import Settings

log = logging.getLogger(__name__)


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `ufo worker`."""
    parser.add_argument("--queue-url", default=None,
                        help="Redis URL of the job queue (env UFO_WORKER__QUEUE_URL; default: the store URL)")
    parser.add_argument("--store-url", default=None, help="redis://host:port/db (env UFO_STORE_URL)")
    parser.add_argument("--data-dir", default=None,
                        help="shared storage for snapshots, data_dir/snapshots/<task>/<version> (env UFO_DATA_DIR)")
    parser.add_argument("--consumer", default=None, help="consumer name in the group (default: host-pid)")
    parser.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs (default: run forever)")
    parser.add_argument("--faiss-threads", type=int, default=None, help="FAISS OpenMP threads (default: all cores)")
    parser.add_argument("--nice", type=int, default=10,
                        help="lower the worker's CPU priority by this much (default 10: searches colocated on the "
                        "same machine keep their latency; an idle machine still gives the build every cycle)")
    parser.add_argument("--claim-idle-s", type=float, default=None,
                        help="claim a job whose worker has been silent this long (env UFO_WORKER__CLAIM_IDLE_S)")
    parser.add_argument("--heartbeat-s", type=float, default=None, help="renew a running job's claim this often")
    parser.add_argument("--heartbeat-file", default=None,
                        help="touch this file every loop round, for a liveness probe (env UFO_WORKER__HEARTBEAT_FILE)")
    parser.add_argument("--drill-pause-s", type=float, default=0.0,
                        help="fault drills only: hold each claimed job this long before building it")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with the flags taking precedence. The worker binds nothing, so it is pinned to loopback:
    the gateway's public bind (and its API-key requirement) does not concern it."""
    from service.config import Settings, WorkerSettings

    base = Settings(host="127.0.0.1", **{k: v for k, v in {"store_url": args.store_url,
                                                          "data_dir": args.data_dir}.items() if v is not None})
    worker = {"queue_url": args.queue_url, "claim_idle_s": args.claim_idle_s, "heartbeat_s": args.heartbeat_s,
              "heartbeat_file": getattr(args, "heartbeat_file", None)}
    overrides = {k: v for k, v in worker.items() if v is not None}
    if overrides:
        base = base.model_copy(update={"worker": WorkerSettings(**(base.worker.model_dump() | overrides))})
    return base


def cli_worker(args: argparse.Namespace) -> int:
    """Entry point of `ufo worker`."""
    from service.worker.fairness import lower_priority

    settings = settings_from_args(args)
    logging.getLogger().setLevel(settings.log_level.upper())
    lower_priority(args.nice)  # before any thread starts: FAISS's and the executor's inherit it
    if args.faiss_threads:
        import faiss

        faiss.omp_set_num_threads(args.faiss_threads)
    asyncio.run(_main(settings, args))
    return 0


async def _main(settings: Settings, args: argparse.Namespace) -> None:
    from service.worker.runner import run_worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    processed = await run_worker(settings, consumer=args.consumer, max_jobs=args.max_jobs, stop=stop,
                                 drill_pause_s=args.drill_pause_s)
    log.info("worker stopped after %d job(s)", processed)
