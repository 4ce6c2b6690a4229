"""Costs, planners and the MPC loop, on toy problems and the true two-rooms simulator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa.errors import ConfigError
from jepa_control.cost import GoalCost
from jepa_control.evaluate import RandomAgent, episode_seed, run_episodes, wilson
from jepa_control.mpc import MPCAgent, SimModel, WorkingMemory
from jepa_control.planners import (
    CEM,
    PLANNERS,
    GradientPlanner,
    make_planner,
)
from jepa_control.two_rooms import TwoRooms, TwoRoomsConfig

SMALL = TwoRoomsConfig(img_size=16)


def _quadratic(target):
    return lambda a: (a - target).pow(2).sum((1, 2))


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_every_planner_solves_a_quadratic(name):
    target = torch.tensor([[0.5, -0.3], [0.2, 0.8], [-0.6, 0.1]])
    options = {"gradient": {"steps": 100}, "cem_gradient": {"steps": 50}}.get(name, {})
    plan = make_planner(name, 3, 2, seed=0, **options).plan(_quadratic(target))
    assert (plan.actions - target).abs().max() < 0.1, plan.actions
    assert plan.rollouts > 0


def test_gradient_planner_respects_the_bounds():
    target = torch.tensor([[2.0, -3.0], [0.5, 5.0]])  # partly outside [-1, 1]
    plan = GradientPlanner(2, 2, steps=100, lr=0.2).plan(_quadratic(target))
    assert plan.actions.min() >= -1 and plan.actions.max() <= 1
    assert torch.allclose(plan.actions, target.clamp(-1, 1), atol=1e-3)


def test_cost_sums_over_the_horizon_or_takes_the_last_state():
    states = torch.tensor([[[0.0], [1.0], [2.0]]])  # [S=1, H=3, 1]
    goal, actions = torch.tensor([2.0]), torch.ones(1, 3, 2)
    assert GoalCost("euclid")(states, goal, actions).item() == pytest.approx(3.0)
    assert GoalCost("euclid", "last")(states, goal, actions).item() == pytest.approx(0.0)
    assert GoalCost("mse", action_weight=0.5)(states, goal, actions).item() == pytest.approx(5.0 + 3.0)


def test_position_distance_measures_between_read_outs():
    """distance 'position': the euclidean distance between read-outs of the states and of the goal, so it grows
    with the read-out's distance where a latent distance would not."""
    readout = lambda z: z[..., :2] * 2  # noqa: E731
    states = torch.tensor([[[0.0, 0.0, 5.0], [3.0, 4.0, -5.0]]])  # [S=1, H=2, 3]
    goal, actions = torch.zeros(3), torch.zeros(1, 2, 2)
    assert GoalCost("position", readout=readout)(states, goal, actions).item() == pytest.approx(0.0 + 10.0)
    with pytest.raises(ConfigError, match="read-out"):
        GoalCost("position")


def test_rest_weight_prefers_plans_that_end_at_rest():
    """Two plans with the same summed goal distance: one stops on the goal, one sweeps through it at the last step.
    Only rest_weight tells them apart, by the read-out distance moved in the last step."""
    readout = lambda z: z[..., :2]  # noqa: E731
    goal, actions = torch.zeros(2), torch.zeros(2, 3, 2)
    states = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]],     # arrives, stays
                           [[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]]])   # sweeps through
    plain = GoalCost("position", readout=readout)(states, goal, actions)
    assert plain[0].item() == pytest.approx(plain[1].item())
    rested = GoalCost("position", readout=readout, rest_weight=0.5)(states, goal, actions)
    assert rested.tolist() == pytest.approx([2.0, 2.0 + 0.5])
    with pytest.raises(ConfigError, match="read-out"):
        GoalCost("mse", rest_weight=1.0)
    with pytest.raises(ConfigError, match="rest_weight"):
        GoalCost("position", readout=readout, rest_weight=-1.0)


def test_proprio_weight_weighs_the_last_token_against_the_frame_tokens():
    """States of 2 frame tokens and the proprioception token: plan 0 is off only in the frame, plan 1 only in the
    agent's position. Weight 1 is the plain mean (they tie); weight 0 sees the frame alone, weight 3 the position
    three times as much."""
    goal, actions = torch.zeros(3, 2), torch.zeros(2, 1, 2)
    states = torch.zeros(2, 1, 3, 2)
    states[0, 0, 0] = 3.0   # a frame token off by 3 in both channels
    states[1, 0, 2] = 3.0   # the proprioception token off by 3
    plain = GoalCost("mse")(states, goal, actions)
    assert torch.allclose(GoalCost("mse", proprio_weight=1.0, proprio_token=True)(states, goal, actions), plain)
    assert GoalCost("mse", proprio_weight=0.0, proprio_token=True)(states, goal, actions).tolist() == \
        pytest.approx([9.0 / 2, 0.0])
    assert GoalCost("l1", proprio_weight=3.0, proprio_token=True)(states, goal, actions).tolist() == \
        pytest.approx([3.0 / 5, 9.0 / 5])
    with pytest.raises(ConfigError, match="proprio_weight"):
        GoalCost("mse", proprio_weight=0.5)               # the model's states have no such token
    with pytest.raises(ConfigError, match="proprio_weight"):
        GoalCost("mse", proprio_weight=-1.0, proprio_token=True)


