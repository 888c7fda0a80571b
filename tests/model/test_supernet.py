"""The elastic supernet against independent references: a plain ViT built on torch.nn.MultiheadAttention,
the static subnet extracted from it, and torch's own FLOP counter."""

import random
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ufo.model.config import OWN, SHARED, ArchSpec, ConfigError, SubnetConfig, validate_config
from ufo.model.cost import subnet_cost
from ufo.model.presets import ARCH_PRESETS, get_arch
from ufo.model.static import extract_subnet
from ufo.model.supernet import UFOSupernet

TASKS = {"face": 5, "person": 7, "vehicle": 3, "product": 4}

PATCH_ARCH = ArchSpec(img_size=(32, 24), patch_size=8, embed_dim=48, depth=3, num_heads=3, head_dim=16,
                      mlp_ratio=4.0, embed_dim_choices=(32, 48), depth_choices=(2, 3), num_heads_choices=(2, 3),
                      mlp_ratio_choices=(2.0, 4.0))
CONV_ARCH = ArchSpec(img_size=(32, 24), patch_size=4, embed_dim=48, depth=3, num_heads=3, head_dim=16,
                     mlp_ratio=4.0, stem="conv", stem_channels=(8, 16), embed_dim_choices=(32, 48),
                     depth_choices=(2, 3), num_heads_choices=(2, 3), mlp_ratio_choices=(2.0, 4.0))

CONV_TASK_NORM_ARCH = replace(CONV_ARCH, stem_norm="task")


def make_supernet(arch: ArchSpec, seed: int = 0) -> UFOSupernet:
    torch.manual_seed(seed)
    net = UFOSupernet(arch, TASKS)
    with torch.no_grad():  # non-trivial BN statistics and router preferences
        for neck in net.necks.values():
            neck.running_mean.normal_()
            neck.running_var.uniform_(0.5, 2.0)
            neck.weight.uniform_(0.5, 1.5)
        net.router_logits.normal_()
        for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


