"""The env's recorded true state and a world model's learned read-out of it: Push-T records its pusher and block
pose at collection, on the pose rule's scale; a world model learns a linear read-out of it on the true and the
predicted states; `jepa plan --distance state` compares the read-outs of the imagined states with the goal's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa.errors import ConfigError
from jepa_control.collect import read_trajectories
from tests.conftest import tiny_trainer
from tests.control.test_pixel_world_model import tiny_pixel_model


def test_push_t_records_its_pose_on_the_pose_rules_scale(tmp_path):
    """info["state"] is the pusher's and the block's pose; a shift by the rule's 20 px and a turn by its 20 degrees
    lie (nearly: a chord for the arc) equally far, a whole turn is none; `jepa collect` stores the state per frame
    and its pusher is where proprio says."""
    pytest.importorskip("gym_pusht")
    from jepa_control.collect_cli import main
    from jepa_control.envs import make_env

    env = make_env("push_t", img_size=16)
    try:
        _, info = env.reset(seed=3)
        block_x, block_y, angle, pusher_x, pusher_y = env.goal_state()
        assert np.allclose(info["state"], env.pose_features(np.array([pusher_x, pusher_y, block_x, block_y, angle])))
        at = env.pose_features(np.array([100.0, 100.0, 256.0, 256.0, 0.3]))
        shifted = env.pose_features(np.array([100.0, 100.0, 256.0 + env.POSE_PIXELS, 256.0, 0.3]))
        turned = env.pose_features(np.array([100.0, 100.0, 256.0, 256.0, 0.3 + env.POSE_RADIANS]))
        whole = env.pose_features(np.array([100.0, 100.0, 256.0, 256.0, 0.3 + 2 * np.pi]))
        assert np.linalg.norm(turned - at) == pytest.approx(np.linalg.norm(shifted - at), rel=0.01)
        assert np.linalg.norm(whole - at) < 1e-6
    finally:
        env.close()

    assert main(["--env", "push_t", "--env_options", '{"img_size": 16}', "--policy", "push", "--episodes", "2",
                 "--steps", "4", "--out", str(tmp_path), "--quiet"]) == 0
    data = read_trajectories(tmp_path)
    assert data["state"].shape == (2, 5, 6)
    assert torch.allclose(data["state"][..., :2], data["proprio"][..., :2], atol=1e-6)
    assert (data["state"][:, 1:, 2:4] != data["state"][:, :-1, 2:4]).any()  # the push policy moves the block


def test_episodes_without_a_state_read_as_none(tiny_control):
    assert read_trajectories(tiny_control[0] / "train")["state"] is None


def test_the_state_loss_compares_each_prediction_with_the_state_of_the_frame_it_predicts():
    """A read-out of one latent channel, states equal to that channel: the true states' term is zero, predictions
    equal to the frames they predict give zero, the same predictions one frame late do not; no states is refused."""
    model = tiny_pixel_model(state_dim=1, state_weight=1.0, context=2, rollout_steps=2, rollout_history=2)
    with torch.no_grad():
        model.state_readout.weight.zero_()
        model.state_readout.weight[0, 0] = 1.0
        model.state_readout.bias.zero_()
    latents = torch.randn(3, 4, model.num_tokens, model.frozen_encoder.dim)
    states = latents[..., 0, :1]
    right = {"teacher_forcing": (latents[:, 1:3], None), "rollout": (latents[:, 2:4], None)}
    late = {"teacher_forcing": (latents[:, 0:2], None), "rollout": (latents[:, 1:3], None)}
    with torch.no_grad():
        assert float(model.state_loss(latents, right, states)) == pytest.approx(0.0, abs=1e-12)
        assert float(model.state_loss(latents, late, states)) > 0.1
    with pytest.raises(ConfigError, match="state"):
        model.state_loss(latents, right, None)
    with pytest.raises(ConfigError, match="state_dim"):
        tiny_pixel_model(state_dim=2)  # a read-out learned with weight 0 would read nothing


def test_a_world_model_learns_the_state_readout_and_plans_on_it(tiny_control):
    """Windows carry the recorded states at the model's stride; fitting moves the read-out and lowers its loss;
    the checkpoint reads states back; --distance state builds on it and is refused, by name, for a model
    without one."""
    from jepa_control.cost import GoalCost
    from jepa_control.pixel_data import PixelTrajectoryDataModule
    from jepa_control.world_model import WorldModel

    path = tiny_control[0]
    data = PixelTrajectoryDataModule(str(path / "train"), str(path / "val"), window=3, batch_size=8)
    data.setup()
    # the recorded states of this test: the agent's position, the only true state two-rooms has
    for windows in (data.train_set, data.val_set):
        windows.states = windows.positions[..., :2]
    assert torch.equal(data.train_set[1]["state"], data.train_set.positions[0, 1:4, :2].float())
    model = tiny_pixel_model(state_dim=2, state_weight=1.0, lr=1e-2)
    batch = next(iter(data.train_dataloader()))
    before = float(model.losses(batch)["state"])
    trainer = tiny_trainer(path, max_steps=30)
    trainer.fit(model, data)
    assert float(model.losses(batch)["state"]) < 0.5 * before
    trainer.save_checkpoint(path / "state.ckpt")
    loaded = WorldModel.from_checkpoint(str(path / "state.ckpt"))
    states = loaded.encode(batch["frames"][:2])
    assert torch.allclose(loaded.read_state(states), model.eval().read_state(states), atol=1e-6)
    cost = GoalCost("state", readout=loaded.read_state)
    goal = states[0, 0]
    assert torch.allclose(cost.distances(states, goal),
                          (loaded.read_state(states) - loaded.read_state(goal)).norm(dim=-1))
    from jepa_control.plan_cli import parse_args, plan_setup
    from jepa_control.two_rooms import TwoRooms, TwoRoomsConfig

    env = TwoRooms(TwoRoomsConfig(img_size=16), eval_layouts=True)
    cfg = parse_args(["--world_model", str(path / "state.ckpt"), "--distance", "state"])
    setup, _ = plan_setup(cfg, loaded, env)
    assert setup.cost.readout == loaded.read_state
    plain = WorldModel.from_checkpoint(str(path / "wm.ckpt"))
    with pytest.raises(ConfigError, match="reads no state"):
        plan_setup(parse_args(["--world_model", str(path / "wm.ckpt"), "--distance", "state"]), plain, env)


def test_recorded_states_reach_a_frozen_encoder_world_model_through_its_latent_windows(tiny_control, tmp_path):
    """Shards with a state per frame: the latent windows carry it at the frames they hold, and a frozen-encoder
    world model with a state read-out trains on it."""
    from data.shard_sources import trajectory_sample
    from data.shard_writer import write_shards
    from jepa_control import LatentTrajectoryDataModule, WorldModel
    from tests.conftest import tiny_frozen_encoder

    path = tiny_control[0]
    for split in ("train", "val"):
        episodes = read_trajectories(path / split)
        samples = (trajectory_sample(f"e{i}", frames.numpy(), actions.numpy(), proprio.numpy(),
                                     state=proprio[:, :2].numpy() * 2)
                   for i, (frames, actions, proprio) in enumerate(zip(episodes["frames"], episodes["actions"],
                                                                      episodes["proprio"])))
        write_shards(samples, tmp_path / split, "test", progress=False)
    model = WorldModel(tiny_frozen_encoder(path), embed_dim=32, depth=1, num_heads=2, context=2, rollout_steps=2,
                       warmup_steps=1, state_dim=2, state_weight=1.0)
    data = LatentTrajectoryDataModule(str(tmp_path / "train"), str(tmp_path / "val"), window=3, batch_size=8,
                                      gate_min_r2=0.0, cache_dir=str(tmp_path / "cache"))
    data.use_encoder(model.frozen_encoder)
    data.setup()
    recorded = read_trajectories(tmp_path / "train")
    assert torch.equal(data.train_set[1]["state"], recorded["state"][0, 1:4])
    assert torch.equal(recorded["state"], recorded["proprio"][..., :2] * 2)
    trainer = tiny_trainer(tmp_path, max_steps=2)
    trainer.fit(model, data)
    assert trainer.logged_metrics["train/state"] > 0
