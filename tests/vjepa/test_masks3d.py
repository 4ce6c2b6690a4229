"""V-JEPA 3-D multi-block masks: disjoint context / target, union and complement, blocks spanning all time,
random (unbiased) truncation, determinism."""
import pytest
import torch

from jepa.errors import ConfigError
from vjepa.masks import LONG_RANGE, SHORT_RANGE, MultiBlock3DMaskSampler

GRID = (4, 6, 6)  # time steps (after tubelets), rows, columns


def _draw(seed=0, batch=16, sampler=None):
    sampler = sampler or MultiBlock3DMaskSampler()
    return sampler(batch, GRID, torch.Generator().manual_seed(seed))


def test_two_configurations_with_disjoint_context_and_target():
    masks = _draw()
    assert len(masks) == 2  # short-range and long-range
    n = GRID[0] * GRID[1] * GRID[2]
    for m in masks:
        assert m.context.shape[0] == m.target.shape[0] == 16
        for ctx, tgt in zip(m.context, m.target):
            assert len(set(ctx.tolist()) & set(tgt.tolist())) == 0
            assert ctx.max() < n and tgt.max() < n and ctx.min() >= 0
            assert torch.equal(ctx, ctx.sort().values)
    short, long = masks
    assert long.target.shape[1] > short.target.shape[1]  # 2 blocks of 0.7 cover more than 8 of 0.15 on this grid


def test_union_of_blocks_is_the_target_and_spans_all_time():
    sampler = MultiBlock3DMaskSampler()
    g = torch.Generator().manual_seed(1)
    for cfg in sampler.configs:
        size = sampler.block_size(cfg, GRID, [0.3, 0.6, 0.9])
        assert size[0] == GRID[0]  # temporal_scale 1.0: every block covers every time step
        target = sampler.target_mask(cfg, 32, GRID, size, g)
        assert target.shape == (32, *GRID)
        assert torch.equal(target.all(dim=1), target.any(dim=1))  # a position is masked at all times or never
        # the union of num_blocks rectangles: never more than num_blocks * block area per time step
        assert int(target[:, 0].flatten(1).sum(1).max()) <= cfg["num_blocks"] * size[1] * size[2]


def test_context_is_the_complement_before_truncation_and_cut_without_bias():
    sampler = MultiBlock3DMaskSampler([SHORT_RANGE])
    firsts = []
    for seed in range(30):
        (m,) = _draw(seed, 8, sampler)
        n = GRID[0] * GRID[1] * GRID[2]
        assert m.context.shape[1] + m.target.shape[1] <= n
        firsts.append(m.context[:, -1].float().mean())
    # a first-tokens cut would never keep tokens of the last time step; a random cut does
    assert max(firsts) >= GRID[1] * GRID[2] * (GRID[0] - 1)


def test_same_generator_same_masks():
    a, b, c = _draw(5), _draw(5), _draw(6)
    assert all(torch.equal(x.context, y.context) and torch.equal(x.target, y.target) for x, y in zip(a, b))
    assert not all(torch.equal(x.target, y.target) for x, y in zip(a, c))


def test_min_keep_and_bad_configs():
    full = {"num_blocks": 4, "spatial_scale": (1.0, 1.0), "temporal_scale": (1.0, 1.0), "aspect": (1.0, 1.0)}
    (m,) = _draw(0, 4, MultiBlock3DMaskSampler([full], min_keep=5))
    assert m.context.shape[1] >= 5  # everything was a target: tokens were handed back to the context
    with pytest.raises(ConfigError, match="unknown keys"):
        MultiBlock3DMaskSampler([{"blocks": 2}])
    with pytest.raises(ConfigError, match="spatial_scale"):
        MultiBlock3DMaskSampler([{**LONG_RANGE, "spatial_scale": (0.0, 0.5)}])


def test_end_anchored_blocks_make_the_future_the_target():
    half = {"num_blocks": 2, "spatial_scale": (0.3, 0.3), "temporal_scale": (0.5, 0.5), "aspect": (1.0, 1.0)}
    g = torch.Generator().manual_seed(3)
    anywhere = MultiBlock3DMaskSampler([half])
    future = MultiBlock3DMaskSampler([{**half, "temporal_anchor": "end"}])
    size = future.block_size(future.configs[0], GRID, [0.0, 0.0, 0.0])
    assert size[0] == 2  # half of the 4 time steps
    masked_steps = future.target_mask(future.configs[0], 64, GRID, size, g).flatten(2).any(2)  # [64, t]
    assert not masked_steps[:, :2].any() and masked_steps[:, 2:].all()  # the past is context, the last 2 steps target
    starts = anywhere.target_mask(anywhere.configs[0], 64, GRID, size, g).flatten(2).any(2)
    assert starts[:, 0].any() and starts[:, 1:3].all(1).any()  # the default also masks the start and the middle
    (m,) = future(8, GRID, g)
    t_of = m.target // (GRID[1] * GRID[2])
    assert t_of.min() >= 2  # the sampler's own targets lie in the last two time steps
    with pytest.raises(ConfigError, match="temporal_anchor"):
        MultiBlock3DMaskSampler([{**half, "temporal_anchor": "start"}])
