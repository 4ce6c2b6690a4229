"""The whole control path on tiny data: gate, world model, checkpoints, jepa plan, act-store-retrain, configs."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from jepa.errors import ConfigError
from jepa_control.collect import read_trajectories
from jepa_control.cost import GoalCost
from jepa_control.evaluate import run_episodes
from jepa_control.mpc import MPCAgent
from jepa_control.planners import (
    CEM,
)
from jepa_control.predictor import ActionConditionedPredictor, block_causal_mask
from jepa_control.two_rooms import TwoRooms, TwoRoomsConfig
from tests.conftest import tiny_frozen_encoder

SMALL = TwoRoomsConfig(img_size=16)


def test_world_model_fit_gate_checkpoint_and_planning(tiny_control):
    from jepa_control.mpc import LatentModel
    from jepa_control.world_model import WorldModel

    path, model, data = tiny_control
    assert data.gate is not None and -10 < data.gate["r2"] <= 1 and (path / "gate.json").is_file()
    loaded = WorldModel.from_checkpoint(str(path / "wm.ckpt"))
    z = torch.randn(2, 2, 4, 32)
    a = torch.rand(2, 2, 2)
    assert torch.equal(loaded.predictor(z, a), model.predictor.eval()(z, a))
    env = TwoRooms(SMALL, eval_layouts=True)
    r = run_episodes(env, lambda s: MPCAgent(LatentModel(loaded), CEM(4, 2, samples=16, iterations=2, elites=4),
                                             GoalCost()), episodes=1, seeds=[0], budget=5)
    assert r["episodes"] == 1 and r["plans"] == 2
    with pytest.raises(ConfigError, match="2-D actions"):
        loaded.predictor(z, torch.rand(2, 2, 3))


def test_a_world_model_saved_before_newer_options_loads_with_their_defaults_and_trains(tiny_control):
    """A checkpoint whose hyperparameters predate rollout_history / position_weight (two-rooms' world model of
    earlier versions) loads with those options' defaults recorded, so its losses (the joint step) run."""
    from jepa.checkpoint import load_checkpoint
    from jepa_control.world_model import WorldModel

    path, model, data = tiny_control
    ckpt = load_checkpoint(str(path / "wm.ckpt"))
    for key in ("rollout_history", "position_weight"):
        del ckpt["hyper_parameters"][key]
    torch.save(ckpt, path / "old.ckpt")
    loaded = WorldModel.from_checkpoint(str(path / "old.ckpt"))
    assert loaded.hparams.rollout_history == 1 and loaded.hparams.position_weight == 0.0
    batch = next(iter(data.train_dataloader()))
    losses = loaded.losses(batch)
    assert set(losses) == {"teacher_forcing", "rollout", "loss"} and torch.isfinite(losses["loss"])


@pytest.mark.parametrize("dims", [0, 3])
def test_folded_whitening_and_change_scale_equal_the_maps_applied_in_turn(dims):
    """The predictor folds its whitening and change scale into its input / motion / output layers (io_weights);
    its outputs must equal those of the maps applied one after the other: whiten, scale the change, the layers,
    unscale, unwhiten; also when it keeps only the top `dims` whitened directions."""
    torch.manual_seed(0)
    d = 6
    k = dims or d
    model = ActionConditionedPredictor(d, 2, 2, embed_dim=16, depth=1, num_heads=2, max_frames=3, motion=True,
                                       whiten=True, whiten_dims=dims).eval()
    q, _ = torch.linalg.qr(torch.randn(d, d))
    s = torch.rand(d) + 0.5
    model.latent_mean.copy_(torch.randn(d))
    model.whitener.copy_((q / s)[:, :k])
    model.unwhitener.copy_((q * s).T[:k])
    model.change_scale.copy_(torch.rand(k) + 0.1)
    nn.init.normal_(model.out.weight)
    nn.init.normal_(model.out.bias)
    z, a = torch.randn(4, 3, 2, d), torch.randn(4, 3, 2)

    def reference(z, a):
        w = (z - model.latent_mean) @ model.whitener
        x = model.latent_in(w)
        change = torch.cat([torch.zeros_like(w[:, :1]), w[:, 1:] - w[:, :-1]], 1)
        x = x + model.motion_in(change / model.change_scale)
        x = torch.cat([model.action_in(a)[:, :, None], x], 2)
        x = (x + model.slot_pos + model.time_pos[:, :3].float()).flatten(1, 2)
        for block in model.blocks:
            x = block(x, attn_mask=block_causal_mask(3, 3))
        x = x.unflatten(1, (3, 3))[:, :, 1:]
        return z + (model.out(model.norm(x)) * model.change_scale) @ model.unwhitener

    with torch.no_grad():
        expected = reference(z, a)
        assert (expected - z).abs().mean() > 0.1  # the output layer is not zero: the test sees the folded maps
        assert torch.allclose(model(z, a), expected, atol=1e-5)
        assert torch.allclose(model(z, a, last_only=True), expected[:, -1:], atol=1e-5)


