"""Mode-1 actor: learns through a world model, acts alone, warm-starts the planner, runs in `jepa plan`."""
from __future__ import annotations

import json

import torch
from torch import nn

from jepa_control.actor import GoalActor, distill_loss, imagine
from jepa_control.cost import GoalCost
from jepa_control.mpc import LatentModel, MPCAgent
from jepa_control.planners import CEM


class ToyWorld(nn.Module):
    """Latent = a 2-D position (one token); an action moves it by 0.1 * a."""

    def forward(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return latents + 0.1 * actions[:, :, None, :]


def _toy_cost(actor: GoalActor, starts: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
    states, actions = imagine(actor, ToyWorld(), starts[:, None], torch.zeros(len(starts), 0, 2), goals, 6, 2)
    assert states.shape == (len(starts), 6, 1, 2) and actions.shape == (len(starts), 6, 2)
    assert actions.abs().max() <= 1  # tanh keeps the actor inside the bounds
    return GoalCost()(states, goals[:, None], actions).mean()


def _loss_before_and_after(actor: GoalActor, loss_fn, test_batch, train_batch, steps: int) -> tuple[float, float]:
    """loss_fn on a fixed test batch before and after `steps` Adam steps on fresh train_batch() draws."""
    with torch.no_grad():
        before = float(loss_fn(actor, *test_batch))
    opt = torch.optim.Adam(actor.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = loss_fn(actor, *train_batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return before, float(loss_fn(actor, *test_batch))


def test_actor_improves_the_summed_goal_cost_over_its_initial_policy():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)

    def starts_and_goals(n=64):
        return torch.rand(n, 1, 2, generator=g), torch.rand(n, 1, 2, generator=g)

    before, after = _loss_before_and_after(GoalActor(2, 1, 2, hidden=32), _toy_cost, starts_and_goals(256),
                                           starts_and_goals, 200)
    assert after < 0.5 * before


def test_distillation_makes_the_actor_imitate_the_data_actions_towards_hindsight_goals():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)

    def windows(n=64):  # a planner's action a_0 moved the state by 0.3 * a_0 (then nothing): the goal reveals a_0
        start, act = torch.rand(n, 1, 2, generator=g), torch.rand(n, 2, generator=g) * 1.6 - 0.8
        end = start + 0.3 * act[:, None]
        return torch.stack([start, end, end], 1), torch.stack([act, torch.zeros_like(act)], 1)

    before, after = _loss_before_and_after(GoalActor(2, 1, 2, hidden=32), distill_loss, windows(256), windows, 300)
    assert after < 0.1 * before


def test_actor_module_distills_only_when_asked(tiny_control):
    import pytest

    from jepa.errors import ConfigError
    from jepa_control.actor import ActorModule
    from jepa_control.world_model import WorldModel

    path, _, _ = tiny_control
    wm = WorldModel.from_checkpoint(str(path / "wm.ckpt"))
    with pytest.raises(ConfigError, match="cost_weight"):
        ActorModule(wm, cost_weight=0.0, distill_weight=0.0)
    batch = {"latents": torch.randn(4, 3, 4, 32), "actions": torch.rand(4, 2, 2) * 2 - 1}
    both = ActorModule(wm, horizon=2, hidden=16, distill_weight=0.5).losses(batch)
    only = ActorModule(wm, horizon=2, hidden=16, cost_weight=0.0, distill_weight=1.0).losses(batch)
    assert set(both) == {"cost", "distill"} and set(only) == {"distill"}
    assert set(ActorModule(wm, horizon=2, hidden=16).losses(batch)) == {"cost"}


def _fit_actor(path):
    from jepa_control import LatentTrajectoryDataModule
    from jepa_control.actor import ActorModule
    from jepa_control.world_model import WorldModel
    from tests.conftest import tiny_trainer

    model = ActorModule(WorldModel.from_checkpoint(str(path / "wm.ckpt")), horizon=3, hidden=16)
    data = LatentTrajectoryDataModule(str(path / "train"), str(path / "val"), window=3, batch_size=8,
                                      gate_min_r2=0.0, cache_dir=str(path / "cache"))
    data.use_encoder(model.frozen_encoder)
    trainer = tiny_trainer(path, max_steps=4)
    before = [p.clone() for p in model.wm.parameters()]
    trainer.fit(model, data)
    assert all(torch.equal(a, b) for a, b in zip(before, model.wm.parameters()))  # the world model stays frozen
    trainer.save_checkpoint(path / "actor.ckpt")
    return model


def test_actor_trains_through_the_frozen_world_model_and_warm_starts_the_planner(tiny_control):
    import pytest

    from jepa.errors import ConfigError
    from jepa_control.actor import ActorModule
    from jepa_control.on_world_model import WORLD_MODEL_KEY
    from jepa_control.two_rooms import TwoRooms, TwoRoomsConfig
    from jepa_control.world_model import WorldModel

    path, _, _ = tiny_control
    model = _fit_actor(path)
    loaded = ActorModule.from_checkpoint(str(path / "actor.ckpt"))
    z, goal = torch.randn(2, 4, 32), torch.randn(2, 4, 32)
    assert torch.equal(loaded.actor(z, goal), model.actor.eval()(z, goal))
    # an actor saved before its world model's hyperparameters travelled with it names the world model's file
    legacy = torch.load(path / "actor.ckpt", weights_only=True)
    del legacy[WORLD_MODEL_KEY]
    legacy["hyper_parameters"]["world_model"] = str(path / "wm.ckpt")
    torch.save(legacy, path / "legacy_actor.ckpt")
    older = ActorModule.from_checkpoint(str(path / "legacy_actor.ckpt"))
    assert torch.equal(older.actor(z, goal), loaded.actor(z, goal))
    del legacy["hyper_parameters"]["world_model"]
    torch.save(legacy, path / "no_world_model.ckpt")
    with pytest.raises(ConfigError, match=WORLD_MODEL_KEY):
        ActorModule.from_checkpoint(str(path / "no_world_model.ckpt"))

    inits = []

    class Spy(CEM):
        def plan(self, cost_fn, init=None):
            inits.append(init)
            return super().plan(cost_fn, init)

    wm = LatentModel(WorldModel.from_checkpoint(str(path / "wm.ckpt")))
    env = TwoRooms(TwoRoomsConfig(img_size=16))
    obs, info = env.reset(seed=0)
    agent = MPCAgent(wm, Spy(4, 2, samples=8, iterations=1, elites=2), GoalCost(), execute=2, actor=loaded.actor)
    agent.reset(env.goal_observation(), info)
    agent.act(obs, info)
    state = wm.observe(obs, info)
    expected = wm.actor_plan(loaded.actor, state[None], torch.zeros(0, 2), agent.goal, 4)
    assert torch.equal(inits[0], expected) and agent.rollouts == [8 + 1]


def test_jepa_plan_with_an_actor(tiny_control, capsys):
    from jepa.cli import main

    path, _, _ = tiny_control
    _fit_actor(path)

    def plan(world_model: str, out: str) -> int:
        return main(["plan", "--world_model", world_model, "--actor", str(path / "actor.ckpt"),
                     "--env_options", "{img_size: 16}", "--planners", "[cem]", "--planner_options",
                     "{cem: {samples: 8, iterations: 1, elites: 2}}", "--horizon", "3", "--cold_start", "false",
                     "--oracle", "false", "--random_policy", "false", "--trajectory_replay", "false", "--episodes",
                     "1", "--seeds", "[0]", "--budget", "4", "--show", "1", "--out", str(path / out)])

    assert plan(str(path / "wm.ckpt"), "plan") == 0
    assert "another world model" not in capsys.readouterr().err
    results = json.loads((path / "plan" / "results.json").read_text())["results"]
    assert set(results) == {"actor alone (world model)", "cem + actor warm start (world model)"}
    assert results["actor alone (world model)"]["plans"] == 4  # one actor call per step, no planning
    assert results["actor alone (world model)"]["rollouts_per_plan"] == 0
    # planning with a world model the actor was not trained through is allowed, and said
    other = torch.load(path / "wm.ckpt", weights_only=True)
    state = other["state_dict"]
    key = next(k for k in state if k.startswith("predictor.") and state[k].is_floating_point())
    state[key] = state[key] + 1.0
    torch.save(other, path / "other_wm.ckpt")
    assert plan(str(path / "other_wm.ckpt"), "plan_other") == 0
    assert "was trained through another world model" in capsys.readouterr().err


def test_jepa_fit_trains_an_actor_from_the_command_line(tiny_control):
    """Through LightningCLI the world model, injected by the config, keeps its own hyperparameters (action_dim,
    context), and the actor's checkpoint carries it."""
    from jepa.cli import main
    from jepa_control.actor import ActorModule
    from jepa_control.world_model import WorldModel

    path, _, _ = tiny_control
    code = main(["fit", "--model", "jepa_control.actor.ActorModule",
                 "--model.world_model", "jepa_control.WorldModel.from_checkpoint",
                 "--model.world_model.path", str(path / "wm.ckpt"), "--model.horizon", "2", "--model.hidden", "8",
                 "--data", "jepa_control.LatentTrajectoryDataModule",
                 "--data.train_dir", str(path / "train"), "--data.window", "3", "--data.batch_size", "8",
                 "--data.gate_min_r2", "0", "--data.cache_dir", str(path / "cache"), "--trainer.max_steps", "2",
                 "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                 "--trainer.default_root_dir", str(path / "cli_actor")])
    assert code == 0
    ckpt = next((path / "cli_actor").rglob("*.ckpt"))
    (path / "wm.ckpt").rename(path / "moved.ckpt")  # the actor's checkpoint alone rebuilds it, world model included
    actor = ActorModule.from_checkpoint(str(ckpt))
    assert actor.wm.hparams.action_dim == 2 and actor.wm.hparams.context == 2
    world_model = WorldModel.from_checkpoint(str(path / "moved.ckpt"))
    assert all(torch.equal(a, b) for a, b in zip(actor.wm.parameters(), world_model.parameters()))
