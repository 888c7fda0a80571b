"""`ufo trim`: extract the searched config of one task from the supernet as a plain static ViT, with no
fine-tuning (UFO's claim), and save it with its config, params, FLOPs and the source checkpoint's hash."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from ufo.model.config import ArchSpec, SubnetConfig
from ufo.model.cost import subnet_cost
from ufo.model.static import StaticViT, extract_subnet
from ufo.search.recalibrate import recalibrate_bn, recalibration_batches
from ufo.train.checkpoint import CheckpointError, checkpoint_hash, load_checkpoint, save_torch_atomic
from ufo.train.config import TrainConfig

log = logging.getLogger(__name__)

SUBNET_FORMAT = "ufo-subnet/1"


def save_subnet(path: str | Path, subnet: StaticViT, task: str, meta: dict[str, Any]) -> None:
    cost = subnet_cost(subnet.arch, subnet.cfg)
    save_torch_atomic(path, {
        "format": SUBNET_FORMAT, "task": task, "arch": subnet.arch.to_dict(), "config": subnet.cfg.to_dict(),
        "params": cost.params, "flops": cost.flops,
        "state_dict": subnet.state_dict(), **meta})


def load_subnet(path: str | Path) -> tuple[StaticViT, dict[str, Any]]:
    """The static subnet (eval mode) and its record (everything saved except the weights)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CheckpointError(f"subnet file {path} is truncated or not a torch file: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != SUBNET_FORMAT:
        raise CheckpointError(f"{path} is not a trimmed UFO subnet (expected format {SUBNET_FORMAT!r})")
    subnet = StaticViT(ArchSpec.from_dict(payload["arch"]), SubnetConfig.from_dict(payload["config"]))
    try:
        subnet.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"subnet file {path}: weights do not fit its config: {exc}") from exc
    return subnet.eval(), {k: v for k, v in payload.items() if k != "state_dict"}


def trim(checkpoint: str | Path, search_json: str | Path, data_root: str | Path, out: str | Path,
         finetune_steps: int = 0) -> dict[str, Any]:
    """Extract the search's best config; BN statistics recalibrated exactly as the search scored it.
    With finetune_steps > 0, the extracted subnet is then fine-tuned on its task (off by default)."""
    from ufo.search.run import load_search_inputs

    report = json.loads(Path(search_json).read_text())
    task, cfg = report["task"], SubnetConfig.from_dict(report["best"]["config"])
    model, data = load_search_inputs(checkpoint, task, data_root)
    source_hash = checkpoint_hash(checkpoint)
    if report.get("checkpoint_hash") not in (None, source_hash):
        raise ValueError(f"{search_json} was searched on another checkpoint than {checkpoint}")
    recal = report["bn_recalibration"]
    if recal["used"]:
        recalibrate_bn(model, cfg, task, recalibration_batches(data.train, model.arch.img_size, seed=recal["seed"]))
    subnet = extract_subnet(model, cfg, task)
    if finetune_steps > 0:
        from ufo.search.finetune import finetune_subnet

        train_cfg = TrainConfig.from_dict(load_checkpoint(checkpoint).get("train_config", {}))
        subnet = finetune_subnet(subnet, model.classifiers[task], task, data.train, finetune_steps,
                                 spec=train_cfg.task_spec(task))
    meta = {"source_checkpoint_hash": source_hash, "val_metric": report["best"]["metric"], "metric": report["metric"],
            "bn_recalibrated": recal["used"], "finetuned": finetune_steps > 0, "finetune_steps": finetune_steps}
    save_subnet(out, subnet, task, meta)
    log.info("%s: trimmed subnet with %s params -> %s", task, f"{subnet_cost(model.arch, cfg).params:,}", out)
    return {"task": task, "path": str(out), **meta}


def cli_trim(args: argparse.Namespace) -> int:
    result = trim(args.checkpoint, args.search, args.data, args.out, finetune_steps=args.finetune_steps)
    print(f"{result['task']}: trimmed subnet -> {result['path']}")
    return 0
