"""Initialising the supernet from a standard ViT checkpoint (ufo.model.pretrained) against a plain ViT.

timm's VisionTransformer cannot be imported here (timm imports torchvision, which does not install beside the
pinned torch), so `TimmLayoutViT` below is a plain ViT written to timm's key layout. The layout was checked
against timm 1.0.31 (its wheel, `pip download timm --no-deps`): timm/models/vision_transformer.py
(VisionTransformer: cls_token, pos_embed [1, 1 + grid, D] or [1, grid, D] with no_embed_class, patch_embed.proj,
blocks, norm, fc_norm, head; Block: norm1, attn, ls1.gamma, norm2, mlp, ls2.gamma), timm/layers/attention.py
(attn.qkv fused as [3 * heads * head_dim, D] rows q, k, v; attn.proj) and timm/layers/pos_embed.py
(resample_abs_pos_embed: bicubic, antialiased, prefix positions kept). Outside the test suite, timm's own
VisionTransformer was also built (with torchvision replaced by an import stub) at this width, depth and head count:
its state_dict keys, order and shapes equal this class's, this class gives timm's forward_features exactly on the
same weights, the supernet loaded from timm's saved weights gives them to 2e-6 (timm's LayerNorm eps set to the
supernet's 1e-5; with timm's default 1e-6 the difference was 4e-4 on these small random weights), also with
no_embed_class, LayerScale (init_values) and qkv_bias=False, and resize_pos_embed equals timm's
resample_abs_pos_embed exactly (14 x 14 -> 16 x 8, 24 x 24, 7 x 7; 6 x 5 -> 4 x 4).
"""

import argparse
import json
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ufo.model.config import OWN, SHARED, ArchSpec
from ufo.model.pretrained import ImportReport, PretrainedError, load_vit_weights, resize_pos_embed
from ufo.model.supernet import UFOSupernet

TASKS = {"face": 3, "person": 4}
SEGMENTS = [("face", 2), ("person", 2)]
ARCH = ArchSpec(img_size=(32, 32), patch_size=8, embed_dim=64, depth=2, num_heads=4, head_dim=16, mlp_ratio=4.0,
                embed_dim_choices=(48, 64), depth_choices=(1, 2), num_heads_choices=(2, 4),
                mlp_ratio_choices=(2.0, 4.0))
DEEP_ARCH = ArchSpec(img_size=(32, 32), patch_size=8, embed_dim=64, depth=3, num_heads=4, head_dim=16, mlp_ratio=4.0)
CONV_ARCH = ArchSpec(img_size=(32, 32), patch_size=8, embed_dim=64, depth=2, num_heads=4, head_dim=16, mlp_ratio=4.0,
                     stem="conv", stem_channels=(8, 16, 16))


class TimmLayoutAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class TimmLayoutMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class TimmLayoutBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, layer_scale: bool, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = TimmLayoutAttention(dim, heads)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = TimmLayoutMlp(dim, hidden)
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class TimmLayoutViT(nn.Module):
    """A plain ViT whose state_dict has timm's VisionTransformer keys and shapes (see the module docstring).
    eps defaults to the supernet's LayerNorm eps (timm's is 1e-6; it is not stored in a checkpoint)."""

    def __init__(self, img_size: tuple[int, int] = (32, 32), patch: int = 8, dim: int = 64, depth: int = 2,
                 heads: int = 4, mlp_ratio: float = 4.0, no_embed_class: bool = False, layer_scale: bool = False,
                 eps: float = 1e-5, seed: int = 1) -> None:
        super().__init__()
        grid = (img_size[0] // patch) * (img_size[1] // patch)
        self.no_embed_class = no_embed_class
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid + (0 if no_embed_class else 1), dim))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.blocks = nn.Sequential(*(TimmLayoutBlock(dim, heads, int(dim * mlp_ratio), layer_scale, eps)
                                      for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.fc_norm = nn.Identity()
        self.head = nn.Linear(dim, 10)
        torch.manual_seed(seed)
        with torch.no_grad():  # non-trivial everything: a swapped or missed tensor shows in the output
            for name, p in self.named_parameters():
                if name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "gamma")):
                    p.uniform_(0.5, 1.5)
                else:
                    p.normal_(0.0, 0.1)
        self.eval()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """CLS token after the final norm, [B, D]."""
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(len(x), -1, -1)
        if self.no_embed_class:
            x = torch.cat([cls, x + self.pos_embed], dim=1)
        else:
            x = torch.cat([cls, x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))[:, 0]


