import pytest
import torch

from eval.features import pixel_tokens, pool
from eval.linear_probe import DEFAULT_WEIGHT_DECAYS, _Shuffled, _train, linear_probe, standardise
from jepa.checkpoint import load_strict, strip_prefixes
from jepa.errors import ConfigError
from jepa.vit import VisionTransformer


def test_linear_probe_learns_separable_classes_and_picks_on_validation():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 20, generator=g) * 3
    y = torch.randint(0, 4, (800,), generator=g)
    x = centres[y] + torch.randn(800, 20, generator=g)
    result = linear_probe(x[:600], y[:600], x[600:], y[600:], solver="adamw", epochs=10)
    assert result.test_acc > 0.95 and result.solver == "adamw"
    assert set(result.val_acc) == {"lr=0.01,wd=0.0001", "lr=0.01,wd=0.001"}  # the minibatch solver's grid
    assert result.weight_decay in (1e-4, 1e-3)
    converged = linear_probe(x[:600], y[:600], x[600:], y[600:], solver="lbfgs", weight_decays=(1e-5, 1e-3))
    assert converged.test_acc > 0.95 and converged.lr is None  # no learning rate to choose
    assert set(converged.val_acc) == {"wd=1e-05", "wd=0.001"}
    with pytest.raises(ValueError, match="solver must be one of auto, lbfgs, adamw, got 'sgd'"):
        linear_probe(x[:600], y[:600], x[600:], y[600:], solver="sgd")


def test_auto_solver_converges_narrow_features_and_trains_wide_ones_minibatch():
    """auto = lbfgs with its own weight-decay grid up to lbfgs_max_features features, adamw with its grid above."""
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (400,), generator=g)
    x = torch.randn(3, 24, generator=g)[y] + torch.randn(400, 24, generator=g)
    narrow = linear_probe(x[:300], y[:300], x[300:], y[300:], lbfgs_max_features=24)
    assert narrow.solver == "lbfgs" and set(narrow.val_acc) == {f"wd={wd:g}" for wd in DEFAULT_WEIGHT_DECAYS["lbfgs"]}
    wide = linear_probe(x[:300], y[:300], x[300:], y[300:], lbfgs_max_features=23, epochs=2, sweep_epochs=2)
    assert wide.solver == "adamw" and set(wide.val_acc) == {"lr=0.01,wd=0.0001", "lr=0.01,wd=0.001"}
    given = linear_probe(x[:300], y[:300], x[300:], y[300:], weight_decays=(1e-2,))  # a given grid is kept
    assert given.solver == "lbfgs" and given.weight_decay == 1e-2 and given.val_acc == {}


def test_lbfgs_probe_reaches_the_optimum_that_fixed_epochs_of_adamw_miss():
    """The converged solver's training loss is the minimum of the regularised objective: at it the gradient
    vanishes, and it beats the minibatch solver's loss at the same weight decay."""
    from eval.linear_probe import _fit_lbfgs
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2000, 30, generator=g)
    y = (x[:, :3] @ torch.randn(3, 5, generator=g) + 0.8 * torch.randn(2000, 5, generator=g)).argmax(1)
    wd = 1e-4

    def objective(head):
        return torch.nn.functional.cross_entropy(head(x), y) + 0.5 * wd * head.weight.pow(2).sum()

    head = _fit_lbfgs(x, y, 5, wd, max_iter=500)
    loss = objective(head)
    loss.backward()
    assert head.weight.grad.abs().max() < 1e-4
    minibatch = _train(_Shuffled.of(x, y, seed=0), 5, [(1e-2, wd)], epochs=2, batch_size=256)[0]
    assert loss.item() < objective(minibatch).item() - 1e-3


