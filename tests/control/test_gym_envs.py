"""Smoke tests of the gymnasium adapters (the `control` extra, which `make test` installs): reset, step, render,
goal image, collect a few steps, plan one step with a tiny world model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa.errors import ConfigError
from jepa_control.collect import collect
from jepa_control.cost import GoalCost
from jepa_control.envs import make_env
from jepa_control.evaluate import run_episodes
from jepa_control.mpc import LatentModel, MPCAgent
from jepa_control.planners import CEM

pytest.importorskip("gymnasium")
REQUIRES = {"point_maze": "gymnasium_robotics", "reacher": "mujoco", "push_t": "gym_pusht"}
SIZE = 32


@pytest.fixture(params=sorted(REQUIRES))
def env(request):
    pytest.importorskip(REQUIRES[request.param])
    env = make_env(request.param, img_size=SIZE)
    yield env
    env.close()


def test_reset_step_render_and_bounds(env):
    obs, info = env.reset(seed=3)
    assert obs.shape == env.observation_shape == (SIZE, SIZE, 3) and obs.dtype == np.uint8
    assert {"pos", "goal", "distance", "success", "clamped"} <= set(info)
    again, info_again = env.reset(seed=3)
    assert np.array_equal(obs, again) and np.allclose(info["goal"], info_again["goal"])  # seeded
    frames = [obs]
    for action in ([5.0, -5.0], [1.0, 1.0], [-1.0, 0.5], [0.3, -1.0]):
        obs, reward, terminated, truncated, info = env.step(np.array(action, np.float32))
        frames.append(obs)
        assert np.isfinite(reward) and isinstance(info["success"], bool)
    assert info["clamped"] == 1  # only the first action was out of bounds
    assert not np.array_equal(frames[0], frames[-1])  # acting changes what the agent sees
    assert np.array_equal(env.render(), obs)
    with pytest.raises(Exception, match="components"):
        env.step(np.zeros(3, np.float32))


def test_goal_observation_shows_the_goal_and_leaves_the_episode_alone(env):
    obs, info = env.reset(seed=1)
    goal = env.goal_observation()
    assert goal.shape == obs.shape and not np.array_equal(goal, obs)
    assert np.array_equal(env.render(), obs) and np.allclose(env.info()["pos"], info["pos"])


def test_reacher_goal_pose_puts_the_fingertip_on_the_target():
    pytest.importorskip("mujoco")
    import mujoco

    env = make_env("reacher", img_size=SIZE)
    for seed in range(5):
        env.reset(seed=seed)
        target = env.env.data.qpos[2:4].copy()
        env.env.data.qpos[:2] = env.goal_joints()
        mujoco.mj_forward(env.env.model, env.env.data)
        assert np.allclose(env.env.get_body_com("fingertip")[:2], target, atol=1e-6)
        assert env.info()["success"]
    env.close()


def test_reacher_torque_scale_scales_the_applied_torque_and_slows_the_arm():
    pytest.importorskip("mujoco")

    travelled = {}
    for scale in (1.0, 0.3):
        env = make_env("reacher", img_size=SIZE, action_repeat=1, torque_scale=scale)
        assert np.allclose(env.env_action(np.array([1.0, -0.5], np.float32)), [scale, -0.5 * scale])
        env.reset(seed=0)
        start = env.info()["pos"]
        for _ in range(3):
            env.step(np.array([1.0, 1.0], np.float32))
        assert np.allclose(env.env.data.ctrl, scale)  # what MuJoCo applied
        travelled[scale] = np.linalg.norm(env.info()["pos"] - start)
        env.close()
    assert travelled[0.3] < 0.5 * travelled[1.0]
    with pytest.raises(ConfigError, match="torque_scale"):
        make_env("reacher", img_size=SIZE, torque_scale=0.0)


def test_reacher_proprioception_is_the_fingertip_then_the_joint_velocities_per_step():
    """info["proprio"]: the fingertip (info["pos"]), then the joints' velocities in radians per Reacher-v5 step,
    which the joint angles' change over steps bears out; the goal's are the goal at rest; collection records them."""
    pytest.importorskip("mujoco")

    env = make_env("reacher", img_size=SIZE, action_repeat=1, torque_scale=0.3)
    _, info = env.reset(seed=0)
    assert np.allclose(info["proprio"][2:], 0, atol=0.1)  # the env starts the arm nearly at rest
    for _ in range(4):
        before, velocity = env.env.data.qpos[:2].copy(), info["proprio"][2:]
        _, _, _, _, info = env.step(np.array([1.0, -1.0], np.float32))
        turned = env.env.data.qpos[:2] - before
        assert np.array_equal(info["proprio"][:2], info["pos"])
        # a step turns the joints by about the mean of the velocities it starts and ends with
        assert np.allclose((velocity + info["proprio"][2:]) / 2, turned, rtol=0.2, atol=1e-3)
    assert np.abs(info["proprio"][2:]).max() > 0.01  # pushed for 4 steps: it moves
    assert np.array_equal(info["goal_proprio"], [*info["goal"], 0.0, 0.0])
    episode = next(iter(collect(env, "noisy", 1, 3, seed=0)))[1]
    assert episode["proprio"].shape == (4, 4) and np.allclose(episode["proprio"][-1], env.info()["proprio"])
    env.close()


def test_push_t_proprioception_is_the_pusher_then_its_velocity_per_step():
    """info["proprio"]: the pusher's position (info["pos"], table units), then its velocity in table units per
    step, which its motion over a step bears out once it moves at a steady speed; the goal's is at rest."""
    pytest.importorskip("gym_pusht")
    env = make_env("push_t", img_size=32)
    _, info = env.reset(seed=0)
    assert np.allclose(info["proprio"][2:], 0)  # it starts at rest
    speeds = []
    for _ in range(6):  # the PD target keeps running ahead: the pusher reaches a steady speed
        before = info["pos"]
        _, _, _, _, info = env.step(np.array([0.3, 0.0], np.float32))
        assert np.array_equal(info["proprio"][:2], info["pos"])
        speeds.append((info["pos"][0] - before[0], info["proprio"][2]))
    moved, velocity = speeds[-1]
    assert moved > 0.01 and np.isclose(velocity, moved, rtol=0.15), speeds
    assert np.allclose(info["goal_proprio"][2:], 0) and np.allclose(info["goal_proprio"][:2], info["pos"])
    env.close()


