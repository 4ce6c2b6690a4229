import pytest
import torch

from jepa.sigreg import epps_pulley, sigreg
from tests.conftest import tiny_model

# a tiny V-JEPA: 4-frame 16 x 16 clips, 2 time slots of 4 x 4 tubelet tokens
TINY_VIDEO = dict(img_size=16, patch_size=4, num_frames=4, tubelet_size=2, in_chans=1, embed_dim=32, depth=1,
                  num_heads=2, predictor_embed_dim=16, predictor_depth=1)


def test_epps_pulley_is_small_for_gaussians_and_large_otherwise():
    g = torch.Generator().manual_seed(0)
    gaussian = torch.randn(2000, 4, generator=g)
    uniform = (torch.rand(2000, 4, generator=g) - 0.5) * 3.46  # unit variance, not Gaussian
    shifted = gaussian + 1.0
    assert epps_pulley(gaussian).max() < 5.0  # N x squared error: O(1) for samples of the null
    assert epps_pulley(uniform).min() > 10 * epps_pulley(gaussian).mean()
    assert epps_pulley(shifted).min() > 50


def test_sigreg_ranks_collapse_worst_and_its_gradient_spreads_embeddings():
    g = torch.Generator().manual_seed(1)
    healthy = torch.randn(512, 16, generator=g)
    collapsed = torch.randn(512, 1, generator=g) * torch.ones(1, 16)  # every dimension the same number
    assert sigreg(collapsed, 64, torch.Generator().manual_seed(0)) > 10 * sigreg(healthy, 64, torch.Generator().manual_seed(0))
    z = (0.1 * torch.randn(512, 16, generator=g) + 2.0).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.05)
    first = None
    for step in range(60):
        loss = sigreg(z, 64, torch.Generator().manual_seed(step))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first


def test_ijepa_adds_sigreg_only_when_asked():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 16, 16)
    plain, reg = tiny_model(), tiny_model(sigreg_weight=0.5, sigreg_slices=32)
    reg.load_state_dict(plain.state_dict())
    masks = plain.sample_masks(x, torch.Generator().manual_seed(0))
    base, _ = plain.jepa_loss(x, masks)
    with_reg, _ = reg.jepa_loss(x, masks)
    assert with_reg > base + 0.1  # a freshly initialised encoder is far from an isotropic Gaussian


def test_vjepa_adds_sigreg_only_when_asked():
    from vjepa import VJEPA, MultiBlock3DMaskSampler

    args = dict(TINY_VIDEO, mask_sampler=MultiBlock3DMaskSampler())
    torch.manual_seed(0)
    plain = VJEPA(**args)
    reg = VJEPA(**args, sigreg_weight=0.5, sigreg_slices=32)
    reg.load_state_dict(plain.state_dict())
    x = torch.rand(8, 4, 1, 16, 16)
    masks = plain.sample_masks(x, torch.Generator().manual_seed(0))
    base, _ = plain.jepa_loss(x, masks)
    with_reg, _ = reg.jepa_loss(x, masks)
    assert with_reg > base + 0.1


def test_slot_means_average_the_gathered_tokens_of_each_time_slot():
    from jepa.masking import slot_means

    x = torch.arange(12.0).reshape(1, 6, 2)
    index = torch.tensor([[0, 1, 4, 5, 9, 3]])          # slots of 4 tokens: 0, 0, 1, 1, 2, 0
    means = slot_means(x, index, tokens_per_slot=4, slots=4)   # slot 3 holds no token and gives no row
    assert torch.equal(means, torch.tensor([[(0 + 2 + 10) / 3, (1 + 3 + 11) / 3], [5.0, 6.0], [8.0, 9.0]]))


def test_vjepa_sigreg_per_time_slot_takes_each_slots_context_average_as_a_sample():
    from vjepa import VJEPA, MultiBlock3DMaskSampler

    args = dict(TINY_VIDEO, mask_sampler=MultiBlock3DMaskSampler(), sigreg_weight=1.0, sigreg_slices=32)
    torch.manual_seed(0)
    per_clip, per_slot = VJEPA(**args), VJEPA(**args, sigreg_pool="time")
    per_slot.load_state_dict(per_clip.state_dict())
    x = torch.rand(8, 4, 1, 16, 16)
    config = per_clip.sample_masks(x, torch.Generator().manual_seed(0))[0]
    z = per_clip.encoder(x.transpose(1, 2), config.context)          # [8, K, 32]
    slot = config.context // 16                                         # 4 x 4 tokens per tubelet slot, 2 slots
    by_hand = torch.cat([torch.stack([z[b][slot[b] == t].mean(0) for t in range(2) if (slot[b] == t).any()])
                         for b in range(8)])
    # the per-clip term of one-token "clips" holding the slot averages: the same directions, the by-hand samples
    expected = per_clip.sigreg_term([by_hand.unsqueeze(1)], [torch.zeros(len(by_hand), 1, dtype=torch.long)])
    assert torch.allclose(per_slot.sigreg_term([z], [config.context]), expected)
    assert not torch.allclose(per_clip.sigreg_term([z], [config.context]), expected)


@pytest.mark.parametrize("bad, match", [({"sigreg_weight": -0.1}, "model.sigreg_weight must be >= 0"),
                                        ({"sigreg_pool": "frame"}, "model.sigreg_pool must be 'input' or 'time'"),
                                        ({"sigreg_slices": 0}, "model.sigreg_slices >= 1"),
                                        ({"predictor_embed_dim": 15}, "model.predictor_embed_dim 15 must be divisible")])
def test_both_modules_name_the_bad_model_key(bad, match):
    from jepa.errors import ConfigError
    from vjepa import VJEPA

    with pytest.raises(ConfigError, match=match):
        tiny_model(**bad)
    with pytest.raises(ConfigError, match=match):
        VJEPA(**{**TINY_VIDEO, **bad})
