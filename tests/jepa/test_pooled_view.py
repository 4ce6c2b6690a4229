import pytest
import torch
import torch.nn.functional as F

from jepa.errors import ConfigError
from tests.conftest import tiny_model


def pooled_by_hand(model, x, config) -> torch.Tensor:
    """The term written out: the context encoder's pooled, layer-normed view of the context tokens against the
    pooled, layer-normed mean of the target encoder's layer-normed tokens of the whole image."""
    with torch.no_grad():
        full = model.target_encoder(x)
        h = F.layer_norm(full, (full.size(-1),))
    target = F.layer_norm(h.mean(1), (h.size(-1),))
    z = model.encoder(x, config.context)
    return F.smooth_l1_loss(F.layer_norm(z.mean(1), (z.size(-1),)), target)


def test_pooled_weight_adds_that_many_times_the_pooled_view_term():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 16, 16)
    plain, pooled = tiny_model(), tiny_model(pooled_weight=0.5)
    pooled.load_state_dict(plain.state_dict())
    masks = plain.sample_masks(x, torch.Generator().manual_seed(0))
    base, _ = plain.jepa_loss(x, masks)
    with_term, _ = pooled.jepa_loss(x, masks)
    expected = pooled_by_hand(plain, x, masks)
    assert expected > 1e-3  # a context block and the whole image do not pool to the same vector at random init
    assert torch.allclose(with_term - base, 0.5 * expected, atol=1e-5)


def test_the_pooled_view_term_trains_the_context_encoder_only():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 16, 16)
    model = tiny_model(pooled_weight=1.0)
    masks = model.sample_masks(x, torch.Generator().manual_seed(0))
    term = model.pooled_term([model.encoder(x, masks.context)], F.layer_norm(model.target_encoder(x), (32,)))
    term.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.target_encoder.parameters())


def test_a_negative_pooled_weight_names_the_key():
    with pytest.raises(ConfigError, match="model.pooled_weight must be >= 0"):
        tiny_model(pooled_weight=-1.0)