def test_point_maze_frames_show_the_ball_where_it_is_and_no_goal_marker():
    pytest.importorskip("gymnasium_robotics")
    env = make_env("point_maze", img_size=64)
    green = lambda f: int(((f[..., 1] > f[..., 0] + 40) & (f[..., 1] > f[..., 2] + 40)).sum())  # noqa: E731
    red = lambda f: int(((f[..., 0] > 200) & (f[..., 1] < 60)).sum())  # noqa: E731
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        obs, goal = obs.astype(int), env.goal_observation().astype(int)
        # the ball (green, ~7 px across) is drawn in both frames, the env's red goal marker in neither
        assert green(obs) >= 20 and abs(green(goal) - green(obs)) <= 0.3 * green(obs)
        assert red(obs) == 0 and red(goal) == 0
        # frame_extent places the frame in position units (what the episode plots draw paths with)
        ys, xs = np.nonzero((obs[..., 1] > obs[..., 0] + 40) & (obs[..., 1] > obs[..., 2] + 40))
        left, right, bottom, top = env.frame_extent
        seen = (left + (xs.mean() + 0.5) / 64 * (right - left), top + (ys.mean() + 0.5) / 64 * (bottom - top))
        assert np.allclose(seen, info["pos"], atol=0.1), (seen, info["pos"])
    env.close()


