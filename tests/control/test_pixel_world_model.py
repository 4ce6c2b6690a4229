"""The pixel world model: its encoder trains with the predictor (SIGReg in the loss), and its checkpoint reads back
as a plain WorldModel with that encoder frozen, which plans."""
from __future__ import annotations

import torch

from jepa_control.frames import TWO_ROOMS_MEAN, TWO_ROOMS_STD
from tests.conftest import tiny_trainer

TINY_VIT = {"img_size": 16, "patch_size": 4, "in_chans": 3, "embed_dim": 32, "depth": 1, "num_heads": 2}


def tiny_pixel_model(**overrides):
    from jepa_control.pixel_world_model import PixelWorldModel

    torch.manual_seed(0)
    options = dict(pool_grid=2, embed_dim=32, depth=1, num_heads=2, context=2, rollout_steps=2, warmup_steps=1)
    return PixelWorldModel(TINY_VIT, TWO_ROOMS_MEAN, TWO_ROOMS_STD, **{**options, **overrides})


def test_the_encoder_trains_with_the_predictor_and_the_checkpoint_plans_frozen(tiny_control):
    from jepa_control.evaluate import run_episodes
    from jepa_control.mpc import LatentModel, MPCAgent
    from jepa_control.cost import GoalCost
    from jepa_control.pixel_data import PixelTrajectoryDataModule
    from jepa_control.planners import CEM
    from jepa_control.two_rooms import TwoRooms, TwoRoomsConfig
    from jepa_control.world_model import WorldModel

    path = tiny_control[0]
    model = tiny_pixel_model()
    data = PixelTrajectoryDataModule(str(path / "train"), str(path / "val"), window=3, batch_size=8)
    before = [p.detach().clone() for p in model.frozen_encoder.encoder.parameters()]
    trainer = tiny_trainer(path, max_steps=4)
    trainer.fit(model, data)
    after = list(model.frozen_encoder.encoder.parameters())
    assert all(p.requires_grad for p in after) and not all(torch.equal(a, b) for a, b in zip(after, before))
    trainer.save_checkpoint(path / "pixel.ckpt")

    loaded = WorldModel.from_checkpoint(str(path / "pixel.ckpt"))
    assert type(loaded) is WorldModel and not loaded.frozen_encoder.layer_norm
    assert not any(p.requires_grad for p in loaded.frozen_encoder.encoder.parameters())
    frames = data.val_set[0]["frames"][None]
    assert torch.allclose(loaded.encode(frames), model.eval().encode(frames), atol=1e-6)
    env = TwoRooms(TwoRoomsConfig(img_size=16), eval_layouts=True)
    r = run_episodes(env, lambda s: MPCAgent(LatentModel(loaded), CEM(4, 2, samples=16, iterations=2, elites=4),
                                             GoalCost()), episodes=1, seeds=[0], budget=5)
    assert r["episodes"] == 1 and r["plans"] == 2


def test_sigreg_on_the_frame_embeddings_joins_the_prediction_loss(tiny_control):
    from jepa.sigreg import sigreg
    from jepa_control.pixel_data import PixelTrajectoryDataModule

    path = tiny_control[0]
    data = PixelTrajectoryDataModule(str(path / "train"), window=3, batch_size=8)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch["frames"].dtype == torch.uint8 and batch["frames"].shape[:2] == (8, 3)
    model = tiny_pixel_model(sigreg_weight=0.5)
    torch.manual_seed(1)
    losses = model.losses(batch)
    assert torch.allclose(losses["loss"], losses["teacher_forcing"] + losses["rollout"] + 0.5 * losses["sigreg"])
    embeddings = model.frozen_encoder.embed(batch["frames"].flatten(0, 1)).flatten(1).unflatten(0, (8, 3))
    torch.manual_seed(1)  # one embedding per frame (4 tokens x 32), tested at each time step over the 8 windows
    per_step = torch.stack([sigreg(embeddings[:, t]) for t in range(3)]).mean()
    assert torch.allclose(losses["sigreg"], per_step)
    torch.manual_seed(1)
    assert not torch.allclose(losses["sigreg"], sigreg(embeddings.flatten(0, 1)))  # not all 24 frames as one set
    grads = torch.autograd.grad(losses["sigreg"], list(model.frozen_encoder.encoder.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)  # it shapes the encoder


def test_jepa_fit_trains_a_pixel_world_model_from_its_options(tiny_control):
    """`jepa fit` builds the model from its options (the encoder's architecture as a dict) and the frame windows; the
    checkpoint it writes plans as a WorldModel."""
    from jepa.cli import main
    from jepa_control.world_model import WorldModel

    path = tiny_control[0]
    code = main(["fit", "--model", "jepa_control.pixel_world_model.PixelWorldModel",
                 "--model.encoder", '{"img_size": 16, "patch_size": 4, "in_chans": 3, "embed_dim": 16, "depth": 1, '
                 '"num_heads": 2}', "--model.mean", "[0.24, 0.23, 0.21]", "--model.std", "[0.17, 0.16, 0.14]",
                 "--model.embed_dim", "16", "--model.depth", "1", "--model.num_heads", "2",
                 "--model.rollout_steps", "2", "--data", "jepa_control.pixel_data.PixelTrajectoryDataModule",
                 "--data.train_dir", str(path / "train"), "--data.window", "3", "--data.batch_size", "8",
                 "--trainer.max_steps", "1", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                 "--trainer.default_root_dir", str(path / "cli_pixel")])
    assert code == 0
    loaded = WorldModel.from_checkpoint(str(next((path / "cli_pixel").rglob("*.ckpt"))))
    assert loaded.frozen_encoder.encoder.embed_dim == 16 and loaded.frozen_encoder.mean.flatten()[0] == 0.24
