"""The service's subcommands of `ufo`: serve, keys, worker. Only their argparse flags load here: no pydantic,
FastAPI, FAISS, Redis or models until a subcommand runs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    _add_serve(sub)
    _add_worker(sub)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from service.main import add_serve_arguments  # argparse flags only: no pydantic, FastAPI or models loaded

    serve = sub.add_parser("serve", help="run the retrieval gateway (FastAPI + uvicorn; settings from UFO_* env/YAML)")
    add_serve_arguments(serve)
    serve.set_defaults(_target="service.main:cli_serve")

    keys = sub.add_parser("keys", help="API keys for the gateway")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="print a new API key (once) and the hash record to configure")
    create.add_argument("--scopes", default="read", help="comma-separated: read, write, admin (default: read)")
    create.set_defaults(_target="service.api.auth:cli_keys_create")


def _add_worker(sub: argparse._SubParsersAction) -> None:
    from service.worker.cli import add_worker_arguments  # argparse flags only: no FAISS or Redis loaded

    worker = sub.add_parser("worker", help="run index rebuild jobs from the Redis queue (settings from UFO_* env/YAML)")
    add_worker_arguments(worker)
    worker.set_defaults(_target="service.worker.cli:cli_worker")