def make_supernet(arch: ArchSpec = ARCH) -> UFOSupernet:
    torch.manual_seed(0)
    return UFOSupernet(arch, TASKS).eval()


def save(state: dict[str, torch.Tensor], tmp_path, layout: str = "bare.pth"):
    """Write `state` as a timm (.pth bare), training-script (nested) or safetensors checkpoint."""
    path = tmp_path / layout
    if layout.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path))
    elif layout.startswith("nested_model"):
        torch.save({"model": state, "epoch": 300}, path)
    elif layout.startswith("nested_state_dict"):
        torch.save({"state_dict": state}, path)
    else:
        torch.save(state, path)
    return path


def configs(net: UFOSupernet):
    """The largest config with every FFN path shared, and with task paths (own, and a mix)."""
    cfg = net.largest_config()
    depth = cfg.depth
    shared = cfg.with_paths({t: (SHARED,) * depth for t in TASKS})
    own = cfg.with_paths({"face": (OWN,) * depth, "person": (SHARED, OWN) + (OWN,) * (depth - 2)})
    return shared, own


@pytest.mark.parametrize("layout", ["bare.pth", "nested_model.pth", "nested_state_dict.pt", "vit.safetensors"])
def test_loaded_supernet_gives_the_plain_vit_features_on_every_path(tmp_path, layout):
    vit = TimmLayoutViT()
    path = save(vit.state_dict(), tmp_path, layout)
    net = make_supernet()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want = vit.forward_features(x)
        before = [net.forward_features(x, SEGMENTS, cfg) for cfg in configs(net)]
        report = load_vit_weights(net, path)
        after = [net.forward_features(x, SEGMENTS, cfg) for cfg in configs(net)]
    for got, fresh in zip(after, before, strict=True):
        assert not torch.allclose(fresh, want, atol=1e-2)  # the comparison can fail
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert report.resized == {}
    assert torch.equal(net.pos_embed, vit.pos_embed)
    assert report.unused == {"head.weight": report.unused["head.weight"], "head.bias": report.unused["head.bias"]}


def test_qkv_is_split_by_rows_and_the_mlp_is_copied_into_every_ffn(tmp_path):
    vit = TimmLayoutViT()
    net = make_supernet()
    report = load_vit_weights(net, save(vit.state_dict(), tmp_path))
    qkv = vit.blocks[1].attn.qkv
    for j, layer in enumerate((net.blocks[1].q, net.blocks[1].k, net.blocks[1].v)):
        assert torch.equal(layer.weight, qkv.weight[64 * j: 64 * (j + 1)])
        assert torch.equal(layer.bias, qkv.bias[64 * j: 64 * (j + 1)])
    assert report.loaded["blocks.1.k.weight"] == "blocks.1.attn.qkv.weight[64:128]"
    for name in ("shared", *TASKS):
        ffn = net.blocks[1].ffn[name]
        assert torch.equal(ffn.fc1.weight, vit.blocks[1].mlp.fc1.weight)
        assert torch.equal(ffn.fc2.bias, vit.blocks[1].mlp.fc2.bias)
        assert report.loaded[f"blocks.1.ffn.{name}.fc2.weight"] == "blocks.1.mlp.fc2.weight"


