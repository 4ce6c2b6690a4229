import math

import pytest
import torch

from jepa.errors import ConfigError
from jepa.masking import apply_masks, pad_indices
from jepa.pos_embed import sincos_2d
from jepa.vit import Predictor, VisionTransformer, context_and_predictions


def test_encoder_shapes_no_cls_and_masking():
    enc = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2)
    x = torch.randn(3, 1, 16, 16)
    assert enc(x).shape == (3, 16, 32)  # 4x4 patches, no CLS token
    idx = torch.tensor([[0, 5, 15], [1, 2, 3], [4, 8, 12]])
    assert enc(x, idx).shape == (3, 3, 32)
    assert enc.encode(x[:, None].repeat(1, 2, 1, 1, 1)).shape == (3, 2, 16, 32)


def test_masking_happens_after_position_embedding():
    """Dropping tokens must not change where the kept ones are: with depth 0 the masked output equals a gather."""
    enc = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2).eval()
    enc.blocks = torch.nn.ModuleList()
    x = torch.randn(2, 1, 16, 16)
    idx = torch.tensor([[3, 7], [0, 15]])
    assert torch.allclose(enc(x, idx), apply_masks(enc(x), idx))


def test_apply_masks_is_a_gather_mask_major():
    x = torch.arange(2 * 5 * 3, dtype=torch.float).view(2, 5, 3)
    m1, m2 = torch.tensor([[0, 4], [1, 2]]), torch.tensor([[3, 3], [0, 1]])
    out = apply_masks(x, [m1, m2])
    assert out.shape == (4, 2, 3)
    assert torch.equal(out[1, 0], x[1, 1]) and torch.equal(out[2, 0], x[0, 3]) and torch.equal(out[3, 1], x[1, 1])


