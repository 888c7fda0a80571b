"""The science's subcommands of `ufo` (data, train, search, trim, report, pipeline, export, demo).

Each names its handler as "module:function", imported only when that subcommand runs (`ufo_cli.main`)."""

from __future__ import annotations

import argparse

TORCH_COMMANDS = ("train", "search", "trim", "report", "pipeline", "export")  # set their torch thread count


def _handler(parser: argparse.ArgumentParser, target: str) -> None:
    parser.set_defaults(_target=target)


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="datasets: build the offline demo set")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    demo = data_sub.add_parser("demo", help="build the offline demo set for all four tasks")
    demo.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    demo.add_argument("--seed", type=int, default=0)
    _handler(demo, "ufo.demo.build:cli_demo")


def _add_train(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train the multi-task supernet (or a single-task baseline)")
    train.add_argument("--preset", default="demo", help="model + schedule preset (default: demo)")
    train.add_argument("--tasks", default="face,person,vehicle,product", help="comma-separated subset")
    train.add_argument("--data", default="data/demo", help="dataset root with one folder per task")
    train.add_argument("--out", default="runs/demo/supernet", help="run folder (checkpoint, log, metrics)")
    train.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    train.add_argument("--batch-per-task", type=int, default=None, help="override images per task per step")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    train.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    train.add_argument("--grad-checkpointing", action="store_true")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any training setting (ufo/train/config.py), e.g. --set distill=1.0")
    train.add_argument("--init", default=None, metavar="PATH",
                       help="start from a timm / DeiT ViT checkpoint (.pth / .safetensors) of the preset's size "
                            "(docs/pretrained.md); the run folder gets init_report.json")
    train.add_argument("--data-loader", choices=("cache", "stream"), default=None,
                       help="cache: decode the training sets into memory (small sets); stream: read batches from "
                            "the files in worker processes (large sets) (default: the preset's, cache)")
    train.add_argument("--loader-workers", type=int, default=None,
                       help="decoding processes per task with --data-loader stream (default 2; 0: in-process)")
    _handler(train, "ufo.train.run:cli_train")


def _add_search(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser("search", help="evolutionary search of one task's subnet under a budget")
    search.add_argument("--checkpoint", required=True, help="trained supernet checkpoint.pt")
    search.add_argument("--task", required=True)
    search.add_argument("--data", default="data/demo")
    search.add_argument("--out", required=True, help="output folder (search.json, pareto.png)")
    search.add_argument("--max-params", type=int, default=None)
    search.add_argument("--max-params-ratio", type=float, default=None,
                        help="max params as a fraction of the supernet's largest subnet (e.g. 0.7)")
    search.add_argument("--max-flops", type=int, default=None)
    search.add_argument("--max-latency-ms", type=float, default=None, help="measured on this machine")
    search.add_argument("--latency-batch", type=int, default=1)
    search.add_argument("--population", type=int, default=16)
    search.add_argument("--generations", type=int, default=6)
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--no-recalibrate", action="store_true", help="skip BN recalibration of candidates")
    _handler(search, "ufo.search.run:cli_search")

    trim = sub.add_parser("trim", help="extract the searched subnet as a static ViT (no fine-tuning)")
    trim.add_argument("--checkpoint", required=True)
    trim.add_argument("--search", required=True, help="search.json written by `ufo search`")
    trim.add_argument("--data", default="data/demo")
    trim.add_argument("--out", required=True, help="output subnet file (.pt)")
    trim.add_argument("--finetune-steps", type=int, default=0,
                      help="optional short fine-tune on the task (default 0: UFO trims without adaptation)")
    _handler(trim, "ufo.search.trim:cli_trim")


def _add_report(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="single-task vs supernet vs trimmed comparison -> docs/results.md")
    report.add_argument("--run", default="runs/demo", help="pipeline run folder")
    report.add_argument("--data", default="data/demo")
    report.add_argument("--out", default="docs", help="where results.md, results.json and img/ go")
    report.add_argument("--repeats", type=int, default=3, help="interleaved latency rounds per model")
    report.add_argument("--compare", nargs="*", default=[], metavar="RUN",
                        help="other runs of the same pipeline (other seeds): the report shows the spread over all")
    _handler(report, "ufo.report.build:cli_report")

    pipe = sub.add_parser("pipeline", help="data -> train -> baselines -> search -> trim -> report, end to end")
    pipe.add_argument("--preset", default="demo")
    pipe.add_argument("--tasks", default="face,person,vehicle,product")
    pipe.add_argument("--data", default="data/demo")
    pipe.add_argument("--out", default="runs/demo", help="run folder")
    pipe.add_argument("--docs", default="docs", help="where the report goes")
    pipe.add_argument("--steps", type=int, default=None, help="override the preset's training steps")
    pipe.add_argument("--max-params-ratio", type=float, default=0.7,
                      help="search budget: params as a fraction of the supernet's largest subnet")
    pipe.add_argument("--max-flops-ratio", type=float, default=0.5)
    pipe.add_argument("--population", type=int, default=16)
    pipe.add_argument("--generations", type=int, default=6)
    pipe.add_argument("--seed", type=int, default=0, help="training, search and data-split seed")
    pipe.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a training setting of the supernet and the baselines alike")
    pipe.add_argument("--finetune-steps", type=int, default=100,
                      help="also fine-tune each trimmed subnet this many steps, to measure whether it helps "
                           "(the exported model stays the un-tuned one; 0 = skip)")
    pipe.add_argument("--force", action="store_true", help="rerun every stage even if its output exists")
    pipe.add_argument("--jobs", type=int, default=None,
                      help="worker processes of 1 torch thread each for the trainings and searches "
                           "(default: one per core; 1: everything in this process)")
    pipe.add_argument("--compare", nargs="*", default=[], metavar="RUN",
                      help="other runs of the same pipeline (other seeds): the report shows the spread over all")
    _handler(pipe, "ufo.pipeline:cli_pipeline")


def _add_export(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="trimmed subnets of a run -> versioned Triton model repository")
    export.add_argument("--run", default="runs/demo", help="pipeline run folder (subnets/<task>.pt)")
    export.add_argument("--repository", default="model_store/repository")
    export.add_argument("--data", default="data/demo", help="validation identities calibrate the threshold")
    export.add_argument("--tasks", default=None, help="comma-separated subset (default: all four)")
    export.add_argument("--kind", choices=("gpu", "cpu", "auto"), default="auto",
                        help="Triton instance_group kind: gpu in production, cpu/auto where no GPU exists")
    export.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    export.add_argument("--instances", type=int, default=2, help="model instances (1 intra-op thread each)")
    _handler(export, "ufo.export:cli_export")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="serve the demo models, enroll the demo gallery, print curl examples")
    demo.add_argument("--repository", default="demo/models", help="model repository (default: the committed demo)")
    demo.add_argument("--data", default="data/demo", help="demo data (`ufo data demo`)")
    demo.add_argument("--data-dir", default="var/demo", help="store, index snapshots and kept images")
    demo.add_argument("--port", type=int, default=8080)
    _handler(demo, "ufo.demo.service:cli_demo")


def register(sub: argparse._SubParsersAction) -> None:
    for add in (_add_data, _add_train, _add_search, _add_report, _add_export, _add_demo):
        add(sub)
