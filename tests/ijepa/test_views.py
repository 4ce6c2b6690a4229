import pytest
import torch

from data.transforms import Views, view_transform
from jepa.errors import ConfigError
from tests.conftest import tiny_model


def test_views_are_independent_draws_of_the_transform_stacked():
    calls = iter(range(10))
    stacked = Views(lambda x: x + next(calls), 3)(torch.zeros(1, 4, 4))
    assert stacked.shape == (3, 1, 4, 4) and stacked[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ConfigError, match="must give >= 2 views in all"):
        Views(lambda x: x, 1)
    # what every image datamodule uses: one augmented image, a stack of views, or (views, local views)
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    assert view_transform(28, (0.3, 1.0), True, [0.5], [0.5])(image).shape == (1, 28, 28)
    assert view_transform(28, (0.3, 1.0), True, [0.5], [0.5], views=2)(image).shape == (2, 1, 28, 28)
    views, local = view_transform(28, (0.3, 1.0), True, [0.5], [0.5], views=2, local_views=4, local_size=12)(image)
    assert views.shape == (2, 1, 28, 28) and local.shape == (4, 1, 12, 12)
    with pytest.raises(ConfigError, match="data.views must be >= 1"):
        view_transform(28, (0.3, 1.0), True, [0.5], [0.5], views=0)


def test_view_term_adds_to_the_ijepa_loss_of_the_first_view():
    torch.manual_seed(0)
    views = torch.rand(8, 2, 1, 16, 16)
    plain, multi = tiny_model(), tiny_model(view_weight=0.5)
    multi.load_state_dict(plain.state_dict(), strict=False)  # the projector exists in `multi` only
    masks = plain.sample_masks(views[:, 0], torch.Generator().manual_seed(0))
    base, _ = plain.jepa_loss(views[:, 0], masks)
    with_views, _ = multi.jepa_loss(views, masks)
    term = multi.view_term(multi.encoder, views, torch.Generator().manual_seed(0))
    assert term > 0
    assert with_views > base  # the I-JEPA part is the first view's, unchanged
    # two identical views: no invariance error is left, only the SIGReg share
    same = views[:, :1].expand(-1, 2, -1, -1, -1)
    share = multi.view_term.sigreg_share
    only_reg = multi.view_term(multi.encoder, same, torch.Generator().manual_seed(0))
    multi.view_term.sigreg_share = 1.0
    reg = multi.view_term(multi.encoder, same, torch.Generator().manual_seed(0))
    assert torch.allclose(only_reg, share * reg, rtol=1e-4)


def test_the_view_term_trains_the_encoder_and_its_projector():
    model = tiny_model(view_weight=1.0)
    views = torch.rand(8, 2, 1, 16, 16)
    masks = model.sample_masks(views, torch.Generator().manual_seed(0))
    loss, _ = model.jepa_loss(views, masks)
    loss.backward()
    assert all(p.grad is not None for p in model.view_term.parameters())
    groups = model.param_groups()
    trained = {id(p) for g in groups for p in g["params"]}
    assert all(id(p) in trained for p in model.view_term.parameters())  # the optimizer steps the projector too


def test_views_without_the_view_term_and_bad_weights_name_the_keys():
    with pytest.raises(ConfigError, match="model.view_weight is 0"):
        tiny_model().jepa_loss(torch.rand(4, 2, 1, 16, 16), None)
    with pytest.raises(ConfigError, match="model.view_weight must be >= 0"):
        tiny_model(view_weight=-1.0)
    with pytest.raises(ConfigError, match="model.view_sigreg_share in"):
        tiny_model(view_weight=1.0, view_sigreg_share=2.0)


def test_fashion_mnist_gives_each_image_its_views_reproducibly(fmnist_root):
    from lightning.pytorch import Trainer

    from data.fashion_mnist import FashionMNISTDataModule

    def first_batch():
        dm = FashionMNISTDataModule(fmnist_root, batch_size=4, num_workers=0, limit_train=16, views=3, seed=5)
        dm.trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))

    x, y, _ = first_batch()
    assert x.shape == (4, 3, 1, 28, 28) and y.shape == (4,)
    assert not torch.equal(x[:, 0], x[:, 1])  # independent crops of the same image
    assert torch.equal(first_batch()[0], x)  # keyed by (seed, epoch, image): the same views again
    dm = FashionMNISTDataModule(fmnist_root, batch_size=4, num_workers=0, limit_train=16, views=2, local_views=3,
                                local_size=12, seed=5)
    dm.trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    dm.setup("fit")
    (views, local), _, _ = next(iter(dm.train_dataloader()))
    assert views.shape == (4, 2, 1, 28, 28) and local.shape == (4, 3, 1, 12, 12)
    with pytest.raises(ConfigError, match="data.views must be >= 1"):
        FashionMNISTDataModule(fmnist_root, views=0)


