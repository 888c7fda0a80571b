"""A few real training steps on every task, exact resume, and clear errors for bad checkpoints."""

import json

import pytest
import torch

from ufo.tasks import TASK_SPECS
from ufo.train.checkpoint import CheckpointError, load_checkpoint, supernet_from_checkpoint
from ufo.train.config import TrainConfig, get_train_config
from ufo.train.run import load_data, run_training
from ufo.train.trainer import Trainer, build_param_groups, lr_factor, task_loss_weights

TINY = dict(steps=4, batch_per_task=8, checkpoint_every=2, log_every=1)


def tiny_config(**overrides):
    return get_train_config("demo").with_overrides(**{**TINY, **overrides})


def test_a_few_steps_on_every_task_write_a_checkpoint_and_held_out_metrics(tiny_demo, tmp_path):
    summary = run_training(tiny_config(), tiny_demo, tmp_path / "run")
    assert summary["steps"] == 4
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    expected = {"face": "verification_accuracy", "person": "mAP", "vehicle": "mAP", "product": "recall@1"}
    for split in ("val", "test"):
        for task, key in expected.items():
            assert 0.0 <= metrics[split][task][key] <= 1.0
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(r[t] > 0 for r in log for t in expected)
    model = supernet_from_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert model.tasks == tuple(expected)


def test_training_fits_a_fixed_batch(tiny_demo, tmp_path):
    """Optimizer, losses and gradients work together: repeated steps on one batch drive its loss down."""
    cfg = tiny_config(steps=15, sandwich=("max",), augment=False, lr=0.05, drop_path=0.0, tasks=("person",))
    trainer = Trainer(cfg, load_data(tiny_demo, ("person",), 0.2, 0), tmp_path / "run")
    batch = next(trainer.streams["person"])

    class FixedStream:
        def __next__(self):
            return batch

        def state_dict(self):
            return {}

    trainer.streams["person"] = FixedStream()
    losses = trainer.fit().losses
    assert losses[-1] < 0.5 * losses[0], losses


def test_resume_gives_the_same_next_loss(tiny_demo, tmp_path):
    cfg = tiny_config()
    data = load_data(tiny_demo, cfg.tasks, cfg.val_fraction, cfg.seed)
    straight = Trainer(cfg, data, tmp_path / "a").fit().losses
    first = Trainer(cfg, data, tmp_path / "b")
    first.fit(until=2)
    resumed = Trainer(cfg, data, tmp_path / "b")
    resumed.resume()
    assert resumed.step == 2
    assert resumed.fit().losses == pytest.approx(straight[2:], rel=1e-6, abs=1e-6)


def test_truncated_and_foreign_checkpoints_are_refused_by_name(tiny_demo, tmp_path):
    cfg = tiny_config(steps=1)
    run_training(cfg, tiny_demo, tmp_path / "run", evaluate=False)
    path = tmp_path / "run" / "checkpoint.pt"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated.pt is truncated"):
        load_checkpoint(truncated)
    not_ours = tmp_path / "other.pt"
    torch.save({"weights": 1}, not_ours)
    with pytest.raises(CheckpointError, match="not a UFO supernet checkpoint"):
        load_checkpoint(not_ours)
    # resuming a run folder with another architecture names the differing fields
    ckpt = load_checkpoint(path)
    ckpt["arch"]["embed_dim"] = 256
    torch.save(ckpt, path)
    trainer = Trainer(cfg, load_data(tiny_demo, cfg.tasks, 0.2, 0), tmp_path / "run")
    with pytest.raises(CheckpointError, match="another architecture.*embed_dim: checkpoint 256"):
        trainer.resume()
    with pytest.raises(ValueError, match="pass --resume"):
        run_training(cfg, tiny_demo, tmp_path / "run")


