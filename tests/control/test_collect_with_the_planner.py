"""Planner-in-the-loop collection (`jepa collect --policy plan`): the planner's episodes as training data, with
its own flags or with the planning of a `jepa plan` config."""
from __future__ import annotations

import json

from jepa_control.collect import read_trajectories
from tests.conftest import tiny_frozen_encoder


def test_collect_with_the_planner_then_retrain_on_random_plus_planned_data(tiny_control):
    from jepa.cli import main
    from jepa_control import LatentTrajectoryDataModule, WorldModel
    from tests.conftest import tiny_trainer

    path, model, _ = tiny_control
    code = main(["collect", "--policy", "plan", "--world_model", str(path / "wm.ckpt"), "--env_options",
                 '{"img_size": 16}', "--planner_options", '{"samples": 8, "iterations": 1, "elites": 2}',
                 "--horizon", "3", "--execute", "2", "--action_repeat", "2", "--noise", "0.1", "--episodes", "3",
                 "--steps", "6", "--out", str(path / "planned"), "--quiet"])
    assert code == 0
    planned = read_trajectories(path / "planned")
    assert planned["frames"].shape == (3, 7, 16, 16, 3) and planned["actions"].shape == (3, 6, 2)
    assert planned["actions"].abs().max() <= 1 and planned["skipped"] == 0
    index = json.loads((path / "planned" / "index.json").read_text())
    assert index["policy"] == "plan" and index["world_model"] == str(path / "wm.ckpt") and index["action_repeat"] == 2
    # round 2: a world model on random + planned episodes, read as one training set
    data = LatentTrajectoryDataModule([str(path / "train"), str(path / "planned")], str(path / "val"), window=3,
                                      batch_size=8, gate_min_r2=0.0, cache_dir=str(path / "cache"))
    data.prepare(model.frozen_encoder)
    assert len(data.train_set.values) == 12 + 3
    second = WorldModel(tiny_frozen_encoder(path), embed_dim=32, depth=1, num_heads=2, context=2,
                        rollout_steps=2, warmup_steps=1)
    tiny_trainer(path, max_steps=2).fit(second, data)
    assert main(["collect", "--policy", "plan", "--episodes", "1", "--out", str(path / "x")]) == 2  # no world model


def test_collect_with_a_plan_config_stores_the_plans_that_config_evaluates(tiny_control, capsys):
    """`jepa collect --policy plan --plan_config C`: the episodes are those of C's planner, cost, holding and goals
    (the same actions as the agent C builds, run from the same starts), and C's environment must be the one
    collected from."""
    from argparse import Namespace

    import numpy as np

    from jepa.cli import main
    from jepa_control.collect import collect_episode
    from jepa_control.collect_cli import configured_planning_agent
    from jepa_control.envs import make_env

    path, _, _ = tiny_control
    config = path / "plan_small.yaml"
    config.write_text("env: two_rooms\nenv_options: {img_size: 16}\nplanners: [cem]\nplanner_options: {cem: "
                      "{samples: 8, iterations: 1, elites: 2}}\nhorizon: 3\nexecute: 2\naction_repeat: 2\n"
                      "budget: 6\nprotocol: offline_goal\ngoal_offset: 3\n")
    wm = str(path / "wm.ckpt")
    argv = ["collect", "--policy", "plan", "--world_model", wm, "--plan_config", str(config), "--env_options",
            '{"img_size": 16}', "--episodes", "2", "--steps", "6", "--seed", "3", "--out", str(path / "configured"),
            "--quiet"]
    assert main(argv) == 0
    index = json.loads((path / "configured" / "index.json").read_text())
    assert index["plan_config"] == str(config) and "horizon" not in index  # C's settings, not the flags' defaults
    stored = read_trajectories(path / "configured")["actions"]
    env = make_env("two_rooms", img_size=16)
    args = Namespace(plan_config=str(config), world_model=wm, env="two_rooms", seed=3)
    agent, goals = configured_planning_agent(args, env, {"img_size": 16})
    assert agent.repeat == 2 and agent.planner.horizon == 3 and goals.goal_offset == 3
    replayed = collect_episode(env, "plan", 6, 3, 0, agent, 0.0, goals)["actions"]
    assert np.allclose(stored[0].numpy(), replayed)
    capsys.readouterr()
    argv[argv.index('{"img_size": 16}')] = '{"img_size": 16, "max_steps": 9}'
    assert main(argv[:-2] + [str(path / "elsewhere"), "--quiet"]) == 2  # planned in another env than collected
    assert "plans in two_rooms" in capsys.readouterr().err
