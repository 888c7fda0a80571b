"""Initialise the supernet from a standard ViT checkpoint (timm / DeiT key layout, `.pth` or `.safetensors`).

A plain ViT's weights fill the supernet at its maximum size: the patch embedding (patch stem only), the CLS token,
the position embedding (its patch grid resized to the preset's by bicubic interpolation, the CLS position kept),
each block's LayerNorms, attention (the fused `qkv` split into q, k and v) and MLP (copied into the shared FFN and
into every task's own FFN, so every router path starts from the pretrained MLP), and the final LayerNorm.
LayerScale factors (DeiT III: `blocks.N.ls1.gamma`, `ls2.gamma`) are folded into the attention projection and fc2.

What the checkpoint cannot give keeps its fresh initialisation and is reported as new: the stem of a conv-stem
preset, blocks beyond the checkpoint's depth, the BNNecks, the CosFace classifiers and the routers. Checkpoint
entries with no place in the supernet (the classification head, fc_norm, distillation and register tokens) are
reported as unused; per-block layers the supernet lacks (qk-norm, a norm inside the MLP, a pre-norm) are refused,
since dropping them would change what the pretrained blocks compute.

Not readable from the weights, so not checked: the head count (qkv is [3 * heads * head_dim, width] however it is
split into heads; timm's ViT-Ti/S/B/L have 3/6/12/16 heads of 64, as the presets) and the LayerNorm epsilon
(timm uses 1e-6, the supernet 1e-5; a difference fine-tuning absorbs).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ufo.model.config import ArchSpec
from ufo.model.supernet import UFOSupernet

log = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
NESTED_KEYS = ("model", "state_dict")  # training checkpoints keep the state dict under one of these

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")
# checkpoint entries the supernet has no place for, by key prefix, and why they are not needed
_UNUSED_REASONS = {
    "head.": "the classification head (each task has its own BNNeck and CosFace classifier)",
    "head_dist.": "the distillation head",
    "fc_norm.": "the norm of the average-pooled feature (the supernet takes the CLS token through `norm`)",
    "dist_token": "the distillation token (the supernet has only the CLS token)",
    "reg_token": "register tokens (the supernet has only the CLS token)",
}


class PretrainedError(ValueError):
    """A checkpoint that cannot initialise the supernet; the message names the file, the key and the shapes."""


@dataclass
class ImportReport:
    """What `load_vit_weights` did.

    loaded: supernet key -> where its value came from in the checkpoint; new: supernet keys left at their fresh
    initialisation; unused: checkpoint key -> why it was not used; resized: supernet key -> {from_shape,
    to_shape, from_grid, to_grid, cls_position}.
    """

    source: str
    loaded: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    unused: dict[str, str] = field(default_factory=dict)
    resized: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    def summary(self) -> str:
        lines = [f"initialised from {self.source}: {len(self.loaded)} tensors loaded, {len(self.new)} new, "
                 f"{len(self.unused)} checkpoint entries unused"]
        for key, r in self.resized.items():
            lines.append(f"  resized {key}: {r['from_shape']} -> {r['to_shape']}, patch grid {r['from_grid']} -> "
                         f"{r['to_grid']}, CLS position {r['cls_position']}")
        if self.new:
            modules = dict.fromkeys(k.rsplit(".", 1)[0] for k in self.new)  # one entry per layer, in order
            lines.append(f"  new: {', '.join(modules)}")
        lines += [f"  unused {key}: {reason}" for key, reason in self.unused.items()]
        return "\n".join(lines)


# ---- reading ------------------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ViT checkpoint file: `.safetensors`, or a torch file (.pth, .pt, .bin) holding a state
    dict, bare or nested under "model" / "state_dict", read with weights_only=True (no pickled code runs).
    A "module." prefix on every key (a DistributedDataParallel state dict) is stripped."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"pretrained checkpoint {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        state = _read_safetensors(path)
    elif suffix in TORCH_SUFFIXES:
        state = _unwrap(_read_torch(path), path)
    else:
        raise PretrainedError(f"pretrained checkpoint {path}: unknown file type {suffix!r}; expected "
                              f"{', '.join((*TORCH_SUFFIXES, SAFETENSORS_SUFFIX))}")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise PretrainedError(f"reading {path} needs the `safetensors` package (pip install safetensors)") from exc
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for a bad header or a truncated file
        raise PretrainedError(f"pretrained checkpoint {path} is not a readable safetensors file: {exc}") from exc


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt zips and refused pickled objects
        raise PretrainedError(f"pretrained checkpoint {path} cannot be read as tensors with weights_only=True "
                              f"(corrupt, or it pickles objects besides tensors; re-save just its state dict): "
                              f"{exc}") from exc


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict itself, or the one under "model" / "state_dict"."""
    if isinstance(obj, dict) and not _is_state_dict(obj):
        obj = next((obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), dict)), obj)
    if not isinstance(obj, dict) or not _is_state_dict(obj):
        found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise PretrainedError(f"pretrained checkpoint {path} holds no state dict (a dict of tensors, bare or under "
                              f"{' / '.join(map(repr, NESTED_KEYS))}); found {found}")
    return obj


