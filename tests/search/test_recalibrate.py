"""BN recalibration re-estimates the subnet's statistics and never leaks into the next candidate."""

import torch

from tests.model.test_supernet import PATCH_ARCH, make_supernet
from ufo.search.recalibrate import preserved_bn_state, recalibrate_bn


def test_recalibration_sets_the_neck_to_the_subnets_feature_mean_and_is_undone_after():
    net = make_supernet(PATCH_ARCH)
    cfg = net.smallest_config()
    batches = [torch.randn(16, 3, *PATCH_ARCH.img_size) for _ in range(3)]
    before = {k: v.clone() for k, v in net.necks["face"].state_dict().items()}
    with preserved_bn_state(net, "face"):
        recalibrate_bn(net, cfg, "face", batches)
        with torch.no_grad():
            feats = torch.cat([net.forward_features(x, [("face", 16)], cfg) for x in batches])
        d = cfg.embed_dim
        # equal-size batches: the cumulative average of batch means is the overall mean
        assert torch.allclose(net.necks["face"].running_mean[:d], feats.mean(0), atol=1e-5)
        assert int(net.necks["face"].num_batches_tracked) == 3
    for k, v in net.necks["face"].state_dict().items():
        assert torch.equal(v, before[k]), k
    assert net.necks["face"].momentum == 0.1