def test_sincos_matches_formula():
    d, pe = 16, sincos_2d(16, 3, 5)
    assert pe.shape == (15, 16)
    row, col = 2, 3
    k = 1  # the second frequency of each half-of-a-half
    omega = 1.0 / 10000 ** (k / (d / 4))
    v = pe[row * 5 + col]
    assert math.isclose(float(v[k]), math.sin(col * omega), abs_tol=1e-6)           # width, sin
    assert math.isclose(float(v[d // 4 + k]), math.cos(col * omega), abs_tol=1e-6)  # width, cos
    assert math.isclose(float(v[d // 2 + k]), math.sin(row * omega), abs_tol=1e-6)  # height, sin


def test_output_projection_rescaled_by_depth():
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=32, patch_size=4, embed_dim=256, depth=4, num_heads=4)
    for layer_id, block in enumerate(enc.blocks, start=1):
        expected = 0.02 / math.sqrt(2 * layer_id)
        assert abs(float(block.attn.proj.weight.std()) - expected) < 0.15 * expected
        assert abs(float(block.mlp.fc2.weight.std()) - expected) < 0.15 * expected
        assert abs(float(block.attn.qkv.weight.std()) - 0.02) < 0.003


def test_patch_must_divide_image():
    with pytest.raises(ConfigError, match="patch_size 5 does not divide img_size 28"):
        VisionTransformer(img_size=28, patch_size=5)


def test_predictor_each_target_block_is_its_own_sequence():
    torch.manual_seed(0)
    pred = Predictor(grid=4, embed_dim=32, predictor_embed_dim=16, depth=2, num_heads=2).eval()
    ctx = torch.randn(2, 5, 32)
    ctx_idx = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    t1, t2 = torch.tensor([[10, 11], [12, 13]]), torch.tensor([[14, 15], [10, 11]])
    out = pred(ctx, ctx_idx, [t1, t2])
    assert out.shape == (4, 2, 32)
    # changing the second block must not change the first block's predictions
    out2 = pred(ctx, ctx_idx, [t1, torch.tensor([[2, 3], [4, 5]])])
    assert torch.allclose(out[:2], out2[:2], atol=1e-6)
    assert not torch.allclose(out[2:], out2[2:])
    # and the prediction depends on where the target is
    out3 = pred(ctx, ctx_idx, [t2, t1])
    assert not torch.allclose(out[:2], out3[:2])


def test_shared_context_predictor_keeps_blocks_apart_and_holds_the_context_once():
    torch.manual_seed(0)
    pred = Predictor(grid=4, embed_dim=32, predictor_embed_dim=16, depth=2, num_heads=2, shared_context=True).eval()
    with torch.no_grad():  # weights well away from the small init, so attention patterns matter
        for p in pred.parameters():
            p.normal_(0, 0.3)
    ctx = torch.randn(2, 5, 32)
    ctx_idx = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    t1, t2, t3 = torch.tensor([[10, 11], [12, 13]]), torch.tensor([[14, 15], [10, 11]]), torch.tensor([[2, 3], [4, 5]])
    out = pred(ctx, ctx_idx, [t1, t2, t3])
    assert out.shape == (6, 2, 32)  # mask-major, as without the option
    # every block's prediction is what that block alone gets: blocks never see each other, the context is the same
    for i, t in enumerate((t1, t2, t3)):
        torch.testing.assert_close(out[2 * i : 2 * i + 2], pred(ctx, ctx_idx, [t]), atol=1e-5, rtol=1e-5)
    # a recipe change: the context no longer attends to the mask tokens, so predictions differ from the paper's
    pred.shared_context = False
    assert (out - pred(ctx, ctx_idx, [t1, t2, t3])).abs().max() > 1e-2
    # gradients flow as usual (the training path with activation checkpointing too)
    pred.train().shared_context = True
    pred.set_grad_checkpointing(True)
    pred(ctx, ctx_idx, [t1, t2]).sum().backward()
    assert pred.mask_token.grad is not None and pred.predictor_embed.weight.grad.abs().sum() > 0


def test_pad_indices_rounds_token_counts_up_and_marks_the_real_ones():
    idx = torch.tensor([[3, 5, 9], [1, 2, 7]])
    padded, valid = pad_indices(idx, 4)
    assert padded.tolist() == [[3, 5, 9, 3], [1, 2, 7, 1]] and valid.tolist() == [True, True, True, False]
    padded, valid = pad_indices(idx, 3)  # already a multiple: same shape, a mask all True (the same graph)
    assert torch.equal(padded, idx) and valid.all()
    assert pad_indices(idx, 0) == (idx, None)
    stacked, valid = pad_indices(torch.stack([idx, idx + 1]), 8)  # [M, B, K]: every target block alike
    assert stacked.shape == (2, 2, 8) and valid.sum() == 3


def _small_nets(shared_context: bool = False):
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2)
    pred = Predictor(grid=4, embed_dim=32, predictor_embed_dim=16, depth=2, num_heads=2, shared_context=shared_context)
    with torch.no_grad():  # weights well away from the small init, so that attending to a padded token would show
        for p in [*enc.parameters(), *pred.parameters()]:
            p.normal_(0, 0.3)
    return enc, pred


@pytest.mark.parametrize("shared_context", [False, True])
def test_padded_tokens_leave_outputs_and_gradients_unchanged(shared_context):
    enc, pred = _small_nets(shared_context)
    x = torch.randn(2, 1, 16, 16)
    ctx = torch.tensor([[0, 1, 2, 4, 8], [3, 6, 7, 12, 13]])
    targets = torch.tensor([[[5, 9, 10], [10, 14, 15]], [[11, 14, 15], [0, 1, 2]]])  # 2 blocks of 3 tokens
    results = []
    for multiple in (0, 4, 8):
        enc.zero_grad()
        pred.zero_grad()
        z, p = context_and_predictions(enc, pred, x, ctx, targets, multiple)
        (p.square().mean() + z.mean()).backward()
        grads = [q.grad.clone() for q in [*enc.parameters(), *pred.parameters()] if q.grad is not None]
        results.append((z, p, grads))
    (z0, p0, g0) = results[0]
    assert z0.shape == (2, 5, 32) and p0.shape == (4, 3, 32)
    for z, p, g in results[1:]:
        torch.testing.assert_close(z, z0, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(p, p0, atol=1e-5, rtol=1e-5)
        assert len(g) == len(g0)
        for a, b in zip(g, g0):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # the padding is really there and really masked: unmasked, the padded tokens would change the outputs
    padded_ctx, valid = pad_indices(ctx, 8)
    with torch.no_grad():
        assert (enc(x, padded_ctx)[:, :5] - z0).abs().max() > 1e-3
        torch.testing.assert_close(enc(x, padded_ctx, valid=valid)[:, :5], z0, atol=1e-5, rtol=1e-5)


def test_padding_lets_compiled_networks_reuse_their_graphs():
    """Two batches with different mask sizes in one bucket: one graph each for the encoder and the predictor.
    Without padding the second batch recompiles (dynamo's own check; the eager backend keeps the test fast)."""
    import torch._dynamo

    enc, pred = _small_nets()
    x = torch.randn(2, 1, 16, 16)
    batches = [(torch.tensor([[0, 1, 2, 4, 8], [3, 6, 7, 12, 13]]), torch.tensor([[[5, 9, 10], [10, 14, 15]]])),
               (torch.tensor([[0, 1, 2, 3, 4, 8, 9], [3, 6, 7, 8, 9, 12, 13]]), torch.tensor([[[5, 10], [14, 15]]]))]
    try:
        with torch._dynamo.config.patch(error_on_recompile=True):
            torch._dynamo.reset()
            enc.compile(backend="eager")
            pred.compile(backend="eager")
            for ctx, targets in batches:
                context_and_predictions(enc, pred, x, ctx, targets, pad_multiple=8)
            torch._dynamo.reset()
            with pytest.raises(Exception, match="(?i)recompil"):
                for ctx, targets in batches:
                    context_and_predictions(enc, pred, x, ctx, targets, pad_multiple=0)
    finally:
        torch._dynamo.reset()


def test_a_conv_stem_gives_the_patch_grid_rebuilds_from_its_architecture_and_sees_one_pixel():
    from jepa.export import export_config
    from jepa.vit import encoder_args

    conv = VisionTransformer(img_size=32, patch_size=8, in_chans=3, embed_dim=64, depth=1, num_heads=4, stem="conv")
    plain = VisionTransformer(img_size=32, patch_size=8, in_chans=3, embed_dim=64, depth=1, num_heads=4)
    x = torch.randn(2, 3, 32, 32)
    assert conv(x).shape == plain(x).shape == (2, 16, 64)
    assert "stem" not in plain.architecture and conv.architecture["stem"] == "conv"  # older checkpoints unchanged
    again = VisionTransformer(**encoder_args(conv.architecture))
    again.load_state_dict(conv.state_dict())  # strict: the same layers
    torch.testing.assert_close(again(x), conv(x))
    # stride-2 3 x 3 convolutions: one pixel changes its patch's token and, through overlapping windows, at most
    # the neighbours right and below it, nothing farther
    y = x.clone()
    y[0, :, 3, 3] += 5.0
    changed = (conv.patch_embed(y) - conv.patch_embed(x)).abs().amax(-1)[0]
    assert changed[0] > 0 and all(changed[i] == 0 for i in range(16) if i not in (0, 1, 4, 5))
    assert export_config(conv, {}, None, None)["architecture"] is None  # no timm ViT has these layers
    with pytest.raises(ConfigError, match="power of two"):
        VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=64, depth=1, num_heads=4, stem="conv")
    with pytest.raises(ConfigError, match="num_frames 8"):
        VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=4, num_frames=8, stem="conv")
