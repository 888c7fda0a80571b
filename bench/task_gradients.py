"""Why does multi-task training help some tasks and hurt others? Per-task gradients on the shared backbone.

    .venv/bin/python bench/task_gradients.py --data data/demo --steps 300 --every 50 [--set distill=0 ...]

Trains the supernet as `ufo train` does and, every `--every` steps, takes one fresh batch per task at the
largest config and backpropagates each task's loss alone, then reports per task: the loss, the gradient
norm on the shared backbone (stem, attention, shared FFN, norms), and the cosine between task gradients.
A task whose shared-gradient norm is a fraction of another's is steered by it; negative cosines are conflict.
`--set key=value` overrides TrainConfig fields (e.g. `loss_balance=none`) to compare recipes in one script.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from ufo.tasks import TASKS
from ufo.train.config import TrainConfig, get_train_config
from ufo.train.run import load_data
from ufo.train.trainer import Trainer


def is_shared(name: str, tasks: tuple[str, ...]) -> bool:
    return not (name.startswith(("necks.", "classifiers.", "router_logits", "stem_norms."))
                or any(f".ffn.{t}." in name for t in tasks))


def task_gradients(trainer: Trainer) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """(loss, flattened shared-parameter gradient) per task, one fresh batch each, largest config."""
    model = trainer.model
    shared = [p for n, p in model.named_parameters() if is_shared(n, model.tasks)]
    losses, grads = {}, {}
    model.train()
    for task, stream in trainer.streams.items():
        images, labels = next(stream)
        loss = trainer.wrapped(images, {task: labels}, [(task, len(labels))], model.largest_config())[0][task]
        grad = torch.autograd.grad(loss, shared, allow_unused=True)
        grads[task] = torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                                 for g, p in zip(grad, shared, strict=True)])
        losses[task] = float(loss.detach())
    return losses, grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/demo")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="TrainConfig overrides key=value (JSON values)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {"steps": args.steps, "seed": args.seed, **TrainConfig.parse_overrides(args.set)}
    cfg = get_train_config(args.preset).with_overrides(**overrides)
    data = load_data(args.data, cfg.tasks, cfg.val_fraction, cfg.seed)
    trainer = Trainer(cfg, data, "/tmp/task_gradients_run", device="cpu")
    tasks = [t for t in TASKS if t in cfg.tasks]
    print("| step | " + " | ".join(f"{t} loss | {t} grad" for t in tasks) + " | "
          + " | ".join(f"cos {a}/{b}" for a, b in itertools.combinations(tasks, 2)) + " |")
    while True:
        losses, grads = task_gradients(trainer)
        cos = [float(torch.nn.functional.cosine_similarity(grads[a], grads[b], dim=0))
               for a, b in itertools.combinations(tasks, 2)]
        print(f"| {trainer.step} | " + " | ".join(f"{losses[t]:.2f} | {grads[t].norm():.3f}" for t in tasks) + " | "
              + " | ".join(f"{c:+.2f}" for c in cos) + " |", flush=True)
        if trainer.step >= cfg.steps:
            break
        for _ in range(args.every):
            trainer.train_step()


if __name__ == "__main__":
    main()
