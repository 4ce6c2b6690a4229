"""The two-rooms environment, trajectory collection and reading."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jepa.errors import ConfigError
from jepa_control.collect import collect, read_trajectories, rollout
from jepa_control.two_rooms import EVAL_LAYOUT_BASE, TwoRooms, TwoRoomsConfig

SMALL = TwoRoomsConfig(img_size=16)


def test_env_is_deterministic_and_layouts_are_held_out():
    a, b = TwoRooms(), TwoRooms()
    obs_a, info_a = a.reset(seed=5)
    obs_b, info_b = b.reset(seed=5)
    assert np.array_equal(obs_a, obs_b) and info_a["layout"] == info_b["layout"]
    for action in ([1.0, 0.3], [-0.5, 1.0], [0.2, -1.0]):
        oa, *_, ia = a.step(action)
        ob, *_, ib = b.step(action)
        assert np.array_equal(oa, ob) and np.array_equal(ia["pos"], ib["pos"])
    assert (info_a["pos"][0] < 0.5) != (info_a["goal"][0] < 0.5)  # start and goal in opposite rooms
    assert a.reset(seed=1)[1]["layout"] < EVAL_LAYOUT_BASE <= TwoRooms(eval_layouts=True).reset(seed=1)[1]["layout"]


def test_wall_blocks_except_at_the_door():
    env = TwoRooms()
    sim, cfg = env.sim, env.cfg
    door = torch.tensor(0.5)
    pos = torch.tensor([0.35, 0.1])  # left room, far below the door
    for _ in range(20):
        pos = sim.step(pos, torch.tensor([1.0, 0.0]), door)
    assert pos[0] < 0.5 - cfg.wall_half - cfg.agent_radius + 1e-6  # pressed against the wall, never through
    pos = torch.tensor([0.35, 0.5])  # level with the door
    for _ in range(5):
        pos = sim.step(pos, torch.tensor([1.0, 0.0]), door)
    assert pos[0] > 0.5  # went through
    frame = sim.render(torch.tensor([0.2, 0.2]), door).numpy()
    x = int(0.5 * cfg.img_size)
    assert (frame[int(0.1 * cfg.img_size), x] == [150, 150, 150]).all()  # wall pixel
    assert not (frame[int(0.5 * cfg.img_size), x] == [150, 150, 150]).all()  # door pixel is floor


def test_out_of_bounds_actions_are_clamped_and_counted():
    env = TwoRooms()
    env.reset(seed=0)
    start = env.pos.copy()
    *_, info = env.step([5.0, 0.0])
    assert info["clamped"] == 1
    assert np.linalg.norm(info["pos"] - start) <= env.cfg.max_step + 1e-6
    *_, info = env.step([0.5, 0.5])
    assert info["clamped"] == 1
    with pytest.raises(ConfigError, match="2 components"):
        env.step([0.1, 0.2, 0.3])


def test_collector_writes_what_it_claims(tmp_path):
    from jepa_control.collect_cli import main

    assert main(["--out", str(tmp_path), "--episodes", "3", "--steps", "5", "--quiet", "--seed", "7"]) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["total"] == 3 and index["policy"] == "noisy"
    data = read_trajectories(tmp_path)
    assert data["frames"].shape == (3, 6, 64, 64, 3) and data["actions"].shape == (3, 5, 2)
    assert data["actions"].abs().max() <= 1.0
    expected = [traj for _, traj in collect(TwoRooms(), "noisy", 3, 5, seed=7)]
    for i, traj in enumerate(expected):
        assert np.array_equal(data["frames"][i].numpy(), traj["frames"])
        assert np.allclose(data["proprio"][i].numpy(), traj["proprio"])
    # replaying the stored actions from the stored start reproduces the stored frames
    env = TwoRooms()
    seed = int(np.random.default_rng([7, 1]).integers(2**31))
    replay = rollout(env, _Replay(data["actions"][1].numpy()), 5, seed)
    assert np.array_equal(replay["frames"], data["frames"][1].numpy())


def test_seek_policy_drifts_towards_the_goal_and_crosses_the_wall_more_often():
    env = TwoRooms()

    def stats(policy):
        trajs = [t for _, t in collect(env, policy, 40, 32, seed=3)]
        goals = [np.asarray(env.reset(seed=int(np.random.default_rng([3, i]).integers(2**31)))[1]["goal"])
                 for i in range(40)]
        final = np.mean([np.linalg.norm(t["proprio"][-1] - g) for t, g in zip(trajs, goals)])
        crossed = np.mean([(t["proprio"][0, 0] - 0.5) * (t["proprio"][-1, 0] - 0.5) < 0 for t in trajs])
        return final, crossed

    (walk_dist, walk_cross), (seek_dist, seek_cross) = stats("noisy"), stats("seek")
    assert seek_dist < 0.8 * walk_dist and seek_cross > walk_cross + 0.15, (walk_dist, seek_dist, walk_cross,
                                                                            seek_cross)


class _Replay:
    def __init__(self, actions):
        self.actions, self.t = actions, 0

    def reset(self, env, info):
        self.t = 0

    def act(self, obs, info):
        self.t += 1
        return self.actions[self.t - 1]


def test_read_trajectories_skips_and_counts_bad_episodes(tmp_path):
    from data.shard_writer import write_shards
    from jepa_control.collect_cli import main

    main(["--out", str(tmp_path / "a"), "--episodes", "2", "--steps", "3", "--quiet"])
    good = read_trajectories(tmp_path / "a")
    bad = {"__key__": "zbad", "frames.npy": b"not an array", "actions.npy": b"x", "proprio.npy": b"x"}
    write_shards(iter([bad]), tmp_path / "a", "test", name="extra", progress=False)
    with pytest.warns(UserWarning, match="skipped 1"):
        data = read_trajectories(tmp_path / "a")
    assert data["skipped"] == 1 and torch.equal(data["frames"], good["frames"])
    with pytest.raises(ConfigError, match="jepa collect"):
        read_trajectories(tmp_path / "empty")


def test_parallel_collection_writes_the_same_episodes_as_one_process(tmp_path):
    from jepa_control.collect_cli import main

    common = ["--episodes", "5", "--steps", "4", "--quiet", "--seed", "3", "--env_options", '{"img_size": 16}']
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    assert main(common + ["--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    one, two = read_trajectories(tmp_path / "one"), read_trajectories(tmp_path / "two")
    for key in ("frames", "actions", "proprio"):
        assert torch.equal(one[key], two[key]), key
    assert not torch.equal(one["actions"][0], one["actions"][1])  # episodes differ from each other
    index = json.loads((tmp_path / "two" / "index.json").read_text())
    assert index["contacts"] == {"per_episode": 0.0, "episodes_with_contact": 0.0}  # two-rooms reports none


def test_plan_policy_with_offline_goals_starts_where_the_goal_trajectory_starts():
    """`jepa collect --policy plan --goal_policy P`: each episode's planner meets the offline-goal protocol's start
    and goal (the state goal_offset steps along P's rollout), so the data hold what it does on such goals."""
    from jepa.cli import main
    from jepa_control.collect import collect_episode
    from jepa_control.protocols import OfflineGoal

    class Recorder:  # the planning agent's interface; records the goal it was given, then holds still
        def reset(self, goal_obs, info):
            self.goal_obs, self.goal = goal_obs, np.asarray(info["goal"])

        def act(self, obs, info):
            return np.zeros(2, np.float32)

    env, agent, protocol = TwoRooms(TwoRoomsConfig()), Recorder(), OfflineGoal(goal_offset=5, policy="noisy")
    episode = collect_episode(env, "plan", 3, seed=0, i=1, agent=agent, goals=protocol)
    reset_seed = int(np.random.default_rng([0, 1]).integers(2**31))
    start, start_info = protocol.start(env, reset_seed)
    assert np.array_equal(episode["frames"][0], start) and np.allclose(episode["proprio"][0], start_info["pos"])
    assert np.allclose(agent.goal, start_info["goal"]) and np.array_equal(agent.goal_obs, env.goal_observation())
    assert not np.allclose(agent.goal, env.reset(seed=reset_seed)[1]["goal"])  # not the env's own goal
    assert np.allclose(episode["proprio"][-1], episode["proprio"][0])  # it held still: the planner's actions ran
    with pytest.raises(SystemExit):  # goals are the plan policy's only
        main(["collect", "--goal_policy", "noisy", "--episodes", "1", "--out", "unused"])