def test_report_lists_new_and_unused_keys(tmp_path):
    """A DeiT-distilled-like checkpoint (dist token + its position, head, head_dist, fc_norm) into a deeper model."""
    vit = TimmLayoutViT()
    state = dict(vit.state_dict())
    pos = state["pos_embed"]
    state["pos_embed"] = torch.cat([pos[:, :1], torch.randn(1, 1, 64), pos[:, 1:]], dim=1)  # cls, dist, grid
    state["dist_token"] = torch.randn(1, 1, 64)
    state["head_dist.weight"], state["head_dist.bias"] = torch.randn(10, 64), torch.randn(10)
    state["fc_norm.weight"], state["fc_norm.bias"] = torch.ones(64), torch.zeros(64)
    net = make_supernet(DEEP_ARCH)
    report = load_vit_weights(net, save(state, tmp_path))

    assert set(report.unused) == {"head.weight", "head.bias", "head_dist.weight", "head_dist.bias",
                                  "fc_norm.weight", "fc_norm.bias", "dist_token"}
    assert "distillation token" in report.unused["dist_token"]
    model_keys = list(net.state_dict())
    expected_new = [k for k in model_keys
                    if k.startswith(("blocks.2.", "necks.", "classifiers.")) or k == "router_logits"]
    assert report.new == expected_new
    assert set(report.loaded) == set(model_keys) - set(expected_new)
    assert torch.equal(net.pos_embed, pos)  # the distillation position dropped, CLS and grid kept
    assert report.resized["pos_embed"]["from_shape"] == [1, 18, 64]
    json.loads(json.dumps(report.to_dict()))
    assert ImportReport(**report.to_dict()) == report
    summary = report.summary()
    assert "blocks.2.ffn.face.fc1" in summary and "unused dist_token" in summary


def test_conv_stem_preset_skips_the_patch_embedding_with_the_reason(tmp_path):
    vit = TimmLayoutViT()
    net = make_supernet(CONV_ARCH)
    report = load_vit_weights(net, save(vit.state_dict(), tmp_path))
    assert set(report.unused) == {"patch_embed.proj.weight", "patch_embed.proj.bias", "head.weight", "head.bias"}
    assert report.unused["patch_embed.proj.weight"].startswith("skipped: the preset's stem is 'conv'")
    assert {k for k in report.new if k.startswith(("stem_body.", "patch_proj."))} == {
        k for k in net.state_dict() if k.startswith(("stem_body.", "patch_proj."))}
    assert "patch_proj.weight" in report.new
    assert torch.equal(net.blocks[0].q.weight, vit.blocks[0].attn.qkv.weight[:64])


def test_pos_embed_resize_keeps_cls_and_orientation():
    pos = torch.randn(1, 1 + 36, 8)
    assert resize_pos_embed(pos, 1, (6, 6), (6, 6)) is pos
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(4.0), indexing="ij")
    ramp = torch.zeros(1, 1 + 24, 8)
    ramp[0, 0] = 7.0
    ramp[0, 1:, 0], ramp[0, 1:, 1], ramp[0, 1:, 2] = rows.flatten(), cols.flatten(), 3.0
    out = resize_pos_embed(ramp, 1, (6, 4), (3, 5))
    assert out.shape == (1, 1 + 15, 8)
    assert torch.equal(out[0, 0], ramp[0, 0])
    grid = out[0, 1:].reshape(3, 5, 8)
    torch.testing.assert_close(grid[..., 2], torch.full((3, 5), 3.0))  # a constant stays constant
    torch.testing.assert_close(grid[..., 0], grid[:, :1, 0].expand(3, 5))  # rows vary down, not across
    torch.testing.assert_close(grid[..., 1], grid[:1, :, 1].expand(3, 5))  # columns vary across, not down
    assert (grid[1:, 0, 0] > grid[:-1, 0, 0]).all() and (grid[0, 1:, 1] > grid[0, :-1, 1]).all()


