"""Push-T's oracle: the planner's candidates played on a private copy of the true physics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa_control.agents import PlanSetup, build_agent
from jepa_control.cost import GoalCost
from jepa_control.envs import make_env
from jepa_control.evaluate import run_episodes
from jepa_control.protocols import OfflineGoal
from jepa_control.push_t_oracle import FramePixels

pytest.importorskip("gymnasium")
pytest.importorskip("gym_pusht")


def pushes_into_the_block(env, seed: int, steps: int) -> np.ndarray:
    """Actions that drive the pusher at the block's centre from the episode's start (so the block is hit)."""
    env.reset(seed=seed)
    block, actions = np.asarray(env.env.block.position), []
    for _ in range(steps):
        actions.append(np.clip((block - np.asarray(env.env.agent.position)) / 40.0, -1, 1).astype(np.float32))
        env.step(actions[-1])
    return np.stack(actions)


def imagined_and_true(env, actions: np.ndarray, obs, info) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle's rollout of `actions` (beside three random candidates) from the env's state, checked to leave the
    env alone, then the poses the env really reaches with them."""
    oracle = env.oracle_model()
    start = oracle.observe(obs, info)
    noise = np.random.default_rng(0).uniform(-1, 1, (3, *actions.shape)).astype(np.float32)
    imagined = oracle.rollout(None, None, torch.from_numpy(np.concatenate([actions[None], noise])))
    assert torch.equal(oracle.pose(env.env.agent.position, env.env.block.position, env.env.block.angle), start)
    assert not torch.equal(imagined[0, -1], imagined[1, -1])  # each candidate from the same start, its own way
    true = []
    for action in actions:
        env.step(action)
        true.append(oracle.pose(env.env.agent.position, env.env.block.position, env.env.block.angle))
    true = torch.stack(true)
    assert (true[-1, 2:4] - start[2:4]).norm() > 2 / 512  # the block was pushed: contacts were simulated
    return imagined[0], true


@pytest.mark.parametrize("action_repeat", [1, 2])
def test_the_oracle_imagines_what_the_env_then_does_and_leaves_the_env_alone(action_repeat):
    env = make_env("push_t", img_size=32, action_repeat=action_repeat)
    try:
        actions = pushes_into_the_block(env, 4, 20)
        imagined, true = imagined_and_true(env, actions, *env.reset(seed=4))  # from rest: exactly
        assert torch.equal(imagined, true)
        every_fifth = env.oracle_model(frameskip=5)  # a state per model step of a frameskip-5 world model
        every_fifth.observe(*env.reset(seed=4))
        assert torch.equal(every_fifth.rollout(None, None, torch.from_numpy(actions)[None])[0], true[4::5])
        env.reset(seed=4)
        for k, action in enumerate(actions):  # on until the block slides: its velocities must carry over too
            obs, _, _, _, info = env.step(action)
            if info["contact"]:
                break
        assert np.hypot(*env.env.block.velocity) > 0 and len(actions) - k > 5
        imagined, true = imagined_and_true(env, actions[k + 1:], obs, info)
        # mid-contact the physics' cached contact impulses are not copied: off by a few hundredths of a pixel (a
        # rollout that dropped the block's velocity is off by a tenth of a pixel or more)
        assert float((imagined - true).abs().max()) * 512 < 0.05
    finally:
        env.close()


def test_the_oracle_state_weighs_the_pose_rules_angle_as_its_pixels():
    env = make_env("push_t", img_size=32)
    try:
        oracle = env.oracle_model()
        at = oracle.pose((100.0, 100.0), (256.0, 256.0), 0.0)
        shifted = oracle.pose((100.0, 100.0), (256.0 + env.POSE_PIXELS, 256.0), 0.0)
        turned = oracle.pose((100.0, 100.0), (256.0, 256.0), env.POSE_RADIANS)
        assert float((shifted - at).norm()) == pytest.approx(float((turned - at).norm()), rel=1e-6)
    finally:
        env.close()


def test_the_oracle_row_plans_push_t_goals_one_push_away():
    """On goals 10 env steps along the push policy's trajectories, CEM on the true physics reaches most of what the
    random policy does not: the row that says what the planner can do with a perfect world model."""
    env = make_env("push_t", img_size=32, max_steps=30, success="pose")
    try:
        setup = PlanSetup(env=env, cost=GoalCost("mse"), horizon=2, execute=1, action_repeat=5,
                          planner_options={"cem": {"samples": 32, "iterations": 2, "elites": 4}}, budget=30)
        protocol = OfflineGoal(goal_offset=10, policy="push")
        oracle = run_episodes(env, build_agent("oracle", setup), 4, [0], budget=30, protocol=protocol)
        random = run_episodes(env, build_agent("random_policy", setup), 4, [0], budget=30, protocol=protocol)
        assert oracle["success"] >= 0.75 and random["success"] == 0.0, (oracle["records"], random["records"])
        assert oracle["closed_loop_position_error"] == pytest.approx(0.0, abs=1e-6)
    finally:
        env.close()


def test_the_latent_oracle_imagines_the_world_models_states_of_the_frames_the_env_then_shows():
    from jepa_control.mpc import LatentModel
    from tests.control.test_pixel_world_model import tiny_pixel_model

    wm = LatentModel(tiny_pixel_model(action_dim=10, frameskip=5, proprio_scale=5.0, proprio_dim=4))
    env = make_env("push_t", img_size=16)
    try:
        actions = pushes_into_the_block(env, 4, 10)
        obs, info = env.reset(seed=4)
        oracle = env.latent_oracle_model(wm)
        assert torch.equal(oracle.observe(obs, info), wm.observe(obs, info))
        imagined = oracle.rollout(None, None, torch.from_numpy(actions)[None])[0]
        true = []
        for step, action in enumerate(actions, 1):
            obs, _, _, _, info = env.step(action)
            if step % 5 == 0:  # a state per model step of the frameskip-5 world model
                true.append(wm.observe(obs, info))
        assert imagined.shape == (2, *true[0].shape)
        assert torch.allclose(imagined, torch.stack(true), atol=1e-5)
        assert not torch.allclose(true[0], true[1], atol=1e-3)  # the pushes changed what the model sees
        setup = PlanSetup(env, wm.wm, GoalCost("mse"), horizon=1, execute=1, action_repeat=5,
                          planner_options={"cem": {"samples": 4, "iterations": 1, "elites": 2}}, budget=5)
        obs, info = OfflineGoal(goal_offset=5, policy="push").start(env, 1)
        for name in ("oracle_latent", "oracle_pixels"):  # the registry's rows plan on these states
            agent = build_agent(name, setup)(0)
            agent.reset(env.goal_observation(), info)
            assert np.asarray(agent.act(obs, info)).shape == (2,) and agent.rollouts == [4], name
    finally:
        env.close()


def test_the_pixel_states_are_the_frames_the_env_then_shows():
    env = make_env("push_t", img_size=16)
    try:
        actions = pushes_into_the_block(env, 4, 10)
        obs, info = env.reset(seed=4)
        oracle = env.latent_oracle_model(FramePixels(frameskip=5))
        assert torch.equal(oracle.observe(obs, info), torch.from_numpy(obs).reshape(-1, 3) / 255)
        imagined = oracle.rollout(None, None, torch.from_numpy(actions)[None])[0]
        for action in actions:
            obs, *_ = env.step(action)
        assert torch.equal(imagined[-1], torch.from_numpy(obs).reshape(-1, 3) / 255)
    finally:
        env.close()
