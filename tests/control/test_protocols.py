"""The evaluation protocols (jepa_control/protocols.py) and the agent registry (jepa_control/agents.py)."""
from __future__ import annotations

import numpy as np
import pytest

from jepa.errors import ConfigError
from jepa_control.agents import AGENTS, PlanSetup, build_agent
from jepa_control.cost import GoalCost
from jepa_control.envs import make_env
from jepa_control.evaluate import episode_seed, run_episodes
from jepa_control.protocols import OfflineGoal, RandomGoal, make_protocol
from jepa_control.two_rooms import EVAL_LAYOUT_BASE

REQUIRES = {"point_maze": "gymnasium_robotics", "reacher": "mujoco", "push_t": "gym_pusht"}


def test_offline_goal_is_the_state_goal_offset_steps_along_the_same_trajectory():
    env = make_env("two_rooms", eval_layouts=True)
    protocol = OfflineGoal(goal_offset=7)
    seed = episode_seed(0, 3)
    obs, info = protocol.start(env, seed)
    actions = info["trajectory_actions"]
    assert actions.shape == (7, 2)
    reset_obs, reset_info = env.reset(seed=seed)
    assert np.array_equal(obs, reset_obs) and np.allclose(info["pos"], reset_info["pos"])  # the trajectory's start
    assert info["layout"] >= EVAL_LAYOUT_BASE  # a held-out layout
    for action in actions:  # the same trajectory, replayed by hand from its start
        _, _, _, _, replayed = env.step(action)
    assert np.allclose(replayed["pos"], info["goal"])  # the goal is the state exactly goal_offset steps later
    # the goal image is what the agent sees standing there
    env.reset(seed=seed)
    env.set_goal(replayed["pos"])
    goal_image = env.goal_observation()
    for action in actions:
        frame, *_ = env.step(action)
    assert np.array_equal(goal_image, frame)
    # every agent meets the same episode: a second start is identical
    again, again_info = protocol.start(env, seed)
    assert np.array_equal(again, obs) and np.allclose(again_info["goal"], info["goal"])
    assert np.array_equal(again_info["trajectory_actions"], actions)


def test_offline_goal_trajectory_walks_the_goal_offset_steps_of_the_walk():
    env = make_env("two_rooms", eval_layouts=True)
    short = OfflineGoal(goal_offset=1).start(env, 11)[1]
    long = OfflineGoal(goal_offset=25).start(env, 11)[1]
    assert np.allclose(short["pos"], long["pos"])  # same start
    assert np.linalg.norm(short["goal"] - short["pos"]) <= env.cfg.max_step * np.sqrt(2) + 1e-6
    assert np.allclose(short["trajectory_actions"], long["trajectory_actions"][:1])  # one walk, cut at the offset


def test_trajectory_replay_reaches_every_offline_goal_and_random_goal_keeps_the_env_draw():
    env = make_env("two_rooms", eval_layouts=True)
    setup = PlanSetup(env, budget=30)
    replay = run_episodes(env, build_agent("trajectory_replay", setup), 6, [0, 1], 30,
                          protocol=OfflineGoal(goal_offset=20))
    assert replay["success"] == 1.0
    _, drawn = env.reset(seed=episode_seed(0, 0))
    _, kept = RandomGoal().start(env, episode_seed(0, 0))
    assert np.allclose(drawn["goal"], kept["goal"]) and "trajectory_actions" not in kept
    with pytest.raises(ConfigError, match="offline_goal"):
        build_agent("trajectory_replay", setup)(0).reset(None, kept)


def test_make_protocol_names_the_bad_value():
    with pytest.raises(ConfigError, match="nearby"):
        make_protocol("nearby")
    with pytest.raises(ConfigError, match="goal_offset"):
        make_protocol("offline_goal", goal_offset=0)


@pytest.mark.parametrize("name", sorted(REQUIRES))
def test_gym_env_goal_state_round_trips_through_set_goal(name):
    """Each env's own success rule, on hand-made final states: standing on the goal state succeeds, one walk away
    does not, and the goal image is the goal state's frame."""
    pytest.importorskip(REQUIRES[name])
    env = make_env(name, img_size=32)
    try:
        env.reset(seed=5)
        start = env.goal_state()
        on_start = env.set_goal(start)
        assert on_start["success"] and on_start["distance"] < 1e-6 + (name == "push_t") * 0.05
        assert np.array_equal(env.goal_observation(), env.render()) or name == "push_t"
        # a goal just outside each rule: PointMaze 0.45 maze units, the fingertip 0.02, Push-T 95 % coverage
        moved = {"point_maze": [0.5, 0.0], "reacher": [0.0, 0.0, 0.03, 0.0], "push_t": [40.0, 0.0, 0.0, 0.0, 0.0]}[name]
        far = env.set_goal(start + np.array(moved))
        assert not far["success"] and far["distance"] > 0
    finally:
        env.close()


def test_registry_builds_every_agent(tiny_control):
    """Every registered agent builds and acts through the one interface; a new registration without a case here
    fails this test."""
    from jepa_control.actor import GoalActor

    env = make_env("two_rooms", eval_layouts=True, img_size=16)
    wm = tiny_control[1].eval()
    setup = PlanSetup(env, wm, GoalCost("mse"), horizon=2, execute=1, action_repeat=2,
                      planner_options={"cem": {"samples": 8, "iterations": 1, "elites": 2}}, budget=4)
    actor = GoalActor(wm.frozen_encoder.dim, wm.frozen_encoder.num_tokens, 2, hidden=16)
    options = {"actor": {"actor": actor}, "actor_warm_start": {"actor": actor}}
    assert set(AGENTS) == {"random_policy", "trajectory_replay", "world_model", "actor", "actor_warm_start", "oracle",
                           "oracle_latent", "oracle_pixels"}
    for name in ("oracle_latent", "oracle_pixels"):  # Push-T's case: test_push_t_oracle.py
        with pytest.raises(ConfigError, match="renders the states it imagines"):
            build_agent(name, setup)
    for name in set(AGENTS) - {"oracle_latent", "oracle_pixels"}:
        agent = build_agent(name, setup, **options.get(name, {}))(0)
        obs, info = OfflineGoal(goal_offset=3).start(env, 1)
        agent.reset(env.goal_observation(), info)
        action = np.asarray(agent.act(obs, info))
        assert action.shape == (2,) and np.all(np.abs(action) <= 1), name
    with pytest.raises(ConfigError, match="unknown agent"):
        build_agent("teleport", setup)