def test_whitened_motion_world_model_measures_its_data_and_round_trips(tiny_control):
    """`whiten` + `motion`: at fit start the predictor's whitening is measured on the training latents (unit
    variance in every principal direction, unwhitener its inverse) and its change scale on the whitened changes;
    both travel with the checkpoint."""
    from jepa_control import WorldModel
    from jepa_control.gate import ridge_fit, ridge_select
    from jepa_control.latent_stats import change_std
    from tests.conftest import tiny_trainer

    def readout_rows(windows):  # the rows the read-out is fitted on (all of them: fewer than its max_rows)
        x, y = windows.values.flatten(2).flatten(0, 1), windows.positions.float().flatten(0, 1)
        rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        return x[rows], y[rows]

    path, _, data = tiny_control
    model = WorldModel(tiny_frozen_encoder(path), embed_dim=32, depth=1, num_heads=2, context=2,
                       rollout_steps=2, warmup_steps=1, motion=True, whiten=True, loss="mse", position_readout=True,
                       training_latents=data.training_latents)
    trainer = tiny_trainer(path / "white", max_steps=3)
    trainer.fit(model, data)
    # the position read-out is the ridge fit of the recorded positions on the training latents
    alpha, _ = ridge_select(*readout_rows(data.train_set))
    weight, bias = ridge_fit(*readout_rows(data.train_set), alpha)
    latents, positions = data.train_set.values, data.train_set.positions
    expected = latents.flatten(2).double() @ weight + bias
    assert torch.allclose(model.read_position(latents).double(), expected, atol=1e-3)
    assert ((model.read_position(latents) - positions) ** 2).mean() < 0.1 * positions.var(dim=(0, 1)).mean()
    p = model.predictor
    tokens = data.train_set.values
    white = (tokens - p.latent_mean) @ p.whitener
    var = torch.cov(white.flatten(0, 2).T).diagonal()
    assert ((var - 1).abs() < 1e-2).float().mean() > 0.5 and var.max() < 1.01  # floored directions fall below 1
    assert torch.allclose(p.whitener @ p.unwhitener, torch.eye(32), atol=1e-4)
    assert torch.allclose(p.change_scale, change_std(white))
    trainer.save_checkpoint(path / "white.ckpt")
    loaded = WorldModel.from_checkpoint(str(path / "white.ckpt"))
    z, a = tokens[:2, :2], torch.rand(2, 2, 2)
    assert torch.equal(loaded.predictor(z, a), p.eval()(z, a))
    assert torch.equal(loaded.read_position(z), model.read_position(z))