def test_a_view_weight_without_views_is_refused_in_training_only():
    model = tiny_model(view_weight=1.0)
    x = torch.rand(4, 1, 16, 16)
    masks = model.sample_masks(x, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="set data.views >= 2"):
        model.jepa_loss(x, masks)
    model.eval()  # validation: one view per image, the I-JEPA loss alone
    loss, _ = model.jepa_loss(x, masks)
    assert torch.isfinite(loss)


def test_fsdp_with_the_view_term_is_refused_naming_the_key():
    model = tiny_model(view_weight=1.0)
    model._device_mesh = object()  # what Lightning's ModelParallelStrategy sets before configure_model
    with pytest.raises(ConfigError, match="model.view_weight is not supported under FSDP"):
        model.configure_model()


def test_local_views_are_pulled_to_the_mean_of_the_global_views():
    """LeJEPA's centre is the mean of the global views only; the local views are pulled to it too."""
    term = tiny_model(view_weight=1.0, view_sigreg_share=0.0).view_term
    term.projector = torch.nn.Identity()  # the pooled embeddings themselves

    def constant_tokens(x):  # each view embeds to its own pixel value, whatever its size
        return x.flatten(1)[:, :1, None].expand(-1, 3, 8)

    views = torch.stack([torch.zeros(4, 1, 16, 16), torch.full((4, 1, 16, 16), 2.0)], 1)  # centre 1
    local = torch.full((4, 1, 1, 8, 8), 4.0)
    got = term(constant_tokens, views, torch.Generator().manual_seed(0), local)
    assert torch.allclose(got, torch.tensor((1 + 1 + 9) / 3))  # a centre of all three views would give 8 / 3
    assert torch.allclose(term(constant_tokens, views, torch.Generator().manual_seed(0)), torch.tensor(1.0))


def test_local_views_train_through_the_encoder_at_their_own_size():
    model = tiny_model(view_weight=1.0)
    views, local = torch.rand(8, 2, 1, 16, 16), torch.rand(8, 3, 1, 8, 8)
    batch = ([views, local], torch.zeros(8), torch.arange(8))  # what the loader gives: (inputs, labels, indices)
    masks = model.masks_for(batch, 0, 0)
    loss, full = model.jepa_loss(batch, masks)
    assert full.shape[:2] == (8, 16) and torch.isfinite(loss)
    only_global, _ = model.jepa_loss((views, torch.zeros(8)), masks)
    assert not torch.allclose(loss, only_global)  # the local views enter the term
    loss.backward()
    assert model.encoder.patch_embed.proj.weight.grad is not None
    encoder = model.encoder  # 16 px at patch 4: a 4x4 grid; 8 px local views: 2x2, position embedding resampled
    assert torch.equal(encoder.position_embedding((16, 16)), encoder.pos_embed)
    assert encoder.position_embedding((8, 8)).shape == (1, 4, encoder.embed_dim)
    with pytest.raises(ConfigError, match="data.local_size must be a multiple of model.patch_size 4"):
        model.jepa_loss(([views, torch.rand(8, 3, 1, 6, 6)], torch.zeros(8)), masks)
    # one local view and no second global view still makes a multi-view term
    single = ([views[:, 0], local], torch.zeros(8), torch.arange(8))
    assert torch.isfinite(model.jepa_loss(single, masks)[0])


def test_the_resume_position_counts_images_not_view_stacks():
    from data.resumable import samples_in

    views, local = torch.zeros(8, 2, 1, 16, 16), torch.zeros(8, 4, 1, 8, 8)
    assert samples_in(([views, local], torch.zeros(8), torch.arange(8))) == 8  # not 2, the pair's length
    assert samples_in((views, torch.zeros(8))) == 8