class _SpyPlanner(CEM):
    def __init__(self):
        super().__init__(horizon=4, action_dim=2, samples=8, iterations=1, elites=2)
        self.inits = []

    def plan(self, cost_fn, init=None):
        self.inits.append(None if init is None else init.clone())
        plan = super().plan(cost_fn, init)
        plan.actions = torch.arange(8, dtype=torch.float32).view(4, 2) / 10 - 0.4 + 0.01 * len(self.inits)
        return plan


def test_mpc_replans_after_executing_and_warm_starts_from_the_shifted_plan():
    env = TwoRooms()
    obs, info = env.reset(seed=0)
    spy = _SpyPlanner()
    agent = MPCAgent(SimModel(env.sim), spy, GoalCost("euclid"), execute=3)
    agent.reset(env.goal_observation(), info)
    for _ in range(7):
        obs, *_, info = env.step(agent.act(obs, info))
    assert len(spy.inits) == 3 and spy.inits[0] is None  # replanned at steps 0, 3, 6
    first = torch.arange(8, dtype=torch.float32).view(4, 2) / 10 - 0.4 + 0.01
    assert torch.equal(spy.inits[1], first[3:].expand(4, 2))  # the unexecuted rest, its last action repeated
    assert agent.memory.error is not None  # predicted-vs-observed error tracked (the simulator: exactly 0)
    assert agent.memory.error == pytest.approx(0.0, abs=1e-6)
    assert agent.position_errors == pytest.approx([0.0] * 6, abs=1e-6)  # one per executed step after the first


def test_mpc_measures_how_far_the_imagined_agent_lands_from_the_true_one_after_each_executed_step():
    class OffByOneTenth(SimModel):  # imagines the agent 0.1 to the right of where the simulator puts it
        def rollout(self, states, between, actions):
            return super().rollout(states, between, actions) + torch.tensor([0.1, 0.0])

    env = TwoRooms()
    obs, info = env.reset(seed=0)
    agent = MPCAgent(OffByOneTenth(env.sim), _SpyPlanner(), GoalCost("euclid"), execute=2)
    agent.reset(env.goal_observation(), info)
    for _ in range(5):
        obs, *_, info = env.step(agent.act(obs, info))
    assert agent.position_errors == pytest.approx([0.1] * 4, abs=1e-5)


def test_mpc_holds_each_planned_action_for_action_repeat_steps():
    env = TwoRooms()
    obs, info = env.reset(seed=0)
    seen = {}

    class Recording(SimModel):
        def rollout(self, states, between, actions):
            seen.setdefault("rolled", actions.shape[1])
            return super().rollout(states, between, actions)

    class Scored(GoalCost):
        def __call__(self, states, goal, actions):
            seen.setdefault("scored", (states.shape[1], actions.shape[1]))
            return super().__call__(states, goal, actions)

    spy = _SpyPlanner()
    agent = MPCAgent(Recording(env.sim), spy, Scored("euclid"), execute=2, action_repeat=3)
    agent.reset(env.goal_observation(), info)
    executed = []
    for _ in range(7):
        executed.append(agent.act(obs, info))
        obs, *_, info = env.step(executed[-1])
    first = torch.arange(8, dtype=torch.float32).view(4, 2) / 10 - 0.4 + 0.01
    assert len(spy.inits) == 2  # replanned after 2 planned actions = 6 env steps
    assert torch.equal(torch.tensor(np.stack(executed[:6])), first[:2].repeat_interleave(3, 0))
    assert seen == {"rolled": 12, "scored": (4, 4)}  # 4 planned actions imagined over 12 steps, scored 4 times
    assert torch.equal(spy.inits[1], torch.cat([first[2:], first[3:].expand(2, 2)]))  # shifted by planned actions
    assert agent.memory.error == pytest.approx(0.0, abs=1e-6)  # expected states are per env step


