"""Optional short fine-tune of a trimmed subnet on its own task (off by default: UFO claims trimming needs no
adaptation; the report measures whether this helps)."""

from __future__ import annotations

import copy
import logging
import math

import torch
from torch import nn

from ufo.data.types import Sample
from ufo.model.layers import bnneck
from ufo.model.static import StaticViT
from ufo.tasks import TaskSpec, get_task
from ufo.train.losses import batch_hard_triplet_loss, cosface_loss

log = logging.getLogger(__name__)


def finetune_subnet(subnet: StaticViT, classifier: torch.Tensor, task: str, train: list[Sample], steps: int,
                    spec: TaskSpec | None = None, lr: float = 0.01, batch_size: int = 32, instances_per_id: int = 4,
                    seed: int = 0) -> StaticViT:
    """A fine-tuned copy of `subnet`: the task's CosFace (+ triplet) losses, SGD with cosine decay, starting
    from the supernet's class weights sliced to the subnet's width."""
    from ufo.data.sampling import TaskStream

    model = copy.deepcopy(subnet).train()
    weight = nn.Parameter(classifier[:, : model.cfg.embed_dim].detach().clone())
    params = [p for p in model.parameters() if p.requires_grad] + [weight]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    stream = TaskStream(train, size=model.arch.img_size, batch_size=batch_size, k=instances_per_id,
                        augment=(spec or get_task(task)).augment, seed=seed)
    spec = spec or get_task(task)  # the supernet's loss settings (TrainConfig.task_spec)
    torch.manual_seed(seed)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))
        images, labels = next(stream)
        pre = model.forward_features(images)
        loss = cosface_loss(bnneck(pre, model.neck), weight, labels, spec.cosface_scale, spec.cosface_margin)
        if spec.use_triplet:
            loss = loss + batch_hard_triplet_loss(pre, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    log.info("%s: fine-tuned %d steps, last loss %.3f", task, steps, float(loss.detach()))
    return model.eval()