class ReferenceViT(nn.Module):
    """A plain pre-norm ViT on nn.MultiheadAttention (fused in-projection), written independently."""

    def __init__(self, net: UFOSupernet, task: str) -> None:
        super().__init__()
        self.net, self.task = net, task
        d = net.arch.embed_dim
        self.attn = nn.ModuleList()
        for block in net.blocks:
            mha = nn.MultiheadAttention(d, net.arch.num_heads, batch_first=True)
            with torch.no_grad():
                mha.in_proj_weight.copy_(torch.cat([block.q.weight, block.k.weight, block.v.weight]))
                mha.in_proj_bias.copy_(torch.cat([block.q.bias, block.k.bias, block.v.bias]))
                mha.out_proj.weight.copy_(block.proj.weight)
                mha.out_proj.bias.copy_(block.proj.bias)
            self.attn.append(mha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net.patch_proj(net.run_stem(x, [(self.task, len(x))])).flatten(2).transpose(1, 2)
        x = torch.cat([net.cls_token.expand(len(x), -1, -1), x], 1) + net.pos_embed
        paths = net.router_paths()[self.task]
        for block, mha, path in zip(net.blocks, self.attn, paths, strict=True):
            h = block.norm1(x)
            x = x + mha(h, h, h, need_weights=False)[0]
            ffn = block.ffn["shared" if path == SHARED else self.task]
            x = x + ffn.fc2(F.gelu(ffn.fc1(block.norm2(x))))
        return F.normalize(net.necks[self.task](net.norm(x)[:, 0]), dim=-1)


@pytest.mark.parametrize("arch", [PATCH_ARCH, CONV_ARCH], ids=["patch", "conv"])
def test_largest_config_equals_plain_vit(arch):
    net = make_supernet(arch)
    x = torch.randn(4, 3, *arch.img_size)
    for task in TASKS:
        ref = ReferenceViT(net, task).eval()
        with torch.no_grad():
            diff = (net.embed(x, task) - ref(x)).abs().max().item()
        assert diff < 1e-5, (task, diff)


@pytest.mark.parametrize("arch", [PATCH_ARCH, CONV_ARCH, CONV_TASK_NORM_ARCH], ids=["patch", "conv", "conv-task-norm"])
def test_extracted_subnet_equals_supernet_at_random_configs(arch):
    net = make_supernet(arch, seed=1)
    x = torch.randn(3, 3, *arch.img_size)
    rng = random.Random(0)
    for _ in range(5):
        cfg = net.sample_config(rng, with_paths=True)
        for task in ("face", "product"):
            sub = extract_subnet(net, cfg, task)
            with torch.no_grad():
                assert (net.embed(x, task, cfg) - sub(x)).abs().max().item() < 1e-5
            # the static net holds only the chosen parts
            assert len(sub.blocks) == cfg.depth
            assert sub.blocks[0].attn.q.out_features == cfg.num_heads[0] * arch.head_dim
            assert not any("router" in n or "ffn" in n for n, _ in sub.named_parameters())


def test_paths_change_the_embedding_and_router_argmax_is_used_by_default():
    net = make_supernet(PATCH_ARCH)
    cfg = net.largest_config()
    x = torch.randn(2, 3, *PATCH_ARCH.img_size)
    with torch.no_grad():
        shared = net.embed(x, "person", cfg.with_paths({"person": (SHARED,) * 3}))
        own = net.embed(x, "person", cfg.with_paths({"person": (OWN,) * 3}))
        routed = net.embed(x, "person", cfg.with_paths({"person": net.router_paths()["person"]}))
        default = net.embed(x, "person", cfg)
    assert (shared - own).abs().max() > 1e-3
    assert torch.equal(routed, default)


@pytest.mark.parametrize("arch", [PATCH_ARCH, CONV_ARCH, get_arch("demo")], ids=["patch", "conv", "demo"])
def test_param_and_flop_counts_match_the_module_and_torch_flop_counter(arch):
    net = make_supernet(arch)
    rng = random.Random(3)
    for cfg in (net.largest_config(), net.smallest_config(), net.sample_config(rng), net.sample_config(rng)):
        sub = extract_subnet(net, cfg, "vehicle")
        cost = subnet_cost(arch, cfg)
        assert cost.params == sum(p.numel() for p in sub.parameters())
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            sub(torch.randn(1, 3, *arch.img_size))
        assert cost.flops == counter.get_total_flops()


def test_costs_grow_with_the_config_and_presets_reach_vit_large():
    arch = get_arch("demo")
    small, large = subnet_cost(arch, SubnetConfig(96, 4, (2,) * 4, (2.0,) * 4)), subnet_cost(
        arch, SubnetConfig(128, 6, (4,) * 6, (4.0,) * 6))
    assert small.params < large.params and small.flops < large.flops
    vit_l = ARCH_PRESETS["large"]
    assert (vit_l.embed_dim, vit_l.depth, vit_l.num_heads, vit_l.mlp_ratio, vit_l.img_size) == (
        1024, 24, 16, 4.0, (384, 384))
    # ViT-L/16 at 384: ~304 M params in the backbone (the paper's size class)
    cost = subnet_cost(vit_l, SubnetConfig(1024, 24, (16,) * 24, (4.0,) * 24))
    assert 300e6 < cost.params < 310e6


def test_sampling_is_seeded_and_valid_and_configs_round_trip():
    arch = get_arch("demo")
    net = UFOSupernet(arch, TASKS)
    a = [net.sample_config(random.Random(7), with_paths=True) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    seen = set()
    rng = random.Random(0)
    for _ in range(50):
        cfg = net.sample_config(rng, with_paths=True)
        validate_config(arch, cfg, net.tasks)
        assert SubnetConfig.from_dict(cfg.to_dict()) == cfg
        seen.add(cfg)
    assert len(seen) > 40  # hashable and diverse


@pytest.mark.parametrize("bad, message", [
    (SubnetConfig(100, 4, (2,) * 4, (2.0,) * 4), "nearest: 96"),
    (SubnetConfig(96, 7, (2,) * 7, (2.0,) * 7), "nearest: 6"),
    (SubnetConfig(96, 4, (2, 2, 5, 2), (2.0,) * 4), "num_heads[2] = 5"),
    (SubnetConfig(96, 4, (2,) * 4, (2.0,) * 3), "3 entries but depth is 4"),
    (SubnetConfig(96, 4, (2,) * 4, (2.0,) * 4, (("person", (0, 1)),)), "4 entries of 0"),
    (SubnetConfig(96, 4, (2,) * 4, (2.0,) * 4, (("dogs", (0, 0, 0, 0)),)), "task 'dogs'"),
])
def test_configs_outside_the_space_are_refused_with_the_nearest_value(bad, message):
    with pytest.raises(ConfigError) as err:
        validate_config(get_arch("demo"), bad, tuple(TASKS))
    assert message in str(err.value)


def test_router_gets_straight_through_gradients_and_forward_is_hard():
    net = make_supernet(PATCH_ARCH).train()
    for module in net.modules():  # no drop path, so outputs can be compared exactly
        if hasattr(module, "drop_path_rate"):
            module.drop_path_rate = 0.0
    x = torch.randn(6, 3, *PATCH_ARCH.img_size)
    torch.manual_seed(0)
    out = net(x, [("face", 3), ("person", 3)])
    loss = sum(post.pow(2).sum() + pre.sum() for pre, post in out.values())
    loss.backward()
    grad = net.router_logits.grad
    face, person, vehicle = (net.tasks.index(t) for t in ("face", "person", "vehicle"))
    assert grad[face].abs().sum() > 0 and grad[person].abs().sum() > 0
    assert grad[vehicle].abs().sum() == 0  # not in the batch
    # exactly the chosen FFN of each routed block receives gradients
    for block, logit_grad in zip(net.blocks, grad[face], strict=True):
        got = {name: block.ffn[name].fc1.weight.grad is not None for name in ("shared", "face")}
        assert sum(got.values()) >= 1 and logit_grad.abs().sum() > 0
    # the forward value equals a hard (fixed-path) forward for the path the Gumbel draw chose
    torch.manual_seed(0)
    logits = net.router_logits[face]
    hard = F.gumbel_softmax(logits, tau=5.0, hard=True, dim=-1).argmax(-1)
    torch.manual_seed(0)
    cfg = net.largest_config()
    with torch.no_grad():
        sampled = net(x[:3], [("face", 3)], cfg)["face"][1]
        fixed = net(x[:3], [("face", 3)], cfg.with_paths({"face": tuple(int(c) for c in hard)}))["face"][1]
    assert torch.allclose(sampled, fixed, atol=1e-6)


def is_active_for_face(name: str) -> bool:
    """Parameters a face-only forward on its own FFNs must reach (classifiers are used only by losses)."""
    if name.startswith(("classifiers.", "router_logits")):
        return False
    if name.startswith("necks."):
        return name == "necks.face.weight"
    return ".ffn." not in name or ".ffn.face." in name


def test_every_active_parameter_gets_a_gradient_and_checkpointing_matches():
    net = make_supernet(CONV_ARCH).train()
    x = torch.randn(4, 3, *CONV_ARCH.img_size)
    cfg = net.largest_config().with_paths({"face": (OWN,) * 3})
    torch.manual_seed(0)
    out = net(x, [("face", 4)], cfg)["face"][1]
    out.sum().backward()
    for name, p in net.named_parameters():
        if is_active_for_face(name):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
        elif ".ffn.shared." in name or ".ffn.person." in name:
            assert p.grad is None, name
    net.grad_checkpointing = True
    torch.manual_seed(0)
    again = net(x, [("face", 4)], cfg)["face"][1]
    assert torch.allclose(out, again, atol=1e-6)


def test_segments_must_cover_the_batch():
    net = make_supernet(PATCH_ARCH)
    with pytest.raises(ValueError, match="do not add up"):
        net(torch.randn(3, 3, *PATCH_ARCH.img_size), [("face", 2)])


@pytest.mark.parametrize("arch, isolated", [(CONV_ARCH, False), (CONV_TASK_NORM_ARCH, True)], ids=["shared", "task"])
def test_task_stem_norms_keep_a_task_independent_of_the_other_tasks_in_the_batch(arch, isolated):
    """In training mode a shared stem BatchNorm normalises each task's images with the whole heterogeneous
    batch's statistics; with stem_norm="task" a task's features depend on its own images only."""
    net = make_supernet(arch).train()
    for block in net.blocks:
        block.drop_path_rate = 0.0  # the only other randomness in training mode
    face, other_a, other_b = torch.randn(4, 3, *arch.img_size), torch.randn(4, 3, *arch.img_size), torch.randn(
        4, 3, *arch.img_size) * 3 + 1
    cfg = net.largest_config().with_paths({t: (SHARED,) * arch.depth for t in ("face", "person")})
    segments = [("face", 4), ("person", 4)]
    with torch.no_grad():
        a = net(torch.cat([face, other_a]), segments, cfg)["face"][0]
        b = net(torch.cat([face, other_b]), segments, cfg)["face"][0]
    assert torch.allclose(a, b, atol=1e-5) == isolated