def _is_state_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


# ---- position embedding -------------------------------------------------------------------------------
def resize_pos_embed(pos_embed: torch.Tensor, num_prefix: int, from_grid: tuple[int, int],
                     to_grid: tuple[int, int]) -> torch.Tensor:
    """[1, num_prefix + rows * cols, D] position embedding -> the same for `to_grid`: the patch-grid part is
    resized with bicubic interpolation (antialiased, as timm's resample_abs_pos_embed), the prefix (CLS) positions
    are kept. An unchanged grid is returned as is."""
    if tuple(from_grid) == tuple(to_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    dim = pos_embed.shape[-1]
    grid = grid.float().reshape(1, from_grid[0], from_grid[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(to_grid), mode="bicubic", align_corners=False, antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def _checkpoint_grid(positions: int, num_prefix: int, source_grid: tuple[int, int] | None, path: Path
                     ) -> tuple[tuple[int, int], int]:
    """(patch grid, prefix positions held) of a checkpoint pos_embed of `positions` entries. It holds either one
    position per prefix token (timm's default, tried first) or none (no_embed_class, e.g. DeiT III); the grid is
    `source_grid` or, as timm assumes, square. Without `source_grid` a non-square grid can be misread when its
    positions happen to make a square one (6 x 4 + CLS = 5 x 5): the report shows the grid that was assumed."""
    for held in dict.fromkeys((num_prefix, 0)):
        area = positions - held
        if source_grid is not None:
            if source_grid[0] * source_grid[1] == area:
                return tuple(source_grid), held
        elif area > 0 and math.isqrt(area) ** 2 == area:
            return (math.isqrt(area),) * 2, held
    grid = f"the grid {tuple(source_grid)}" if source_grid else "a square patch grid"
    raise PretrainedError(f"{path}: pos_embed has {positions} positions, which is not {grid} with or without "
                          f"{num_prefix} token positions; pass the checkpoint's grid as source_grid=(rows, cols)")


# ---- the mapping --------------------------------------------------------------------------------------
def _arch_text(arch: ArchSpec) -> str:
    return (f"width {arch.embed_dim}, depth {arch.depth}, {arch.num_heads} heads x {arch.head_dim}, "
            f"MLP {arch.mlp_hidden_max}, patch {arch.patch_size}")


class _Plan:
    """Supernet key -> (value, where it came from), built from a checkpoint with every shape checked, so a
    mismatch raises before anything is copied."""

    def __init__(self, model: UFOSupernet, state: dict[str, torch.Tensor], path: Path) -> None:
        self.model, self.state, self.path = model, state, path
        self.targets = model.state_dict()
        self.values: dict[str, tuple[torch.Tensor, str]] = {}
        self.used: set[str] = set()
        self.unused: dict[str, str] = {}
        self.resized: dict[str, dict[str, Any]] = {}

    def has(self, key: str) -> bool:
        return key in self.state

    def get(self, key: str, model_key: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """Checkpoint tensor `key`, checked against `shape` (default: the supernet's `model_key`)."""
        value = self.state[key]
        want = tuple(shape) if shape is not None else tuple(self.targets[model_key].shape)
        if tuple(value.shape) != want:
            arch = _arch_text(self.model.arch)
            raise PretrainedError(
                f"{self.path}: checkpoint {key!r} has shape {tuple(value.shape)} but the supernet's {model_key!r} "
                f"needs {want}: the checkpoint is a ViT of another size than the preset ({arch})")
        self.used.add(key)
        return value

    def put(self, model_key: str, value: torch.Tensor, source: str) -> None:
        self.values[model_key] = (value, source)

    def copy(self, key: str, model_key: str) -> None:
        if self.has(key):
            self.put(model_key, self.get(key, model_key), key)


def _map_stem(plan: _Plan) -> None:
    arch = plan.model.arch
    keys = [k for k in plan.state if k.startswith("patch_embed.proj.")]
    if arch.stem != "patch":
        for key in keys:
            plan.unused[key] = (f"skipped: the preset's stem is {arch.stem!r} (convs of {arch.stem_channels} "
                                f"channels), which a patch-embedding conv cannot initialise")
            plan.used.add(key)
        return
    for name in ("weight", "bias"):
        plan.copy(f"patch_embed.proj.{name}", f"patch_proj.{name}")


def _map_tokens(plan: _Plan, source_grid: tuple[int, int] | None) -> None:
    plan.copy("cls_token", "cls_token")
    if plan.has("pos_embed"):
        _map_pos_embed(plan, source_grid)


def _map_pos_embed(plan: _Plan, source_grid: tuple[int, int] | None) -> None:
    arch, state = plan.model.arch, plan.state
    target = tuple(plan.targets["pos_embed"].shape)
    pos = state["pos_embed"]
    if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[2] != target[2]:
        plan.get("pos_embed", "pos_embed")  # raises the shape error
    num_prefix = int(plan.has("cls_token")) + int(plan.has("dist_token"))
    num_prefix += state["reg_token"].shape[1] if plan.has("reg_token") else 0
    from_grid, held = _checkpoint_grid(pos.shape[1], num_prefix, source_grid, plan.path)
    to_grid = (arch.img_size[0] // arch.patch_size, arch.img_size[1] // arch.patch_size)
    grid = resize_pos_embed(pos[:, held:], 0, from_grid, to_grid)
    if held and plan.has("cls_token"):  # timm orders the prefix positions CLS first (then dist / register)
        cls_pos, cls_note = pos[:, :1], "kept"
    else:  # no CLS position (no_embed_class): timm adds none to the CLS token, i.e. a zero position
        cls_pos, cls_note = pos.new_zeros(1, 1, pos.shape[2]), "zero (the checkpoint has no CLS position)"
    value = torch.cat([cls_pos, grid], dim=1)
    plan.used.add("pos_embed")
    plan.put("pos_embed", value, f"pos_embed (patch grid {from_grid} -> {to_grid}, CLS position {cls_note})")
    if tuple(pos.shape) != target or from_grid != to_grid:
        plan.resized["pos_embed"] = {"from_shape": list(pos.shape), "to_shape": list(target),
                                     "from_grid": list(from_grid), "to_grid": list(to_grid), "cls_position": cls_note}


def _checkpoint_depth(plan: _Plan) -> int:
    indices = {int(m.group(1)) for k in plan.state if (m := _BLOCK_KEY.match(k))}
    depth = max(indices, default=-1) + 1
    if depth > plan.model.arch.depth:
        key = next(k for k in plan.state if k.startswith(f"blocks.{plan.model.arch.depth}."))
        raise PretrainedError(f"{plan.path}: the checkpoint has {depth} blocks ({key!r} has no place in the "
                              f"supernet) but the preset only {plan.model.arch.depth} ({_arch_text(plan.model.arch)})")
    return depth


def _map_block(plan: _Plan, i: int) -> None:
    """Block i: same key names in the checkpoint and the supernet for the norms; attn.* and mlp.* mapped."""
    b = f"blocks.{i}."
    for norm in ("norm1", "norm2"):
        for name in ("weight", "bias"):
            plan.copy(f"{b}{norm}.{name}", f"{b}{norm}.{name}")
    _map_qkv(plan, i)
    _map_scaled_linear(plan, f"{b}attn.proj", f"{b}ls1.gamma", [f"{b}proj"])
    ffns = [f"{b}ffn.{name}" for name in plan.model.blocks[i].ffn]  # the shared FFN and every task's own
    fc1_key = f"{b}mlp.fc1"
    for name in ("weight", "bias"):
        if plan.has(f"{fc1_key}.{name}"):
            value = plan.get(f"{fc1_key}.{name}", f"{ffns[0]}.fc1.{name}")
            for ffn in ffns:
                plan.put(f"{ffn}.fc1.{name}", value, f"{fc1_key}.{name}")
    _map_scaled_linear(plan, f"{b}mlp.fc2", f"{b}ls2.gamma", [f"{ffn}.fc2" for ffn in ffns])


def _map_qkv(plan: _Plan, i: int) -> None:
    """The fused qkv projection split by rows: q = [0:w], k = [w:2w], v = [2w:3w] (w = heads * head_dim)."""
    key, dst = f"blocks.{i}.attn.qkv", f"blocks.{i}."
    if not plan.has(f"{key}.weight"):
        return
    width, dim = plan.targets[f"{dst}q.weight"].shape
    weight = plan.get(f"{key}.weight", f"{dst}q/k/v.weight (stacked)", (3 * width, dim))
    bias = plan.get(f"{key}.bias", f"{dst}q/k/v.bias (stacked)", (3 * width,)) if plan.has(f"{key}.bias") else None
    for j, name in enumerate("qkv"):
        rows = slice(j * width, (j + 1) * width)
        plan.put(f"{dst}{name}.weight", weight[rows], f"{key}.weight[{rows.start}:{rows.stop}]")
        if bias is None:  # qkv_bias=False: no bias, the same as a zero one
            plan.put(f"{dst}{name}.bias", weight.new_zeros(width), "zeros (the checkpoint's qkv has no bias)")
        else:
            plan.put(f"{dst}{name}.bias", bias[rows], f"{key}.bias[{rows.start}:{rows.stop}]")


def _map_scaled_linear(plan: _Plan, key: str, gamma_key: str, model_prefixes: list[str]) -> None:
    """A Linear copied into each of `model_prefixes`, with a LayerScale gamma (if the checkpoint has one) folded
    in: gamma * (W x + b) = (gamma[:, None] * W) x + gamma * b."""
    if not plan.has(f"{key}.weight"):
        return
    first = model_prefixes[0]
    weight = plan.get(f"{key}.weight", f"{first}.weight")
    bias = plan.get(f"{key}.bias", f"{first}.bias") if plan.has(f"{key}.bias") else None
    suffix = ""
    if plan.has(gamma_key):
        gamma = plan.get(gamma_key, f"{first} (LayerScale)", (weight.shape[0],)).float()
        weight = weight.float() * gamma[:, None]
        bias = bias.float() * gamma if bias is not None else None
        suffix = f" * {gamma_key}"
    for prefix in model_prefixes:
        plan.put(f"{prefix}.weight", weight, f"{key}.weight{suffix}")
        if bias is not None:
            plan.put(f"{prefix}.bias", bias, f"{key}.bias{suffix}")


def _check_leftovers(plan: _Plan) -> None:
    """Every checkpoint entry not mapped is either unused (with the reason) or, for a layer inside the network
    the supernet lacks, refused."""
    refused = []
    for key in plan.state:
        if key in plan.used:
            continue
        if key.startswith(("blocks.", "patch_embed.", "norm_pre.")):
            refused.append(key)
            continue
        reason = next((r for prefix, r in _UNUSED_REASONS.items() if key.startswith(prefix)), None)
        plan.unused[key] = reason or "not part of the supernet"
    if refused:
        raise PretrainedError(f"{plan.path}: checkpoint entries {refused[:6]}{' ...' if len(refused) > 6 else ''} "
                              f"belong to layers the supernet does not have (e.g. qk-norm, a norm inside the MLP, "
                              f"a pre-norm); dropping them would change what the pretrained blocks compute")


@torch.no_grad()
def load_vit_weights(model: UFOSupernet, path: str | Path,
                     source_grid: tuple[int, int] | None = None) -> ImportReport:
    """Initialise `model` from a timm / DeiT ViT checkpoint (see the module docstring) and return the report.

    `source_grid` is the checkpoint's patch grid (rows, cols): pass it for a checkpoint trained at a non-square
    input (by default a square grid is assumed, as timm does; see _checkpoint_grid). Every shape is
    checked before anything is copied: a checkpoint of another width, attention width, MLP width, patch size or a
    greater depth raises PretrainedError naming the key, the checkpoint shape and the supernet's shape, and leaves
    the model untouched."""
    path = Path(path)
    plan = _Plan(model, read_state_dict(path), path)
    _map_stem(plan)
    _map_tokens(plan, source_grid)
    for i in range(_checkpoint_depth(plan)):
        _map_block(plan, i)
    plan.copy("norm.weight", "norm.weight")
    plan.copy("norm.bias", "norm.bias")
    _check_leftovers(plan)
    if not plan.values:
        raise PretrainedError(f"{path}: no ViT weights found (timm keys such as 'blocks.0.attn.qkv.weight'); "
                              f"its keys start {sorted(plan.state)[:6]}")
    for key, (value, _) in plan.values.items():
        plan.targets[key].copy_(value)
    report = ImportReport(
        source=str(path),
        loaded={k: plan.values[k][1] for k in plan.targets if k in plan.values},
        new=[k for k in plan.targets if k not in plan.values],
        unused=plan.unused,
        resized=plan.resized,
    )
    log.info("%s", report.summary())
    return report
