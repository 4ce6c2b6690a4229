"""The agents `jepa plan` evaluates, by name: one interface (reset(goal_obs, info), act(obs, info) -> action,
plan_seconds, rollouts) and one registry, so a new agent is one builder function here, not a branch of the CLI.

A builder takes the evaluation's `PlanSetup` (env, world model, cost, planner settings) and the row's options, and
returns make_agent(seed) -> agent: the evaluation builds one agent per seed, so a planner's own randomness follows
the seed like the episodes do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from jepa.errors import ConfigError
from jepa_control.cost import GoalCost
from jepa_control.evaluate import RandomAgent
from jepa_control.mpc import LatentModel, MPCAgent
from jepa_control.planners import make_planner
from jepa_control.protocols import ReplayAgent
from jepa_control.push_t_oracle import FramePixels


@dataclass
class PlanSetup:
    """What every agent of one evaluation shares. `world_model` may be None for agents that do not use one."""

    env: object
    world_model: object = None
    cost: GoalCost | None = None
    horizon: int = 5
    execute: int = 5
    action_repeat: int = 5
    sub_actions: bool = False  # a frameskip model's planned action is its f env actions (MPCAgent)
    warm_start: bool = True
    planner_options: dict = field(default_factory=dict)
    budget: int = 50
    plan_to_budget: bool = False  # MPC scores no imagined state past the budget's end (MPCAgent)
    energy: object = None  # a learned energy module (its rows are built with a cost of their own)
    energy_wm: object = None  # the world model planned on with the energy (the joint step trains its own)

    @property
    def action_dim(self) -> int:
        return len(self.env.action_low)

    def mpc(self, model, planner: str, seed: int, cost: GoalCost, actor=None) -> MPCAgent:
        """Receding-horizon control with `planner` and this evaluation's execute / warm-start / action-repeat
        settings (an actor, when given, replaces the shifted-plan warm start)."""
        width = self.action_dim * (model.frameskip if self.sub_actions else 1)
        planner = make_planner(planner, self.horizon, width, seed=seed, **(self.planner_options.get(planner) or {}))
        return MPCAgent(model, planner, cost, self.execute, warm_start=self.warm_start, actor=actor,
                        action_repeat=self.action_repeat, sub_actions=self.sub_actions,
                        budget=self.budget if self.plan_to_budget else None)


AgentFactory = Callable[[int], object]
AGENTS: dict[str, Callable[..., AgentFactory]] = {}


def register(name: str):
    def add(builder):
        AGENTS[name] = builder
        return builder

    return add


def build_agent(name: str, setup: PlanSetup, **options) -> AgentFactory:
    """make_agent(seed) of the registered agent `name`."""
    if name not in AGENTS:
        raise ConfigError(f"unknown agent {name!r}: choose one of {', '.join(sorted(AGENTS))}")
    return AGENTS[name](setup, **options)


@register("random_policy")
def random_policy(setup: PlanSetup) -> AgentFactory:
    """Uniform random actions: the lower bound."""
    return lambda seed: RandomAgent(setup.env, seed)


@register("trajectory_replay")
def trajectory_replay(setup: PlanSetup) -> AgentFactory:
    """The offline-goal trajectory's own actions: checks that the protocol's goals are reachable."""
    return lambda seed: ReplayAgent(setup.action_dim, setup.budget)


@register("world_model")
def world_model_planner(setup: PlanSetup, planner: str = "cem", cost: GoalCost | None = None,
                        world_model=None) -> AgentFactory:
    """MPC with `planner` on the world model's imagination (cost / world_model: other than the setup's)."""
    wm = world_model or setup.world_model
    return lambda seed: setup.mpc(LatentModel(wm), planner, seed, cost or setup.cost)


@register("actor")
def actor_alone(setup: PlanSetup, actor) -> AgentFactory:
    """The Mode-1 actor alone, reactive, on the world model's latents."""
    from jepa_control.actor import ActorAgent

    return lambda seed: ActorAgent(LatentModel(setup.world_model), actor)


@register("actor_warm_start")
def actor_warm_start(setup: PlanSetup, actor, planner: str = "cem") -> AgentFactory:
    """MPC whose every plan starts from the actions the actor takes in imagination."""
    return lambda seed: setup.mpc(LatentModel(setup.world_model), planner, seed, setup.cost, actor=actor)


@register("oracle")
def oracle(setup: PlanSetup, planner: str = "cem") -> AgentFactory:
    """MPC with `planner` on the env's true simulator (env.oracle_model(): true states, true dynamics), Euclidean
    goal distance on the true states: the upper bound."""
    if not hasattr(setup.env, "oracle_model"):
        raise ConfigError(f"{type(setup.env).__name__} has no true simulator for an oracle")
    # planning a frameskip world model's sub-actions, the oracle imagines a state per model step as that model does
    frameskip = setup.world_model.frameskip if setup.sub_actions else 1
    return lambda seed: setup.mpc(setup.env.oracle_model(frameskip), planner, seed,
                                  GoalCost("euclid", setup.cost.mode))


def rendering_oracle(setup: PlanSetup, planner: str, states, cost: GoalCost) -> AgentFactory:
    """MPC with `planner` on the env's true simulator, each imagined state the frame the env would show there as
    `states` (a world model's LatentModel, or FramePixels) reads it, scored by `cost`."""
    if not hasattr(setup.env, "latent_oracle_model"):
        raise ConfigError(f"{type(setup.env).__name__} has no true simulator that renders the states it imagines")
    return lambda seed: setup.mpc(setup.env.latent_oracle_model(states), planner, seed, cost)


@register("oracle_latent")
def oracle_with_the_world_models_cost(setup: PlanSetup, planner: str = "cem") -> AgentFactory:
    """The oracle with the world model's latents of the frames the env would show in place of the true state,
    scored by the world model's own cost."""
    return rendering_oracle(setup, planner, LatentModel(setup.world_model), setup.cost)


@register("oracle_pixels")
def oracle_with_a_pixel_distance(setup: PlanSetup, planner: str = "cem") -> AgentFactory:
    """The oracle scored by the mean squared difference between the frames the env would show and the goal image:
    oracle_latent's raw-pixels baseline (a state per model step of the world model, as it plans)."""
    return rendering_oracle(setup, planner, FramePixels(setup.world_model.frameskip), GoalCost("mse", setup.cost.mode))
