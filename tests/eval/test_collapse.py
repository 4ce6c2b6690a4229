"""The quickstart's feature-spread check: RankMe and std of average-pooled features beside random init, and a
warning exactly when the trained encoder is narrower than its random init."""
from __future__ import annotations

import copy

import torch

from eval.collapse import narrower_than, spread, summary
from jepa.vit import VisionTransformer


def test_a_collapsed_encoder_is_flagged_and_a_healthy_one_is_not():
    torch.manual_seed(0)
    random_init = VisionTransformer(16, 4, 1, 32, 2, 2).eval()
    collapsed = copy.deepcopy(random_init)
    with torch.no_grad():  # the final norm maps every token to its bias: one point for every image
        collapsed.norm.weight.zero_()
        collapsed.norm.bias.normal_()
    images = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    result = spread({"trained": collapsed, "same": copy.deepcopy(random_init), "random init": random_init}, images,
                    (0.5,), (0.5,))
    assert result["trained"]["rankme"] < 1.5 < result["random init"]["rankme"]
    assert result["trained"]["feature_std"] < 1e-4 < result["random init"]["feature_std"]
    assert result["same"] == result["random init"]  # same weights, same reading
    assert narrower_than(result, "random init") == ["trained"]
    text = summary(result)
    assert "warning: trained's features use fewer directions than random init's" in text
    assert "warning: same" not in text and text.count("feature spread") == 3