def test_position_weight_adds_the_read_out_error_of_the_predictions(tiny_control):
    """model.position_weight: the loss also pays for where the read-out of each prediction lands against the
    read-out of the true next latents, over teacher forcing and rollout alike."""
    import torch.nn.functional as F

    from jepa_control import WorldModel
    from tests.conftest import tiny_trainer

    path, _, data = tiny_control
    with pytest.raises(ConfigError, match="position_readout"):
        WorldModel(tiny_frozen_encoder(path), position_weight=1.0)
    model = WorldModel(tiny_frozen_encoder(path), embed_dim=32, depth=1, num_heads=2, context=2,
                       rollout_steps=2, warmup_steps=1, position_readout=True, position_weight=0.5,
                       training_latents=data.training_latents)
    tiny_trainer(path / "posw", max_steps=2).fit(model, data)
    batch = next(iter(data.train_dataloader()))
    out = model.losses(batch)
    read = model.read_position
    latents, actions = batch["latents"], batch["actions"]
    pairs = [model.teacher_forced(latents, actions), model.rolled_out(latents, actions)]
    expected = sum(F.mse_loss(read(p), read(t)) for p, t in pairs) / 2
    assert out["position"].item() > 0 and torch.allclose(out["position"], expected)
    assert torch.allclose(out["loss"], out["teacher_forcing"] + out["rollout"] + 0.5 * expected)
    out["loss"].backward()
    assert model.predictor.out.weight.grad.abs().sum() > 0
    # jepa plan's rollout error then also reports where the imagined positions land against the recorded ones
    from jepa_control.plan_cli import rollout_errors

    errors = rollout_errors(model, str(path / "val"), horizon=3)
    recorded = read_trajectories(path / "val")["proprio"].float()
    assert len(errors["position"]["world_model"]) == len(errors["latent_l1"]["world_model"]) == 3
    k = model.hparams.context  # the rollout starts from as many true frames as a plan does
    held = (recorded[:, k : k + 3] - recorded[:, k - 1 : k]).norm(dim=-1).mean(0)
    assert torch.allclose(torch.tensor(errors["position"]["no_change"]), held, atol=1e-5)


def test_rollout_loss_starts_from_rollout_history_true_frames(tiny_control):
    """model.rollout_history: the rollout loss starts from that many true frames, as planning starts from the
    working memory's last frames (an untrained predictor says "nothing moves", so its first imagined frame is the
    last true one it was given), and its targets are the frames after them."""
    from jepa_control import WorldModel

    path, _, _ = tiny_control
    latents, actions = torch.randn(3, 5, 4, 32), torch.rand(3, 4, 2)
    for k in (1, 2):
        model = WorldModel(tiny_frozen_encoder(path), embed_dim=32, depth=1, num_heads=2, context=2,
                           rollout_steps=3, rollout_history=k)
        preds, targets = model.rolled_out(latents, actions)
        assert torch.allclose(preds[:, 0], latents[:, k - 1], atol=1e-6) and torch.equal(targets, latents[:, k : k + 3])
    with pytest.raises(ConfigError, match="too short"):
        model.losses({"latents": latents[:, :4], "actions": actions[:, :3]})  # 2 + 3 frames needed
    with pytest.raises(ConfigError, match="rollout_history"):
        WorldModel(tiny_frozen_encoder(path), context=2, rollout_history=3)


def test_ridge_fit_returns_the_linear_map_in_raw_coordinates():
    from jepa_control.gate import ridge_fit, ridge_r2

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=g) * torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0, 5.0]) + 7.0
    w, b = torch.randn(6, 2, generator=g), torch.tensor([1.5, -2.0])
    y = x @ w + b
    fw, fb = ridge_fit(x, y, 1e-9)
    assert torch.allclose(fw.float(), w, atol=1e-4) and torch.allclose(fb.float(), b, atol=1e-3)
    assert ridge_r2(x[:300], y[:300], x[300:], y[300:])["r2"] > 0.999


def test_gate_stops_training_when_the_encoder_cannot_see_the_agent(tiny_control):
    from jepa_control import LatentTrajectoryDataModule

    path, model, _ = tiny_control
    data = LatentTrajectoryDataModule(str(path / "train"), str(path / "val"), window=3, gate_min_r2=1.01,
                                      cache_dir=str(path / "cache"))
    with pytest.raises(ConfigError, match="position gate failed"):
        data.prepare(model.frozen_encoder)


