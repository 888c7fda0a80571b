"""Heterogeneous-batch multi-task supernet training.

Every step takes one P x K batch from every task, concatenates them through the shared backbone, splits
the features per task into its head and losses, and sums the losses. Supernet configs follow the sandwich
rule (largest / smallest / random per step), chosen from (seed, step) so every DDP rank uses the same one.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ufo.data.types import TaskData
from ufo.model.config import SubnetConfig
from ufo.model.presets import get_arch
from ufo.model.pretrained import ImportReport, load_vit_weights
from ufo.model.supernet import UFOSupernet
from ufo.tasks import TaskSpec
from ufo.train import distributed as dist
from ufo.train.checkpoint import check_same_arch, load_checkpoint, save_checkpoint
from ufo.train.config import LOSS_BALANCE_RULES, TrainConfig
from ufo.train.losses import batch_hard_triplet_loss, class_cosines, cosface_loss, soft_target_loss

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
INIT_REPORT_NAME = "init_report.json"  # what --init loaded (ufo.model.pretrained.ImportReport)


@dataclass
class TrainResult:
    model: UFOSupernet
    losses: list[float]  # total loss per step run in this call
    checkpoint: Path


def build_param_groups(model: UFOSupernet, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Shared backbone at the base lr; each task's own FFNs, stem norms, neck and classifier at lr x lr_mult[task];
    no weight decay on norms, biases, tokens, position embeddings and router logits."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owner = next((t for t in model.tasks if f".ffn.{t}." in name or name.startswith((
            f"necks.{t}.", f"classifiers.{t}", f"stem_norms.{t}."))), "shared")
        no_decay = p.ndim <= 1 or name in ("cls_token", "pos_embed", "router_logits")
        groups.setdefault((owner, no_decay), []).append(p)
    return [
        {"params": ps, "lr_mult": cfg.lr_mult.get(owner, 1.0), "weight_decay": 0.0 if nd else cfg.weight_decay,
         "name": f"{owner}{'/no_decay' if nd else ''}"}
        for (owner, nd), ps in sorted(groups.items())
    ]


def lr_factor(step: int, total: int, warmup_fraction: float) -> float:
    """Linear warm-up from 1/warmup to 1, then cosine decay to 0."""
    warmup = max(1, int(total * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def config_for_step(model: UFOSupernet, kind: str, seed: int, step: int, index: int) -> SubnetConfig:
    if kind == "max":
        return model.largest_config()
    if kind == "min":
        return model.smallest_config()
    if kind == "random":
        return model.sample_config(random.Random(f"{seed}/{step}/{index}"))
    raise ValueError(f"unknown sandwich entry {kind!r}; expected max, min or random")


class SupernetLosses(nn.Module):
    """The supernet plus its training losses in one forward, so DistributedDataParallel sees every parameter
    that gets a gradient (the CosFace class weights included) inside the module it wraps.

    Returns (loss per task, class logits per task). Given `teacher_logits` (the largest subnet's, from the
    same step), each task's loss adds `distill` x the soft-target loss towards them: in-place distillation."""

    def __init__(self, supernet: UFOSupernet, specs: dict[str, TaskSpec], distill: float = 0.0) -> None:
        super().__init__()
        self.supernet = supernet
        self.specs = specs
        self.distill = distill

    def forward(self, images: torch.Tensor, labels: dict[str, torch.Tensor], segments: list[tuple[str, int]],
                cfg: SubnetConfig, teacher_logits: dict[str, torch.Tensor] | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        out = self.supernet(images, segments, cfg)
        losses, logits = {}, {}
        for task, (pre, post) in out.items():
            spec = self.specs[task]
            weight = self.supernet.classifiers[task][:, : cfg.embed_dim]
            loss = cosface_loss(post, weight, labels[task], spec.cosface_scale, spec.cosface_margin)
            if spec.use_triplet:
                loss = loss + batch_hard_triplet_loss(pre, labels[task])
            logits[task] = spec.cosface_scale * class_cosines(post, weight)
            if teacher_logits is not None and self.distill > 0:
                loss = loss + self.distill * soft_target_loss(logits[task], teacher_logits[task])
            losses[task] = loss
        return losses, {t: v.detach() for t, v in logits.items()}


def task_loss_weights(specs: dict[str, TaskSpec], rule: str) -> dict[str, float]:
    """Weight of each task's loss in the sum, normalised to mean 1 (one task always weighs 1).
    "cosface_scale": 1 / s_task, so every task pushes the shared backbone about equally hard at the start (a
    CosFace gradient grows with its scale s; bench/task_gradients.py measured face's (s=50) at 2.4x vehicle's
    (s=20) at step 0). "cosface_scale_squared": 1 / s_task^2, for when the largest-scale task keeps dominating
    (measured: face's shared gradient stayed 3.5-4x the others' after 100 steps, its loss flat)."""
    if rule not in LOSS_BALANCE_RULES:
        raise ValueError(f"unknown loss_balance {rule!r}; expected one of {', '.join(LOSS_BALANCE_RULES)}")
    power = {"none": 0, "cosface_scale": 1, "cosface_scale_squared": 2}[rule]
    raw = {t: spec.cosface_scale ** -power for t, spec in specs.items()}
    mean = sum(raw.values()) / len(raw)
    return {t: v / mean for t, v in raw.items()}


class Trainer:
    def __init__(self, cfg: TrainConfig, data: dict[str, TaskData], out_dir: str | Path,
                 device: str | None = None) -> None:
        from ufo.data.loader import make_task_stream

        self.cfg, self.out_dir = cfg, Path(out_dir)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.arch = get_arch(cfg.preset)
        self.rank = dist.setup()
        torch.manual_seed(cfg.seed)
        self.model = UFOSupernet(
            self.arch, {t: data[t].num_classes for t in cfg.tasks}, drop_path_rate=cfg.drop_path,
            grad_checkpointing=cfg.grad_checkpointing,
        ).to(self.device)
        self.init_report = self._init_from_pretrained() if cfg.init_from else None
        specs = {t: cfg.task_spec(t) for t in cfg.tasks}
        self.wrapped = dist.wrap(SupernetLosses(self.model, specs, cfg.distill), self.device)
        self.loss_weights = task_loss_weights(specs, cfg.loss_balance)
        self.optimizer = torch.optim.SGD(build_param_groups(self.model, cfg), lr=cfg.lr, momentum=cfg.momentum,
                                         nesterov=True)
        self.amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.streams = {
            t: make_task_stream(cfg.data_loader, data[t].train, size=self.arch.img_size,
                                batch_size=cfg.batch_per_task, k=cfg.instances_per_id,
                                augment=specs[t].augment if cfg.augment else None,
                                seed=cfg.seed * 1000 + 17 * i + self.rank, workers=cfg.loader_workers)
            for i, t in enumerate(cfg.tasks)
        }
        self.step = 0

    # ---- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def _init_from_pretrained(self) -> ImportReport:
        """Load cfg.init_from (a timm / DeiT ViT file) into the fresh supernet, before the DDP wrap, and write the
        report to the run folder. A resumed run then replaces these weights with its checkpoint's."""
        report = load_vit_weights(self.model, self.cfg.init_from)
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            report.write_json(self.out_dir / INIT_REPORT_NAME)
        return report

    def state(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(), "tasks": list(self.cfg.tasks), "num_classes": self.model.num_classes,
            "train_config": self.cfg.to_dict(), "step": self.step, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
            "streams": {t: s.state_dict() for t, s in self.streams.items()},
        }

    def save(self) -> None:
        if self.rank == 0:
            save_checkpoint(self.checkpoint_path, self.state())

    def resume(self) -> None:
        ckpt = load_checkpoint(self.checkpoint_path)
        check_same_arch(self.checkpoint_path, ckpt["arch"], self.arch)
        if list(ckpt["tasks"]) != list(self.cfg.tasks):
            raise ValueError(f"checkpoint {self.checkpoint_path} was trained on tasks {ckpt['tasks']}, "
                             f"not {list(self.cfg.tasks)}")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        random.setstate(ckpt["rng"]["python"])
        np.random.set_state(ckpt["rng"]["numpy"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        for t, s in self.streams.items():
            s.load_state_dict(ckpt["streams"][t])
        self.step = int(ckpt["step"])
        log.info("resumed %s at step %d", self.checkpoint_path, self.step)

    def close(self) -> None:
        """Stop the data streams' worker processes (streaming loader); the in-memory streams have none."""
        for stream in self.streams.values():
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    # ---- the loop ------------------------------------------------------------------------------
    def _set_lr(self) -> float:
        factor = lr_factor(self.step, self.cfg.steps, self.cfg.warmup_fraction)
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr * factor * group["lr_mult"]
        return self.cfg.lr * factor

    def train_step(self) -> dict[str, float]:
        batches = {t: next(s) for t, s in self.streams.items()}
        images = torch.cat([b[0] for b in batches.values()]).to(self.device, non_blocking=True)
        labels = {t: b[1].to(self.device) for t, b in batches.items()}
        segments = [(t, len(b[1])) for t, b in batches.items()]
        lr = self._set_lr()
        self.model.train()
        per_task = dict.fromkeys(self.cfg.tasks, 0.0)
        n = len(self.cfg.sandwich)
        divisor = n if self.cfg.sandwich_reduce == "mean" else 1
        teacher = None  # the largest subnet's logits, when it runs first (the sandwich rule's "max")
        for i, kind in enumerate(self.cfg.sandwich):
            cfg = config_for_step(self.model, kind, self.cfg.seed, self.step, i)
            with dist.no_sync_unless(self.wrapped, last=i == n - 1), torch.autocast(
                    self.device.type, dtype=torch.float16, enabled=self.amp):
                losses, logits = self.wrapped(images, labels, segments, cfg, None if kind == "max" else teacher)
                total = sum(self.loss_weights[t] * v for t, v in losses.items()) / divisor
            self.scaler.scale(total).backward()
            if kind == "max":
                teacher = logits
            for t, v in losses.items():
                per_task[t] += float(v.detach()) / n
        self.scaler.unscale_(self.optimizer)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"step": self.step, "lr": lr, "loss": sum(per_task.values()), **per_task}

    def fit(self, until: int | None = None) -> TrainResult:
        until = min(until or self.cfg.steps, self.cfg.steps)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        losses: list[float] = []
        bar = tqdm(total=until, initial=self.step, desc="train", disable=self.rank != 0, dynamic_ncols=True)
        with open(self.out_dir / "train_log.jsonl", "a" if self.step else "w") as logf:  # a fresh run starts anew
            while self.step < until:
                t0 = time.perf_counter()
                record = self.train_step()
                record["seconds"] = round(time.perf_counter() - t0, 4)
                if not all(math.isfinite(v) for v in record.values()):
                    raise FloatingPointError(f"non-finite loss at step {self.step}: {record}; lower the lr")
                losses.append(record["loss"])
                bar.update(1)
                bar.set_postfix({t: f"{record[t]:.2f}" for t in self.cfg.tasks})
                if self.rank == 0 and (self.step % self.cfg.log_every == 0 or self.step == until):
                    logf.write(json.dumps(record) + "\n")
                    logf.flush()
                if self.step % self.cfg.checkpoint_every == 0 or self.step == until:
                    self.save()
        bar.close()
        return TrainResult(self.model, losses, self.checkpoint_path)
