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


def test_a_frameskip_world_model_trains_on_frames_that_far_apart_and_plans_holding_its_actions(tiny_control, capsys):
    """At frameskip 2 a window's frames are 2 env steps apart and its actions the 2 env actions between them; the
    checkpoint plans under `jepa plan` with each planned action held 2 env steps and measures its rollout error at
    the same stride."""
    import json

    from jepa.cli import main
    from jepa_control.collect import read_trajectories
    from jepa_control.pixel_data import PixelTrajectoryDataModule

    path = tiny_control[0]
    data = PixelTrajectoryDataModule(str(path / "train"), str(path / "val"), window=3, batch_size=8, frameskip=2)
    data.setup()
    episodes = read_trajectories(str(path / "train"))
    item = data.train_set[1]  # episode 0, first frame 1
    assert torch.equal(item["frames"], episodes["frames"][0, [1, 3, 5]])
    assert torch.equal(item["actions"], episodes["actions"][0, 1:5].float().reshape(2, 4))
    assert len(data.train_set) == len(episodes["frames"]) * 3  # 7 frames: first frames 0, 1, 2
    model = tiny_pixel_model(action_dim=4, frameskip=2)
    trainer = tiny_trainer(path, max_steps=2)
    trainer.fit(model, data)
    trainer.save_checkpoint(path / "skip.ckpt")
    plan = ["plan", "--world_model", str(path / "skip.ckpt"), "--env_options", "{img_size: 16}", "--planner_options",
            "{cem: {samples: 8, iterations: 1, elites: 2}}", "--horizon", "2", "--execute", "1", "--episodes", "1",
            "--seeds", "[0]", "--budget", "6", "--goal_offset", "3", "--show", "1", "--oracle", "false",
            "--rollout_data", str(path / "val"), "--out", str(path / "plan_skip")]
    assert main(plan + ["--action_repeat", "2"]) == 0
    record = json.loads((path / "plan_skip" / "results.json").read_text())
    assert record["protocol"]["model_frameskip"] == 2
    row = record["results"]["cem (world model)"]
    assert row["plans"] == 3  # one plan per held action: env steps 0, 2, 4
    assert row["predictor_steps_per_plan"] == row["rollouts_per_plan"] * 2  # 2 held actions, 1 model step each
    assert len(record["rollout_l1_by_horizon"]["world_model"]) == 2  # 2 model steps = 4 of the 6 env steps
    assert main(plan + ["--action_repeat", "2", "--sub_actions", "true", "--overwrite", "true"]) == 0
    record = json.loads((path / "plan_skip" / "results.json").read_text())  # each planned action: 2 env actions
    assert record["protocol"]["sub_actions"] and record["results"]["cem (world model)"]["plans"] == 3
    assert main(plan + ["--action_repeat", "3", "--overwrite", "true"]) != 0
    assert "action_repeat 3 is not a multiple of the world model's frameskip 2" in capsys.readouterr().err