def test_world_model_checkpoint_plans_without_its_encoders_file(tiny_control):
    """The world model's checkpoint records its encoder's architecture, normalisation and pooling beside the
    weights, so it loads (and encodes frames the same) after the encoder's file has moved; a checkpoint with neither
    that record nor an encoder path is refused naming the key."""
    from jepa.checkpoint import load_checkpoint
    from jepa_control import WorldModel

    path, model, _ = tiny_control
    ckpt = load_checkpoint(path / "wm.ckpt")
    assert ckpt["frozen_encoder_settings"]["architecture"]["embed_dim"] == 32
    assert not {"encoder_ckpt", "pool_grid", "mean"} & set(ckpt["hyper_parameters"])
    (path / "encoder").rename(path / "moved")
    loaded = WorldModel.from_checkpoint(str(path / "wm.ckpt"))
    frames = torch.randint(0, 256, (1, 2, 16, 16, 3), dtype=torch.uint8)
    assert torch.equal(loaded.encode(frames), model.eval().encode(frames))
    assert loaded.frozen_encoder.pool_grid == 2 and loaded.frozen_encoder.source == str(path / "encoder")
    del ckpt["frozen_encoder_settings"]
    torch.save(ckpt, path / "bare.ckpt")
    with pytest.raises(ConfigError, match="bare.ckpt is not a world-model checkpoint .*no frozen_encoder_settings"):
        WorldModel.from_checkpoint(str(path / "bare.ckpt"))