@pytest.mark.parametrize("planner", ["cem", "mppi"])
def test_sampling_planners_always_try_doing_nothing(planner):
    # zero actions are optimal; a warm start far from them and 3 samples: only the do-nothing candidate is exact
    plan = make_planner(planner, 6, 2, samples=3, iterations=1, **({"elites": 1} if planner == "cem" else {})).plan(
        lambda a: a.abs().sum((1, 2)), init=torch.full((6, 2), 0.8))
    assert torch.equal(plan.actions, torch.zeros(6, 2)) and plan.cost == 0.0


def test_cem_mean_result_averages_the_noise_that_the_best_sample_keeps():
    # an uninformative cost: the cheapest of 256 samples is one Gaussian draw (std 0.7), the elites' mean of all
    # 256 is near the start; "mean" is scored once more, and the default still returns the cheapest sample
    def cost(actions):
        return torch.rand(len(actions), generator=torch.Generator().manual_seed(len(actions)))

    best = CEM(8, 2, samples=256, iterations=1, elites=256, seed=0).plan(cost)
    mean = CEM(8, 2, samples=256, iterations=1, elites=256, seed=0, result="mean").plan(cost)
    assert best.actions.abs().max() > 0.5 and mean.actions.abs().max() < 0.25
    assert mean.cost == float(cost(mean.actions[None])[0]) and (best.rollouts, mean.rollouts) == (256, 257)
    with pytest.raises(ConfigError, match="result = 'median'"):
        CEM(8, 2, result="median")


def test_cem_with_one_elite_keeps_a_finite_search():
    # one elite has no sample std: the next iteration must still sample finite candidates
    plan = CEM(4, 2, samples=8, iterations=3, elites=1, seed=0).plan(lambda a: (a - 0.3).pow(2).sum((1, 2)))
    assert torch.isfinite(plan.actions).all() and plan.cost < (0.3 ** 2) * 8


def test_action_repeat_takes_the_oracle_round_the_wall():
    # held-out episodes where the summed goal distance over 12 single steps keeps the oracle at the wall (its local
    # minimum); 8 actions held 2 steps each (configs/control/plan_two_rooms.yaml) look far enough ahead to go
    # through the door (docs/control.md)
    env = TwoRooms(eval_layouts=True)

    def final_distances(agent_options):
        distances = []
        for seed, i in [(0, 14), (2, 6)]:
            agent = MPCAgent(SimModel(env.sim), cost=GoalCost("euclid"), **agent_options(seed))
            obs, info = env.reset(seed=episode_seed(seed, i))
            agent.reset(env.goal_observation(), info)
            for _ in range(env.max_steps):
                obs, *_, info = env.step(agent.act(obs, info))
            distances.append(info["distance"])
        return distances

    single = final_distances(agent_options=lambda s: dict(
        planner=CEM(12, 2, samples=256, iterations=3, elites=24, seed=s), execute=4))
    held = final_distances(agent_options=lambda s: dict(
        planner=CEM(8, 2, samples=192, iterations=3, elites=16, seed=s), execute=2, action_repeat=2))
    assert min(single) > 0.2 and max(held) < 0.1, (single, held)


def test_working_memory_keeps_the_last_k_states_and_actions_between_them():
    mem = WorkingMemory(history=3)
    for i in range(5):
        mem.observe(torch.full((2,), float(i)))
        mem.did(torch.full((2,), 10.0 + i))
    states, between = mem.history(2)
    assert states[:, 0].tolist() == [2.0, 3.0, 4.0]
    assert between[:, 0].tolist() == [12.0, 13.0]  # the actions from state 2 to 3 and 3 to 4


def test_working_memory_concatenates_the_env_actions_taken_between_two_states_in_order():
    mem = WorkingMemory(history=2)
    mem.observe(torch.zeros(1))
    for a in (1.0, 2.0, 3.0):  # three env steps between the stored states (a world model at frameskip 3)
        mem.did(torch.tensor([a, -a]))
    mem.observe(torch.ones(1))
    assert mem.history(6)[1].tolist() == [[1.0, -1.0, 2.0, -2.0, 3.0, -3.0]]


class FrameskipModel:
    """A model whose step covers 2 env steps: the state is the env step's index, a model step adds the first of its
    two env actions."""

    context, frameskip = 2, 2

    def __init__(self) -> None:
        self.observed, self.action_shapes, self.histories = [], set(), []

    def observe(self, obs, info):
        self.observed.append(int(obs))
        return torch.tensor([float(obs)])

    def goal(self, goal_obs, info):
        return torch.tensor([100.0])

    def rollout(self, states, between, actions):
        self.action_shapes.add(tuple(actions.shape[1:]))
        self.histories.append((len(states), between.shape))
        steps = actions.reshape(len(actions), -1, 2 * actions.shape[-1])
        return states[-1] + steps[..., :1].cumsum(1)


