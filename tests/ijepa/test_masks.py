import pytest
import torch

from ijepa.masks import MultiBlockMaskSampler
from jepa.errors import ConfigError
from jepa.module import mask_key


def draw(sampler, b=16, grid=(7, 7), seed=0):
    return sampler(b, grid, torch.Generator().manual_seed(seed))


def test_shapes_and_disjoint_context_and_targets():
    s = MultiBlockMaskSampler(min_keep=4)
    m = draw(s)
    assert m.targets.shape[:2] == (4, 16) and m.context.shape[0] == 16
    for i in range(16):
        ctx = set(m.context[i].tolist())
        assert len(ctx) == m.context.shape[1], "context indices repeat"
        for t in range(4):
            assert not ctx & set(m.targets[t, i].tolist()), "a target token leaked into the context"


@pytest.mark.parametrize("grid", [(7, 7), (14, 14), (5, 9)])
def test_block_sizes_within_range_and_min_keep(grid):
    s = MultiBlockMaskSampler(min_keep=4)
    h, w = grid
    for seed in range(40):
        m = draw(s, b=8, grid=grid, seed=seed)
        kt = m.targets.shape[2]
        # a block of ~scale*h*w patches after rounding its sides: generous but meaningful bounds
        assert 1 <= kt <= round(0.2 * h * w * 1.6) + 2
        assert m.context.shape[1] >= 4
        # each target is a rectangle: its rows x cols cover exactly kt tokens
        idx = m.targets[0, 0]
        rows, cols = set((idx // w).tolist()), set((idx % w).tolist())
        assert len(rows) * len(cols) == kt
        assert max(idx.tolist()) < h * w


def test_deterministic_and_keyed():
    s = MultiBlockMaskSampler(min_keep=4)
    a, b = draw(s, seed=mask_key(0, 5, 0)), draw(s, seed=mask_key(0, 5, 0))
    assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)
    c = draw(s, seed=mask_key(0, 5, 1))  # another rank, same step
    d = draw(s, seed=mask_key(0, 6, 0))  # next step, same rank
    assert not torch.equal(a.targets, c.targets)
    assert not torch.equal(a.targets, d.targets)
    assert len({mask_key(0, step, rank) for step in range(100) for rank in range(8)}) == 800


def test_every_row_and_column_reachable():
    """The official sampler never puts a block corner on the last rows/columns; ours covers the whole grid."""
    s = MultiBlockMaskSampler(min_keep=4)
    hits = torch.zeros(7, 7)
    for seed in range(50):
        m = draw(s, seed=seed)
        hits.view(-1).index_add_(0, m.targets.flatten(), torch.ones(m.targets.numel()))
    assert (hits.sum(1) > 0).all() and (hits.sum(0) > 0).all()
    assert hits[-1].sum() > 0.5 * hits[0].sum(), "last row under-sampled"
    assert hits[:, -1].sum() > 0.5 * hits[:, 0].sum(), "last column under-sampled"


def test_scale_and_aspect_independent():
    """The official sampler draws scale and aspect from one number, so they are perfectly correlated."""
    s = MultiBlockMaskSampler(min_keep=4)
    sizes = [s.block_size(s.target_scale, s.target_aspect, 28, 28, torch.rand(2, generator=torch.Generator().manual_seed(i)))
             for i in range(400)]
    area = torch.tensor([h * w for h, w in sizes], dtype=torch.float)
    aspect = torch.tensor([h / w for h, w in sizes])
    corr = torch.corrcoef(torch.stack([area, aspect]))[0, 1]
    assert abs(float(corr)) < 0.3


def test_context_truncation_not_biased_to_top_left():
    s = MultiBlockMaskSampler(min_keep=4)
    kept = torch.zeros(49)
    for seed in range(100):
        m = draw(s, b=32, seed=seed)
        kept.index_add_(0, m.context.flatten(), torch.ones(m.context.numel()))
    grid = kept.view(7, 7)
    assert grid[-1].sum() > 0.7 * grid[0].sum()
    assert grid[:, -1].sum() > 0.7 * grid[:, 0].sum()


@pytest.mark.parametrize("kwargs,key", [
    (dict(target_scale=(0.0, 0.2)), "target_scale"),
    (dict(target_scale=(0.2, 1.5)), "target_scale"),
    (dict(context_scale=(0.9, 0.8)), "context_scale"),
    (dict(target_aspect=(-1, 2)), "target_aspect"),
    (dict(num_targets=0), "num_targets"),
    (dict(min_keep=0), "min_keep"),
])
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        MultiBlockMaskSampler(**kwargs)


def test_infeasible_on_grid_is_reported():
    s = MultiBlockMaskSampler(num_targets=4, target_scale=(0.9, 1.0), min_keep=10)
    with pytest.raises(ConfigError, match="min_keep"):
        draw(s, grid=(4, 4))