def test_preconditioned_lbfgs_reaches_the_plain_objective_on_correlated_features_in_few_iterations():
    """Rotating into the covariance eigenbasis and rescaling is a change of variables: the head it returns, on the
    rotated features, has the plain objective's value at the optimum, and it gets there where plain L-BFGS, on
    strongly correlated features, is still far off after the same number of iterations."""
    from eval.linear_probe import _fit_lbfgs, _fit_preconditioned, rotate
    g = torch.Generator().manual_seed(5)
    latent = torch.randn(3000, 4, generator=g) * torch.tensor([1.0, 0.1, 0.01, 0.003])  # eigenvalues 36 ... 3e-3
    y = (latent / latent.std(0) @ torch.randn(4, 5, generator=g) + 0.5 * torch.randn(3000, 5, generator=g)).argmax(1)
    mix = torch.randn(4, 40, generator=g)
    x = standardise(latent @ mix + 1e-4 * torch.randn(3000, 40, generator=g))[0]  # rank 4 plus a noise floor
    wd = 1e-6

    def objective(head, feats):
        with torch.no_grad():
            return (torch.nn.functional.cross_entropy(head(feats), y) + 0.5 * wd * head.weight.pow(2).sum()).item()

    (u,), eigvals = rotate(x)
    torch.testing.assert_close(u.T @ u / len(u), torch.diag(eigvals), atol=1e-3, rtol=1e-3)  # an eigenbasis
    best = objective(_fit_lbfgs(x, y, 5, wd, max_iter=5000), x)
    pre = objective(_fit_preconditioned(u, y, eigvals, 5, wd, max_iter=40), u)
    plain = objective(_fit_lbfgs(x, y, 5, wd, max_iter=40), x)
    assert abs(pre - best) < 1e-3 and plain - best > 0.05


def test_sweep_heads_trained_in_one_pass_equal_heads_trained_alone():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(300, 16, generator=g), torch.randint(0, 4, (300,), generator=g)
    data = _Shuffled.of(x, y, seed=0)
    settings = [(1e-2, 1e-4), (3e-3, 1e-1), (1e-2, 1e-1)]
    together = _train(data, 4, settings, epochs=3, batch_size=64)
    for setting, head in zip(settings, together):
        alone = _train(data, 4, [setting], epochs=3, batch_size=64)[0]
        torch.testing.assert_close(head.weight, alone.weight, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(head.bias, alone.bias, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(together[0].weight, together[1].weight)  # the settings really differ


def test_standardise_gathers_rows_in_order_chunk_by_chunk():
    g = torch.Generator().manual_seed(2)
    x, other = torch.randn(50, 6, generator=g) * 3 + 1, torch.randn(7, 6, generator=g)
    order = torch.randperm(50, generator=g)
    z, z_other = standardise(x, other, chunk=8, order=order)
    expect = (x - x.mean(0)) / x.std(0)
    torch.testing.assert_close(z, expect[order])
    torch.testing.assert_close(z_other, (other - x.mean(0)) / x.std(0))
    z16 = standardise(x.half(), chunk=8)[0]  # fp16 features (the cache's) come back as fp32, standardised
    assert z16.dtype == torch.float32
    torch.testing.assert_close(z16, (x.half().float() - x.half().float().mean(0)) / x.half().float().std(0))


def test_linear_probe_on_noise_is_near_chance():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(1000, 10, generator=g), torch.randint(0, 5, (1000,), generator=g)
    assert linear_probe(x[:800], y[:800], x[800:], y[800:], epochs=5).test_acc < 0.35


def test_pixel_tokens_and_pooling():
    images = torch.arange(2 * 8 * 8, dtype=torch.uint8).view(2, 1, 8, 8)
    tokens = pixel_tokens(images, 4)
    assert tokens.shape == (2, 4, 16)
    assert torch.allclose(tokens[0, 1], images[0, 0, :4, 4:].flatten().float() / 255)
    assert pool(tokens, "avg").shape == (2, 16)
    assert pool(tokens, "flat").shape == (2, 64)
    assert pool(tokens, "avg+2x2").shape == (2, 16 * 5)
    with pytest.raises(ValueError, match="unknown probe protocol"):
        pool(tokens, "cls")


def test_loading_is_strict_and_strips_wrappers():
    enc = VisionTransformer(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2)
    wrapped = {f"module._orig_mod.{k}": v for k, v in enc.state_dict().items()}
    fresh = VisionTransformer(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2)
    load_strict(fresh, strip_prefixes(wrapped), "test")
    assert torch.equal(fresh.blocks[0].mlp.fc1.weight, enc.blocks[0].mlp.fc1.weight)
    partial = dict(strip_prefixes(wrapped))
    partial.pop("norm.weight")
    partial["extra.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError, match=r"missing keys \['norm.weight'\].*unexpected keys \['extra.weight'\]"):
        load_strict(fresh, partial, "test")