def test_a_frameskip_model_sees_a_state_every_frameskip_env_steps_and_one_imagined_state_per_model_step():
    model, scored = FrameskipModel(), set()

    def cost(states, goal, actions):
        scored.add(tuple(states.shape[1:]))
        return (states - goal).pow(2).sum((1, 2))

    agent = MPCAgent(model, CEM(3, 1, samples=8, iterations=1, elites=2, seed=0), cost, execute=1, action_repeat=4)
    agent.reset(None, {})
    for step in range(12):
        agent.act(np.float32(step), {})
    assert model.observed == [0, 2, 4, 6, 8, 10]
    # plans: 3 planned actions held 4 env steps each; then the executed one, for the states it should lead to
    assert model.action_shapes == {(12, 1), (4, 1)}
    assert agent.memory.error is not None
    assert scored == {(3, 1)}  # the state after each planned action: every second model step
    assert model.histories[-1] == (2, (1, 2))  # two stored states, the two env actions between them
    with pytest.raises(ConfigError, match="multiple of the world model's frameskip 2"):
        MPCAgent(model, CEM(3, 1), cost, action_repeat=3)


def test_with_sub_actions_a_planned_action_is_the_env_actions_of_one_model_step_in_order():
    model = FrameskipModel()
    cost = lambda states, goal, actions: (states - goal).pow(2).sum((1, 2))  # noqa: E731
    agent = MPCAgent(model, CEM(3, 2, samples=8, iterations=1, elites=2, seed=0), cost, execute=1, action_repeat=2,
                     sub_actions=True)
    planned = torch.tensor([[[0.1, 0.2], [0.3, 0.4]]])  # one plan of 2 actions, each 2 env actions of 1-D
    assert torch.equal(agent.held(planned), torch.tensor([[[0.1], [0.2], [0.3], [0.4]]]))
    agent.reset(None, {})
    taken = [float(agent.act(np.float32(step), {})[0]) for step in range(4)]
    assert model.action_shapes == {(6, 1), (2, 1)}  # 3 model steps of 2 env actions; the executed one
    assert taken[0] != taken[1] or taken[2] != taken[3]  # not one action held: each env step planned
    assert model.histories[-1] == (2, (1, 2))
    with pytest.raises(ConfigError, match="action_repeat must be 2, got 4"):
        MPCAgent(model, CEM(3, 2), cost, action_repeat=4, sub_actions=True)


def test_planning_to_the_budget_scores_no_imagined_state_past_its_end():
    """budget: near the end of the episode the horizon shrinks, so the cost reads the states up to the budget's
    last step and the planned actions that lead to them (8 env steps, 2 per planned action, horizon 3)."""
    scored = {}

    def cost(states, goal, actions):
        scored.setdefault(agent.steps, (states.shape[1], actions.shape[1]))
        return (states - goal).pow(2).sum((1, 2))

    for budget in (8, None):
        scored.clear()
        agent = MPCAgent(FrameskipModel(), CEM(3, 1, samples=8, iterations=1, elites=2, seed=0), cost, execute=1,
                         action_repeat=2, budget=budget)
        agent.reset(None, {})
        for step in range(8):
            agent.act(np.float32(step), {})
        # planned before env steps 0, 2, 4, 6 (agent.steps counts the step being taken)
        assert scored == ({1: (3, 3), 3: (3, 3), 5: (2, 2), 7: (1, 1)} if budget else
                          {1: (3, 3), 3: (3, 3), 5: (3, 3), 7: (3, 3)})


def test_oracle_planner_succeeds_on_two_rooms_and_random_does_not():
    env = TwoRooms(eval_layouts=True)
    oracle = run_episodes(env, lambda s: MPCAgent(SimModel(env.sim), CEM(12, 2, seed=s), GoalCost("euclid")),
                          episodes=6, seeds=[0])
    assert oracle["success"] >= 5 / 6, oracle["records"]
    rand = run_episodes(env, lambda s: RandomAgent(env, s), episodes=6, seeds=[0])
    assert rand["success"] <= 1 / 6
    assert oracle["seconds_per_plan"] > 0 and oracle["rollouts_per_plan"] == 256 * 4
    assert oracle["closed_loop_position_error"] == pytest.approx(0.0, abs=1e-6)  # it imagines with the simulator
    assert rand["closed_loop_position_error"] is None  # imagines nothing


def test_wilson_interval():
    lo, hi = wilson(9, 10)
    assert lo == pytest.approx(0.5958, abs=1e-3) and hi == pytest.approx(0.9821, abs=1e-3)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == pytest.approx(1.0)