def test_jepa_fit_hands_the_world_model_its_training_latents(tiny_control):
    """Through `jepa fit` the datamodule encodes with the model's frozen encoder (the same module) and hands the
    model the training latents it measures its whitening on: no module reads the other through the trainer."""
    from jepa.checkpoint import load_checkpoint
    from jepa.cli import main
    from jepa_control.latent_stats import whitening

    path, _, data = tiny_control
    code = main(["fit", "--model", "jepa_control.WorldModel",
                 "--model.frozen_encoder", "jepa_control.FrozenEncoder.from_checkpoint",
                 "--model.frozen_encoder.path", str(path / "encoder"), "--model.frozen_encoder.pool_grid", "2",
                 "--model.embed_dim", "16", "--model.depth", "1", "--model.num_heads", "2", "--model.whiten", "true",
                 "--model.rollout_steps", "2", "--data", "jepa_control.LatentTrajectoryDataModule",
                 "--data.train_dir", str(path / "train"), "--data.window", "3", "--data.batch_size", "8",
                 "--data.gate_min_r2", "0", "--data.cache_dir", str(path / "cache"), "--trainer.max_steps", "1",
                 "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                 "--trainer.default_root_dir", str(path / "cli_wm")])
    assert code == 0
    state = load_checkpoint(str(next((path / "cli_wm").rglob("*.ckpt"))))["state_dict"]
    _, whitener, _ = whitening(data.train_set.values)  # the fixture's latents: the same encoder and data
    assert torch.allclose(state["predictor.whitener"], whitener, atol=1e-4)
    assert "training_latents" not in load_checkpoint(str(next((path / "cli_wm").rglob("*.ckpt"))))["hyper_parameters"]


def test_statistics_need_the_training_latents(tiny_control):
    from jepa_control import WorldModel
    from tests.conftest import tiny_trainer

    path, _, data = tiny_control
    model = WorldModel(tiny_frozen_encoder(path), embed_dim=16, depth=1, num_heads=2, whiten=True)
    with pytest.raises(ConfigError, match="training latents"):
        tiny_trainer(path / "none", max_steps=1).fit(model, data)


def test_encoder_that_does_not_match_the_frames_is_refused(tiny_control):
    path, model, _ = tiny_control
    with pytest.raises(ConfigError, match="16x16 frames with 3 channels, the environment gives 64x64 with 3"):
        model.frozen_encoder.check_frames(TwoRooms().observation_shape)


def test_jepa_plan_end_to_end(tiny_control):
    from jepa.cli import main

    path, _, _ = tiny_control
    code = main(["plan", "--world_model", str(path / "wm.ckpt"), "--env_options", "{img_size: 16}",
                 "--planners", "[cem, mppi]", "--planner_options", "{cem: {samples: 16, iterations: 2, elites: 4},"
                 " mppi: {samples: 16, iterations: 2}}", "--horizon", "4", "--episodes", "2", "--seeds", "[0]",
                 "--budget", "4", "--goal_offset", "3", "--show", "1", "--rollout_data", str(path / "val"), "--out", str(path / "plan")])
    assert code == 0
    record = json.loads((path / "plan" / "results.json").read_text())
    assert set(record["results"]) == {"random policy", "trajectory replay", "cem (world model)",
                                      "cem (oracle simulator)", "mppi (world model)", "mppi (oracle simulator)"}
    assert record["protocol"]["name"] == "offline_goal" and record["protocol"]["budget"] == 4
    assert record["results"]["trajectory replay"]["success"] == 1.0  # every goal is 3 steps along its trajectory
    # the simulator imagines exactly where the agent lands; this world model reads no position, so says nothing
    assert record["results"]["cem (oracle simulator)"]["closed_loop_position_error"] == pytest.approx(0.0, abs=1e-6)
    assert record["results"]["cem (world model)"]["closed_loop_position_error"] is None
    # the results file other tools read: the keys, the headline row and its baselines from this run
    import copy

    from benchmarks.control_results import add_fits, add_random_init, markdown, summarise

    summary = summarise(record)
    assert {"env", "protocol", "success", "ci95", "per_seed", "episodes", "seconds_per_plan", "random_policy_success",
            "encoder", "command", "hardware", "date"} <= set(summary)
    assert summary["protocol"] == "offline_goal" and summary["agent"] == "cem (world model)"
    assert summary["success"] == record["results"]["cem (world model)"]["success"] and summary["episodes"] == 2
    assert summary["random_policy_success"] == record["results"]["random policy"]["success"]
    assert summary["command"].startswith("jepa plan --world_model") and "cem (oracle simulator)" in markdown(summary)
    assert "Imagined position error" not in markdown(summary)  # nothing to say for a model that reads no position
    reads = copy.deepcopy(summary)
    reads["rollout_position_error_by_horizon"] = {"world_model": [0.01, 0.02], "no_change": [0.05, 0.1]}
    reads["rows"]["cem (world model)"]["closed_loop_position_error"] = 0.015
    text = markdown(reads)
    assert "0.010, 0.020 after 1, 2, ... model steps" in text and "0.015 on the actions the planner executed" in text
    other = copy.deepcopy(record)  # a random-init run stands beside it only if it planned the same way
    add_random_init(summary, other)
    assert summary["random_init_success"] == other["results"]["cem (world model)"]["success"]
    other["settings"]["execute"] += 1
    with pytest.raises(SystemExit, match="execute"):
        add_random_init(summary, other)
    refit = copy.deepcopy(record)  # a world model fitted from another seed, planned on the same episodes
    refit["results"]["cem (world model)"]["success"] = summary["success"] + 0.5
    with pytest.raises(SystemExit, match="already counted"):  # the headline's own world model again
        add_fits(summary, [refit])
    refit["world_model"] = str(path / "wm_seed1.ckpt")
    add_fits(summary, [refit])
    assert [f["success"] for f in summary["world_model_fits"]] == [summary["success"], summary["success"] + 0.5]
    assert summary["success_mean_over_fits"] == pytest.approx(summary["success"] + 0.25)
    assert "fitted from different seeds" in markdown(summary)
    refit["settings"]["action_weight"] = 1.0  # planned with another cost: not the same evaluation
    with pytest.raises(SystemExit, match="--fits: .*action_weight"):
        add_fits(summary, [refit])
    assert len(record["rollout_l1_by_horizon"]["world_model"]) == len(record["rollout_l1_by_horizon"]["no_change"]) == 4
    assert (path / "plan" / "episodes.png").stat().st_size > 0 and (path / "plan" / "rollout_error.png").is_file()
    assert (path / "plan" / "pareto.png").is_file() and (path / "plan" / "cost_landscape.png").is_file()
    # a world model trained for 2-D actions refuses an environment with a different action size: checked by name
    code = main(["plan", "--world_model", str(path / "wm.ckpt"), "--episodes", "1", "--seeds", "[0]"])
    assert code == 2  # the 16x16 encoder does not fit the default 64x64 frames: a clear error, not a crash
    code = main(["plan", "--world_model", str(path / "wm.ckpt"), "--env_options", "{img_size: 16}", "--distance",
                 "position", "--episodes", "1", "--seeds", "[0]"])
    assert code == 2  # --distance position needs a world model fitted with a position read-out


def test_latent_windows_at_a_frameskip_and_the_statistics_the_model_measures_on_them(tiny_control):
    """At frameskip 2 the latent windows hold every second frame with the 2 env actions between them, and the
    training latents a model's statistics read (its change scale) are at that stride too."""
    from jepa_control import LatentTrajectoryDataModule

    path, model, _ = tiny_control
    data = LatentTrajectoryDataModule(str(path / "train"), str(path / "val"), window=3, batch_size=8, frameskip=2,
                                      gate_min_r2=0.0, cache_dir=str(path / "cache"))
    data.prepare(model.frozen_encoder)
    values, actions = data.train_set.values, data.train_set.actions
    item = data.train_set[4]  # episode 1, first frame 1 (3 windows per 7-frame episode)
    assert torch.equal(item["latents"], values[1, [1, 3, 5]])
    assert torch.equal(item["actions"], actions[1, 1:5].reshape(2, 4))
    assert torch.equal(data.training_latents.latents, values[:, ::2])


@pytest.mark.parametrize("name", ["plan_two_rooms", "plan_point_maze", "plan_reacher", "plan_push_t",
                                  "seed_mode1_refine", "plan_two_rooms_offline", "plan_point_maze_offline",
                                  "plan_reacher_offline", "plan_push_t_offline"])
def test_plan_configs_parse_with_the_plan_command(name):
    from pathlib import Path

    from jepa_control.plan_cli import parse_args

    config = Path(__file__).resolve().parents[2] / "configs" / "control" / f"{name}.yaml"
    cfg = parse_args(["--config", str(config), "--world_model", "wm.ckpt"])
    assert cfg.horizon >= 1 and cfg.action_repeat >= 1 and cfg.planners
    # the offline configs hold the references' protocol; the others say they keep the env's own draws
    assert cfg.protocol == ("offline_goal" if name.endswith("_offline") else "random_goal")
    if cfg.protocol == "offline_goal":
        assert (cfg.goal_offset, cfg.budget, cfg.episodes, cfg.seeds) == (25, 50, 50, [0, 1, 2])


def test_a_plan_config_builds_on_the_bases_it_names():
    """plan_reacher.yaml names the offline config as its base: the same env, planner and cost, its own protocol."""
    from pathlib import Path

    from jepa_control.plan_cli import parse_args

    folder = Path(__file__).resolve().parents[2] / "configs" / "control"
    random_goal, offline = (parse_args(["--config", str(folder / f"{name}.yaml"), "--world_model", "wm.ckpt"])
                            for name in ("plan_reacher", "plan_reacher_offline"))
    for key in ("env_options", "planner_options", "horizon", "sub_actions", "distance", "cost_mode", "action_weight"):
        assert random_goal[key] == offline[key], key
    assert (random_goal.protocol, offline.protocol, random_goal.episodes) == ("random_goal", "offline_goal", 20)
    assert random_goal.bases is None  # applied, so a saved config re-runs without its base file