def test_a_world_model_with_proprioception_reads_the_agents_position_as_one_more_token(tiny_control):
    """model.proprio_scale: windows carry the agent's recorded positions at the model's stride, every state gets
    one more token (the position through the saved projection), training and planning read it, and the goal's
    token comes from the goal's position (info["goal_proprio"] where the env's goal is not the agent's)."""
    import pytest

    from jepa.errors import ConfigError
    from jepa_control.collect import read_trajectories
    from jepa_control.mpc import LatentModel
    from jepa_control.pixel_data import PixelTrajectoryDataModule
    from jepa_control.world_model import WorldModel

    path = tiny_control[0]
    data = PixelTrajectoryDataModule(str(path / "train"), str(path / "val"), window=3, batch_size=8, frameskip=2)
    data.setup()
    episodes = read_trajectories(str(path / "train"))
    assert torch.equal(data.train_set[1]["proprio"], episodes["proprio"][0, [1, 3, 5]].float())
    model = tiny_pixel_model(action_dim=4, frameskip=2, proprio_scale=3.0)
    assert model.num_tokens == model.frozen_encoder.num_tokens + 1 == model.predictor.num_tokens
    trainer = tiny_trainer(path, max_steps=2)
    trainer.fit(model, data)
    trainer.save_checkpoint(path / "proprio.ckpt")
    loaded = WorldModel.from_checkpoint(str(path / "proprio.ckpt"))
    frames, positions = data.val_set[0]["frames"][None], data.val_set[0]["proprio"][None]
    states = loaded.encode(frames, positions)
    assert states.shape[2] == loaded.frozen_encoder.num_tokens + 1
    assert torch.allclose(states[..., -1, :], 3.0 * positions @ loaded.proprio_projection)
    # the state carries the position itself: read back exactly, so a position cost and jepa plan's rollout error
    # see where an imagined state puts the agent
    assert loaded.reads_position and torch.allclose(loaded.read_position(states), positions, atol=1e-5)
    from jepa_control.plan_cli import rollout_errors

    errors = rollout_errors(loaded, str(path / "val"), horizon=2)
    recorded = read_trajectories(str(path / "val"))["proprio"].float()[:, ::2]  # at the model's frameskip 2
    k = loaded.hparams.context  # the rollout starts from as many true frames as a plan does
    held = (recorded[:, k : k + 2] - recorded[:, k - 1 : k]).norm(dim=-1).mean(0)
    assert torch.allclose(torch.tensor(errors["position"]["no_change"]), held, atol=1e-5)
    assert len(errors["position"]["world_model"]) == 2
    assert torch.allclose(states, model.eval().encode(frames, positions), atol=1e-6)
    with pytest.raises(ConfigError, match="proprio"):
        loaded.encode(frames)

    agent = LatentModel(loaded)
    frame = frames[0, 0].numpy()
    here, there = agent.observe(frame, {"pos": [0.2, 0.3]}), agent.goal(frame, {"goal": [0.9, 0.9],
                                                                               "goal_proprio": [0.2, 0.3]})
    assert torch.equal(here, there) and not torch.equal(agent.goal(frame, {"goal": [0.9, 0.9]}), here)
    plain = tiny_pixel_model(action_dim=4, frameskip=2)
    assert plain.encode(frames, positions).shape[2] == plain.frozen_encoder.num_tokens  # positions ignored

    from jepa_control.actor import ActorModule
    from jepa_control.energy import EnergyModule

    for module in (ActorModule, EnergyModule):  # their states have no proprioception token yet: refused
        with pytest.raises(ConfigError, match="proprioception"):
            module(loaded)


def test_proprio_dim_reads_the_values_after_the_position_and_reads_back_the_position(tiny_control):
    """model.proprio_dim 4: the token carries the position and the two values recorded after it (Reacher's joint
    velocities), read_position gives back the position alone, and the agent observes info["proprio"]; a model of
    2 reads only the position of the same proprio; fewer values than the model reads are refused by name."""
    import pytest

    from jepa.errors import ConfigError
    from jepa_control.collect import read_trajectories
    from jepa_control.mpc import LatentModel

    frames = read_trajectories(str(tiny_control[0] / "val"))["frames"][:1, :2]
    proprio = torch.tensor([[[0.1, -0.2, 0.5, -0.4], [0.1, -0.2, -0.5, 0.4]]])  # same place, other velocities
    model = tiny_pixel_model(action_dim=2, proprio_scale=3.0, proprio_dim=4).eval()
    states = model.encode(frames, proprio)
    assert model.proprio_projection.shape[0] == 4
    assert torch.allclose(states[..., -1, :], 3.0 * proprio @ model.proprio_projection)
    assert not torch.allclose(states[0, 0, -1], states[0, 1, -1])  # the velocities reach the token
    assert torch.allclose(model.read_position(states), proprio[..., :2], atol=1e-5)
    frame = frames[0, 0].numpy()
    seen = LatentModel(model).observe(frame, {"pos": [0.1, -0.2], "proprio": proprio[0, 0].tolist()})
    assert torch.allclose(seen, model.encode(frames[:, :1], proprio[:, :1])[0, 0])
    with pytest.raises(ConfigError, match="proprio_dim"):
        model.encode(frames, proprio[..., :2])
    two = tiny_pixel_model(action_dim=2, proprio_scale=3.0).eval()
    assert torch.equal(two.encode(frames, proprio), two.encode(frames, proprio[..., :2]))
    with pytest.raises(ConfigError, match="proprio_dim"):
        tiny_pixel_model(proprio_scale=3.0, proprio_dim=1)