def test_param_groups_and_schedule():
    from ufo.model.presets import get_arch
    from ufo.model.supernet import UFOSupernet

    model = UFOSupernet(get_arch("demo"), {"face": 3, "person": 4})
    groups = build_param_groups(model, get_train_config("demo").with_overrides(lr_mult={"person": 2.0}))
    by_name = {g["name"]: g for g in groups}
    assert by_name["person"]["lr_mult"] == 2.0 and by_name["face"]["lr_mult"] == 1.0
    assert by_name["shared/no_decay"]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)
    assert not model.necks["face"].bias.requires_grad  # BNNeck bias frozen
    # warm-up rises linearly, cosine ends at 0
    assert lr_factor(0, 100, 0.1) == pytest.approx(0.1) and lr_factor(9, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(99, 100, 0.1) < 0.01


def can_set_hostname() -> bool:
    """Root with `unshare` (a private UTS namespace: the hostname changes for the child alone)."""
    import shutil
    import subprocess

    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--uts", "hostname", "probe"], capture_output=True).returncode == 0


@pytest.mark.parametrize("hostname", [None, "no-such-host-ufo"])
def test_torchrun_ddp_two_processes_on_cpu(tiny_demo, tmp_path, hostname):
    """Real DistributedDataParallel (gloo) through torchrun, as the README runs it: both ranks step, rank 0
    writes the checkpoint. Also on a machine whose hostname does not resolve (a container's, often): there
    torchrun's rendezvous advertises the hostname and waits forever unless `--local-addr 127.0.0.1`."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr", "127.0.0.1",
           "--nproc-per-node", "2", "-m", "ufo_cli", "--threads", "1", "train", "--preset", "demo", "--tasks",
           "face,vehicle", "--data", str(tiny_demo), "--out", str(tmp_path / "ddp"), "--steps", "2",
           "--batch-per-task", "8", "--no-eval"]
    if hostname is not None:
        if not can_set_hostname():
            pytest.skip("needs root and unshare to give the run a hostname that does not resolve")
        cmd = ["unshare", "--uts", "sh", "-c", f'hostname {hostname} && exec "$@"', "sh", *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 2


def specs(*tasks, **overrides):
    cfg = tiny_config(loss_overrides=overrides)
    return {t: cfg.task_spec(t) for t in tasks}


def test_loss_overrides_change_the_papers_settings_per_task():
    face = specs("face", "person", face={"use_triplet": True, "cosface_scale": 30.0})
    assert face["face"].use_triplet and face["face"].cosface_scale == 30.0 and face["face"].cosface_margin == 0.3
    assert face["person"] == TASK_SPECS["person"]
    for bad in ({"hand": {"use_triplet": True}}, {"face": {"scale": 30}}):
        with pytest.raises(ValueError, match="loss_overrides"):
            tiny_config(loss_overrides=bad)


def test_loss_balance_weights_tasks_by_inverse_cosface_scale():
    weights = task_loss_weights(specs("face", "vehicle"), "cosface_scale")  # s = 50 and 20
    assert weights["vehicle"] / weights["face"] == pytest.approx(50 / 20)
    assert sum(weights.values()) / 2 == pytest.approx(1.0)
    assert task_loss_weights(specs("face"), "cosface_scale") == {"face": pytest.approx(1.0)}
    assert task_loss_weights(specs("face", "vehicle"), "none") == {"face": 1.0, "vehicle": 1.0}
    squared = task_loss_weights(specs("face", "vehicle"), "cosface_scale_squared")
    assert squared["vehicle"] / squared["face"] == pytest.approx((50 / 20) ** 2)
    with pytest.raises(ValueError, match="loss_balance must be one of none, cosface_scale, cosface_scale_squared"):
        tiny_config(loss_balance="gradnorm")
    with pytest.raises(ValueError, match="distill must be >= 0"):
        tiny_config(distill=-1.0)


def test_distillation_pulls_the_sampled_subnet_towards_the_largest(tiny_demo, tmp_path):
    """With distill > 0 the random subnet's loss carries a soft-target term: the same step's losses differ
    from a run without it only in the non-max part, and training still runs."""
    data = load_data(tiny_demo, ("product",), 0.2, 0)
    plain = Trainer(tiny_config(tasks=("product",), steps=2, distill=0.0), data, tmp_path / "a").fit().losses
    distilled = Trainer(tiny_config(tasks=("product",), steps=2, distill=5.0), data, tmp_path / "b").fit().losses
    assert distilled[0] > plain[0]  # the soft-target term is added (and is positive) on the first step


def test_set_overrides_parse_json_values_and_name_unknown_fields():
    parsed = TrainConfig.parse_overrides(["distill=1.5", "loss_balance=cosface_scale", 'sandwich=["max"]'])
    assert parsed == {"distill": 1.5, "loss_balance": "cosface_scale", "sandwich": ("max",)}
    for bad in ("distil=1", "distill"):
        with pytest.raises(ValueError, match="expected key=value with key one of"):
            TrainConfig.parse_overrides([bad])