def test_loading_from_another_grid_resizes_pos_embed(tmp_path):
    vit = TimmLayoutViT(img_size=(48, 48))  # 6 x 6 patches into the preset's 4 x 4
    net = make_supernet()
    report = load_vit_weights(net, save(vit.state_dict(), tmp_path))
    assert report.resized == {"pos_embed": {"from_shape": [1, 37, 64], "to_shape": [1, 17, 64], "from_grid": [6, 6],
                                            "to_grid": [4, 4], "cls_position": "kept"}}
    assert net.pos_embed.shape == (1, 17, 64)
    assert torch.equal(net.pos_embed[:, 0], vit.pos_embed[:, 0])
    torch.testing.assert_close(net.pos_embed, resize_pos_embed(vit.pos_embed.detach(), 1, (6, 6), (4, 4)))
    assert "grid [6, 6] -> [4, 4]" in report.summary()


def test_a_non_square_source_grid_needs_source_grid(tmp_path):
    path = save(TimmLayoutViT(img_size=(48, 24)).state_dict(), tmp_path)  # 6 x 3 patches
    with pytest.raises(PretrainedError, match=re.escape("pos_embed has 19 positions")):
        load_vit_weights(make_supernet(), path)
    report = load_vit_weights(make_supernet(), path, source_grid=(6, 3))
    assert report.resized["pos_embed"]["from_grid"] == [6, 3]
    # 6 x 4 + CLS = 25 positions also reads as a 5 x 5 grid without a CLS position: source_grid settles it
    path = save(TimmLayoutViT(img_size=(48, 32)).state_dict(), tmp_path, "six_by_four.pth")
    assert load_vit_weights(make_supernet(), path).resized["pos_embed"]["from_grid"] == [5, 5]
    assert load_vit_weights(make_supernet(), path, source_grid=(6, 4)).resized["pos_embed"]["cls_position"] == "kept"


def test_no_embed_class_checkpoint_gets_a_zero_cls_position(tmp_path):
    vit = TimmLayoutViT(no_embed_class=True)
    net = make_supernet()
    x = torch.randn(4, 3, 32, 32)
    report = load_vit_weights(net, save(vit.state_dict(), tmp_path))
    assert report.resized["pos_embed"]["cls_position"].startswith("zero")
    assert torch.equal(net.pos_embed[0, 0], torch.zeros(64))
    with torch.no_grad():
        for cfg in configs(net):
            torch.testing.assert_close(net.forward_features(x, SEGMENTS, cfg), vit.forward_features(x),
                                       atol=1e-5, rtol=1e-5)


def test_layer_scale_is_folded_into_proj_and_fc2(tmp_path):
    vit = TimmLayoutViT(layer_scale=True)
    net = make_supernet()
    x = torch.randn(4, 3, 32, 32)
    report = load_vit_weights(net, save(vit.state_dict(), tmp_path))
    assert report.loaded["blocks.0.proj.weight"] == "blocks.0.attn.proj.weight * blocks.0.ls1.gamma"
    assert report.loaded["blocks.1.ffn.person.fc2.bias"] == "blocks.1.mlp.fc2.bias * blocks.1.ls2.gamma"
    with torch.no_grad():
        for cfg in configs(net):
            torch.testing.assert_close(net.forward_features(x, SEGMENTS, cfg), vit.forward_features(x),
                                       atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("vit_kwargs", "message"), [
    (dict(dim=48, heads=3), "checkpoint 'patch_embed.proj.weight' has shape (48, 3, 8, 8) but the supernet's "
                            "'patch_proj.weight' needs (64, 3, 8, 8)"),
    (dict(mlp_ratio=2.0), "checkpoint 'blocks.0.mlp.fc1.weight' has shape (128, 64) but the supernet's "
                          "'blocks.0.ffn.shared.fc1.weight' needs (256, 64)"),
    (dict(depth=3), "the checkpoint has 3 blocks ('blocks.2.norm1.weight' has no place in the supernet) "
                    "but the preset only 2"),
    (dict(patch=4), "checkpoint 'patch_embed.proj.weight' has shape (64, 3, 4, 4)"),
])
def test_another_architecture_is_refused_by_key_and_shape_and_nothing_is_copied(tmp_path, vit_kwargs, message):
    path = save(TimmLayoutViT(**vit_kwargs).state_dict(), tmp_path)
    net = make_supernet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(PretrainedError, match=re.escape(message)):
        load_vit_weights(net, path)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_qkv_of_another_attention_width_is_refused(tmp_path):
    arch = ArchSpec(img_size=(32, 32), patch_size=8, embed_dim=64, depth=2, num_heads=2, head_dim=16, mlp_ratio=4.0)
    with pytest.raises(PretrainedError, match=re.escape(
            "checkpoint 'blocks.0.attn.qkv.weight' has shape (192, 64) but the supernet's "
            "'blocks.0.q/k/v.weight (stacked)' needs (96, 64)")):
        load_vit_weights(make_supernet(arch), save(TimmLayoutViT().state_dict(), tmp_path))


