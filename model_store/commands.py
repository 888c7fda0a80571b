"""The model store's subcommand of `ufo`: `ufo store verify` (handlers imported only when they run)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    store = sub.add_parser("store", help="model repository: verify")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    verify = store_sub.add_parser("verify", help="check every model in a Triton model repository")
    verify.add_argument("--repository", default="model_store/repository")
    verify.add_argument("--backend", choices=("onnxruntime", "triton"), default="onnxruntime",
                        help="triton: also embed each version's parity images through the server at --url")
    verify.add_argument("--url", default=None, help="Triton host:port (gRPC :8001, or HTTP with --protocol http)")
    verify.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    verify.set_defaults(_target="model_store.verify:cli_verify")
