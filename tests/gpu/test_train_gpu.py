"""Training on GPUs: a few AMP steps (fp16 autocast + GradScaler) and fp32 steps give finite, comparable
losses; DistributedDataParallel over NCCL with two processes when two GPUs are visible."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import torch

from ufo.train.config import get_train_config
from ufo.train.run import load_data
from ufo.train.trainer import Trainer

from .conftest import skip_without_cuda

TINY = dict(steps=3, batch_per_task=8, checkpoint_every=3, log_every=1)


@skip_without_cuda()
def test_amp_steps_are_finite_and_close_to_fp32(tiny_demo, tmp_path) -> None:
    losses = {}
    for amp in (True, False):
        cfg = get_train_config("demo").with_overrides(**TINY, amp=amp, tasks=("face", "person"))
        trainer = Trainer(cfg, load_data(tiny_demo, cfg.tasks, 0.2, 0), tmp_path / f"amp-{amp}", device="cuda")
        assert trainer.amp is amp and trainer.scaler.is_enabled() is amp
        losses[amp] = trainer.fit().losses
        assert len(losses[amp]) == TINY["steps"] and all(math.isfinite(v) for v in losses[amp]), losses[amp]
        if amp:
            assert trainer.scaler.get_scale() > 0
    assert len(losses[True]) == len(losses[False])


@skip_without_cuda(min_devices=2)
def test_torchrun_ddp_nccl_two_gpus(tiny_demo, tmp_path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr", "127.0.0.1",
           "--nproc-per-node", "2", "-m", "ufo_cli", "train", "--preset", "demo", "--tasks", "face,vehicle",
           "--data", str(tiny_demo),
           "--out", str(tmp_path / "ddp"), "--steps", "2", "--batch-per-task", "8", "--no-eval"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)["step"] == 2