def test_push_t_goal_image_is_the_block_on_the_goal():
    pytest.importorskip("gym_pusht")
    env = make_env("push_t", img_size=SIZE)
    env.reset(seed=0)
    env.goal_observation()
    assert env.goal_env._get_coverage() > 0.95 and env.info()["distance"] > 0.05
    env.close()


def test_push_t_repeats_its_action_while_only_the_drawn_region_is_reached():
    """gym-pusht's own termination (the block on its drawn region) neither ends an episode judged against an
    offline goal nor cuts an action's repeats short; reaching that goal does."""
    pytest.importorskip("gym_pusht")
    moved = {}
    for repeat in (1, 4):
        env = make_env("push_t", img_size=SIZE, action_repeat=repeat)
        try:
            env.reset(seed=0)
            env.env.block.angle = float(env.env.goal_pose[2])  # the block on the drawn region: gym-pusht terminates
            env.env.block.position = [float(v) for v in env.env.goal_pose[:2]]
            env.set_goal(np.array([100.0, 100.0, 0.0]))  # an offline goal elsewhere
            start = env.goal_state()[3:5]
            _, _, terminated, _, _ = env.step(np.array([0.0, 1.0], np.float32))
            assert env.env._get_coverage() > 0.95 and not terminated
            moved[repeat] = np.linalg.norm(env.goal_state()[3:5] - start)
            env.set_goal(env.goal_state())  # now the offline goal holds: the episode ends
            assert env.step(np.zeros(2, np.float32))[2]
        finally:
            env.close()
    assert moved[4] > 2 * moved[1] > 0  # all four repeats ran


def test_push_t_offline_goal_image_is_the_goal_states_frame_and_the_drawn_region_stays():
    """Under the offline-goal protocol the goal image is what the env shows at the goal state (block and pusher
    there), and every frame keeps gym-pusht's own drawn region, as the collected frames do; coverage and the pose
    rule judge the offline goal."""
    pytest.importorskip("gym_pusht")
    from jepa_control.protocols import make_protocol

    for success in ("pose", "coverage"):
        env = make_env("push_t", img_size=64, success=success)
        try:
            start, info = make_protocol("offline_goal", 25, "push").start(env, 4)
            drawn = np.array(env.env.goal_pose, np.float64)
            goal = env.goal_observation()
            assert not info["success"] and np.allclose(info["goal_proprio"], [*env.goal_pusher / 512, 0, 0])
            for action in info["trajectory_actions"]:
                last, _, terminated, _, info = env.step(action)
            assert info["success"] and terminated
            # the replay ends on the goal image's state: its last frame is the goal image, the first one is not
            assert np.abs(goal.astype(int) - last).mean() < 0.3 * np.abs(goal.astype(int) - start).mean()
            assert np.array_equal(env.env.goal_pose, drawn) and not np.allclose(drawn, env.goal_pose)
        finally:
            env.close()


def test_collect_and_plan_one_step(env, tmp_path):
    from jepa.export import export_encoder
    from jepa.vit import VisionTransformer
    from jepa_control import FrozenEncoder, WorldModel

    episodes = list(collect(env, "noisy", 2, 3, seed=0))
    frames, actions, proprio = episodes[0][1]["frames"], episodes[0][1]["actions"], episodes[0][1]["proprio"]
    assert frames.shape == (4, SIZE, SIZE, 3) and frames.dtype == np.uint8
    assert actions.shape == (3, 2) and np.abs(actions).max() <= 1
    # Reacher records its joint velocities, Push-T its pusher's velocity
    assert proprio.shape == (4, 4 if env.name in ("reacher", "push_t") else 2)
    torch.manual_seed(0)
    export_encoder(VisionTransformer(SIZE, 8, 3, 32, 1, 2), tmp_path / "encoder", {"kind": "test"}, None)
    frozen = FrozenEncoder.from_checkpoint(str(tmp_path / "encoder"), pool_grid=2, mean=(0.5,) * 3, std=(0.25,) * 3)
    model = WorldModel(frozen, embed_dim=32, depth=1, num_heads=2, context=2)
    model.frozen_encoder.check_frames(env.observation_shape)
    agent = lambda seed: MPCAgent(LatentModel(model), CEM(3, 2, samples=8, iterations=1, elites=2), GoalCost())  # noqa: E731
    result = run_episodes(env, agent, episodes=1, seeds=[0], budget=1)
    assert result["plans"] == 1 and result["episodes"] == 1 and result["rollouts_per_plan"] == 8