def test_layers_the_supernet_lacks_and_unreadable_files_are_refused(tmp_path):
    state = dict(TimmLayoutViT().state_dict())
    state["blocks.0.attn.q_norm.weight"] = torch.ones(16)
    with pytest.raises(PretrainedError, match=r"\['blocks.0.attn.q_norm.weight'\] belong to layers"):
        load_vit_weights(make_supernet(), save(state, tmp_path))
    pickled = tmp_path / "with_args.pth"
    torch.save({"model": TimmLayoutViT().state_dict(), "args": argparse.Namespace(lr=1)}, pickled)
    with pytest.raises(PretrainedError, match="weights_only=True"):
        load_vit_weights(make_supernet(), pickled)
    with pytest.raises(PretrainedError, match="unknown file type '.npz'"):
        load_vit_weights(make_supernet(), save(state, tmp_path, "vit.npz"))
    with pytest.raises(PretrainedError, match="no ViT weights found"):
        load_vit_weights(make_supernet(), save({"conv1.weight": torch.ones(2)}, tmp_path, "resnet.pth"))
    with pytest.raises(PretrainedError, match="does not exist"):
        load_vit_weights(make_supernet(), tmp_path / "missing.pth")


def test_ufo_train_init_reaches_the_trainer(monkeypatch, tmp_path):
    from ufo.train import run
    from ufo_cli.main import build_parser

    seen = []

    def fake_run_training(cfg, *args, **kwargs):
        seen.append(cfg)
        return {"steps": 0, "train_seconds": 0.0, "checkpoint": "-"}

    monkeypatch.setattr(run, "run_training", fake_run_training)
    assert run.cli_train(build_parser().parse_args(["train", "--init", "vit.pth"])) == 0
    assert run.cli_train(build_parser().parse_args(["train"])) == 0
    assert [cfg.init_from for cfg in seen] == ["vit.pth", None]


def test_trainer_init_from_loads_the_checkpoint_and_writes_the_report(tiny_demo, tmp_path):
    """The demo preset (conv stem, width 128, depth 6, 4 heads of 32) from a ViT of that size with a 7 x 7 grid."""
    from ufo.train.config import get_train_config
    from ufo.train.run import load_data
    from ufo.train.trainer import Trainer

    vit = TimmLayoutViT(img_size=(56, 56), dim=128, depth=6, heads=4)
    cfg = get_train_config("demo").with_overrides(tasks=("face",), steps=1, batch_per_task=8,
                                                  init_from=str(save(vit.state_dict(), tmp_path)))
    trainer = Trainer(cfg, load_data(tiny_demo, cfg.tasks, 0.2, 0), tmp_path / "run")
    assert torch.equal(trainer.model.blocks[5].v.weight, vit.blocks[5].attn.qkv.weight[256:])
    assert torch.equal(trainer.model.blocks[5].ffn["face"].fc1.weight, vit.blocks[5].mlp.fc1.weight)
    saved = json.loads((tmp_path / "run" / "init_report.json").read_text())
    assert saved == trainer.init_report.to_dict()
    assert saved["resized"]["pos_embed"]["to_grid"] == [8, 6]
    assert "patch_embed.proj.weight" in saved["unused"] and "patch_proj.weight" in saved["new"]