def test_push_t_contacts_are_counted_when_the_block_moves_and_the_push_policy_makes_them():
    """A scripted case: the pusher driven straight through the block's centre moves it (a contact on the steps the
    block moved), driven away from it never does; the push policy's episodes hold contacts, the random walk's few."""
    pytest.importorskip("gym_pusht")
    from jepa_control.collect import collect_episode

    env = make_env("push_t", img_size=32)
    try:
        env.reset(seed=4)
        block = np.asarray(env.env.block.position, np.float64)
        away = []
        for _ in range(5):  # away from the block: it never moves
            pusher = np.asarray(env.env.agent.position, np.float64)
            *_, info = env.step(np.clip((pusher - block) / np.linalg.norm(pusher - block), -1, 1))
            away.append(info["contact"])
        assert not any(away)
        into, poses = [], [env.goal_state()]
        for _ in range(12):  # straight at the block's centre: it is hit and moves
            pusher = np.asarray(env.env.agent.position, np.float64)
            *_, info = env.step(np.clip((block - pusher) / 40.0, -1, 1))
            into.append(info["contact"])
            poses.append(env.goal_state())
        moved = [bool(np.hypot(*(b - a)[:2]) > env.CONTACT_PIXELS or abs((b - a)[2]) > env.CONTACT_RADIANS)
                 for a, b in zip(poses, poses[1:])]
        assert any(into) and into == moved
        pushes = [collect_episode(env, "push", 24, 0, i)["contacts"] for i in range(4)]
        walks = [collect_episode(env, "noisy", 24, 0, i)["contacts"] for i in range(4)]
        assert sum(pushes) > sum(walks) and min(pushes) > 0, (pushes, walks)
    finally:
        env.close()


def test_push_t_pose_rule_on_hand_made_final_states():
    """The references' rule: pusher and block within 20 table px of the goal state's (4-D norm), block within 20
    degrees; gym-pusht's coverage rule beside it judges the same block pose."""
    pytest.importorskip("gym_pusht")
    env = make_env("push_t", img_size=32, success="pose")
    try:
        env.reset(seed=3)
        goal = np.array([300.0, 250.0, 1.0, 100.0, 400.0])  # block x, y, angle; pusher x, y (table px)
        env.set_goal(goal)

        def final(block_xy, angle, pusher_xy) -> dict:
            env.env.block.angle = float(angle)  # turned before it is placed (PushT.goal_observation says why)
            env.env.block.position = [float(v) for v in block_xy]
            env.env.agent.position = [float(v) for v in pusher_xy]
            return env.info()

        assert final((300, 250), 1.0, (100, 400))["success"]
        assert final((312, 250), 1.0 + np.radians(15), (100, 410))["success"]  # 15.6 px off in all, 15 degrees
        assert not final((312, 250), 1.0, (100, 416))["success"]  # 20 px: each alone would pass, together not
        assert not final((300, 250), 1.0 + np.radians(25), (100, 400))["success"]  # turned too far
        assert final((300, 250), 1.0 + 2 * np.pi - np.radians(10), (100, 400))["success"]  # angles wrap
        env.set_goal(goal[:3])  # no pusher in the goal (the env's own draw): the block alone is judged
        assert final((310, 250), 1.0, (480, 20))["success"]
    finally:
        env.close()
    with pytest.raises(ConfigError, match="success"):
        make_env("push_t", img_size=32, success="area")
