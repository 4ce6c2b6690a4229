"""Receding-horizon control: plan H actions, execute the first few, observe, replan warm-started from the rest.

A model says how states are observed and imagined: LatentModel (frozen encoder + world model, what the agent
learns) or SimModel (the true simulator on true positions: the oracle's upper bound). WorkingMemory holds what the
loop carries between steps: the last k states, the recent actions, the previous plan (shifted, to warm-start the
next) and the running error between predicted and observed states. A model whose step covers `frameskip` env
steps (a world model trained on frames that far apart) keeps a state every frameskip env steps, and the actions
between two states are the env actions taken between them, concatenated.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch

from jepa_control.cost import GoalCost
from jepa_control.planners import Planner
from jepa.errors import ConfigError


class LatentModel:
    """States are frozen-encoder latents [N, D]; imagination is the world model's rollout."""

    def __init__(self, world_model) -> None:
        self.wm = world_model.eval()
        self.context = world_model.hparams.context
        self.frameskip = world_model.frameskip

    def observe(self, obs: np.ndarray, info: dict) -> torch.Tensor:
        return self.state(obs, info.get("proprio", info["pos"]))

    def goal(self, goal_obs: np.ndarray, info: dict) -> torch.Tensor:
        """The goal image's state; a model with proprioception also reads where the goal puts the agent
        (info["goal_proprio"] where the env's goal is not the agent's own position, as Push-T's block)."""
        return self.state(goal_obs, info.get("goal_proprio", info["goal"]))

    def position(self, states: torch.Tensor) -> torch.Tensor | None:
        """Where states [..., N, D] put the agent (x, y), for a world model that reads it (else None)."""
        return self.wm.read_position(states) if self.wm.reads_position else None

    def state(self, frame: np.ndarray, proprio) -> torch.Tensor:
        proprio = torch.as_tensor(np.asarray(proprio, np.float32))[None, None]
        return self.wm.encode(torch.as_tensor(frame)[None, None], proprio)[0, 0]

    @torch.no_grad()
    def actor_plan(self, actor, states: torch.Tensor, actions_between: torch.Tensor, goal: torch.Tensor,
                   horizon: int) -> torch.Tensor:
        """The actions [H, A] a Mode-1 actor takes in imagination from the current history (a warm start)."""
        from jepa_control.actor import imagine

        if self.frameskip > 1:
            raise ConfigError("a Mode-1 actor plans one env step per model step: not with a frameskip world model")
        return imagine(actor, self.wm.predictor, states[None], actions_between[None], goal[None], horizon,
                       self.context)[1][0]

    def rollout(self, states: torch.Tensor, actions_between: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The imagined states [S, T / frameskip, ...] after env-step actions [S, T, A] (each model step reads the
        frameskip env actions it covers, concatenated)."""
        s = len(actions)
        actions = actions.reshape(s, -1, self.frameskip * actions.shape[-1])
        return self.wm.predictor.rollout(states[None].expand(s, *states.shape),
                                         actions_between[None].expand(s, *actions_between.shape), actions,
                                         self.context)


class SimModel:
    """The oracle: states are true positions [2], imagination is the true simulator of the current layout."""

    context, frameskip = 1, 1

    def __init__(self, sim) -> None:
        self.sim = sim

    def observe(self, obs: np.ndarray, info: dict) -> torch.Tensor:
        self.door = torch.tensor(float(info["door"]))
        return torch.as_tensor(info["pos"], dtype=torch.float32)

    def goal(self, goal_obs: np.ndarray, info: dict) -> torch.Tensor:
        return torch.as_tensor(info["goal"], dtype=torch.float32)

    def position(self, states: torch.Tensor) -> torch.Tensor:
        return states

    def rollout(self, states: torch.Tensor, actions_between: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        pos = states[-1].expand(len(actions), 2)
        out = []
        for h in range(actions.shape[1]):
            pos = self.sim.step(pos, actions[:, h], self.door)
            out.append(pos)
        return torch.stack(out, 1)


class WorkingMemory:
    """The last `history` states, the actions between them (all env actions taken between two stored states,
    concatenated), the previous plan and the prediction error."""

    def __init__(self, history: int) -> None:
        self.states: deque = deque(maxlen=history)
        self.actions: deque = deque(maxlen=max(history - 1, 0))  # the actions between consecutive stored states
        self.pending: list[torch.Tensor] = []  # taken since the latest state, their outcome not yet observed
        self.plan: torch.Tensor | None = None
        self.expected: list[torch.Tensor] = []  # predicted states for the actions queued for execution
        self.error: float | None = None  # running mean |predicted - observed| over executed steps

    def observe(self, state: torch.Tensor) -> torch.Tensor | None:
        """Store the state; return what the model had predicted for it (None when nothing was queued)."""
        expected = self.expected.pop(0) if self.expected else None
        if expected is not None:
            err = float((expected - state).abs().mean())
            self.error = err if self.error is None else 0.9 * self.error + 0.1 * err
        if self.pending and self.actions.maxlen:
            self.actions.append(torch.cat(self.pending))
        self.pending = []
        self.states.append(state)
        return expected

    def did(self, action: torch.Tensor) -> None:
        self.pending.append(action)

    def history(self, action_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(states [k, ...], the k-1 actions between them [k-1, A])."""
        states = torch.stack(list(self.states))
        acts = list(self.actions)[len(self.actions) - (len(states) - 1):]
        return states, (torch.stack(acts) if acts else torch.zeros(0, action_dim))

    def warm_start(self, executed: int) -> torch.Tensor | None:
        """The previous plan without its executed actions, padded by repeating its last action."""
        if self.plan is None:
            return None
        rest = self.plan[executed:]
        return torch.cat([rest, self.plan[-1:].expand(len(self.plan) - len(rest), -1)])


class MPCAgent:
    """Plan with `planner` on `model` under `cost`, execute `execute` planned actions, replan. Each plan starts from
    the shifted previous plan (warm_start) or, given a Mode-1 `actor`, from the actions the actor takes in
    imagination. With `action_repeat` r > 1 every planned action is held for r env steps (the CPU recipe of
    docs/control.md): a plan of H actions looks H * r steps ahead for the same search dimension, and is scored
    on the state at the end of each held action. A model whose step covers f env steps (LatentModel.frameskip)
    needs r to be a multiple of f: it observes a state every f env steps and imagines r / f steps per action.
    With `sub_actions` (r = f) a planned action is instead the f env actions of one model step, each free (DINO-WM's
    planning: the planner's action is f times as wide). A horizon long enough to go round the two-rooms wall is
    what takes the summed goal distance out of its local minimum there (docs/control.md). Given the episode's
    `budget` (env steps), imagined states past its end are not scored: near the end the horizon shrinks, so the
    plan is judged on where the agent is when the budget runs out (the success rule reads only that state), not
    on where a motion it cannot stop in time would carry it."""

    def __init__(self, model, planner: Planner, cost: GoalCost, execute: int = 4, history: int | None = None,
                 warm_start: bool = True, actor=None, action_repeat: int = 1, sub_actions: bool = False,
                 budget: int | None = None) -> None:
        if action_repeat < 1:
            raise ConfigError(f"action_repeat must be >= 1, got {action_repeat}")
        if action_repeat % model.frameskip:
            raise ConfigError(f"action_repeat {action_repeat} is not a multiple of the world model's frameskip "
                              f"{model.frameskip}: a planned action must cover whole model steps")
        if sub_actions and action_repeat != model.frameskip:
            raise ConfigError(f"sub_actions: a planned action is one model step's {model.frameskip} env actions, so "
                              f"action_repeat must be {model.frameskip}, got {action_repeat}")
        self.model, self.planner, self.cost, self.execute = model, planner, cost, execute
        self.history = history or model.context
        self.warm, self.actor, self.repeat, self.sub_actions = warm_start, actor, action_repeat, sub_actions
        self.budget = budget
        # the env's action size: a planned action holds model.frameskip of them with sub_actions
        self.env_action_dim = planner.action_dim // (model.frameskip if sub_actions else 1)
        self.plan_seconds: list[float] = []
        self.rollouts: list[int] = []
        # how far the imagined agent was from the true one at each state observed while executing a plan (imagined
        # from the plan's start: one model step ahead when one action is executed per plan): the world model's error
        # on the planner's own actions, beside its error along the data's (jepa plan prints both)
        self.position_errors: list[float] = []

    def reset(self, goal_obs: np.ndarray, info: dict) -> None:
        self.goal = self.model.goal(goal_obs, info)
        self.memory = WorkingMemory(self.history)
        self.queue: list[torch.Tensor] = []
        self.steps = 0  # env steps taken this episode

    def held(self, actions: torch.Tensor) -> torch.Tensor:
        """Planned actions [..., H, A] -> the env-step actions [..., H * r, A] they stand for (with sub_actions:
        [..., H, r * A] -> [..., H * r, A])."""
        if self.sub_actions:
            return actions.reshape(*actions.shape[:-2], -1, self.env_action_dim)
        return actions.repeat_interleave(self.repeat, -2)

    def scored_actions(self) -> int | None:
        """How many planned actions end within the budget (the last one may run past its end; None: all)."""
        if self.budget is None:
            return None
        left = self.budget - (self.steps - 1)  # env steps left, this one included
        return max(1, -(-left // self.repeat))

    def cost_fn(self, states: torch.Tensor, actions_between: torch.Tensor):
        per_action = self.repeat // self.model.frameskip  # imagined states per planned action
        scored = self.scored_actions()  # the actions after them lead past the budget: not imagined at all
        return lambda actions: self.cost(
            self.model.rollout(states, actions_between, self.held(actions[:, :scored]))[:, per_action - 1::per_action],
            self.goal, actions[:, :scored])

    def act(self, obs: np.ndarray, info: dict) -> np.ndarray:
        if self.steps % self.model.frameskip == 0:
            expected = self.memory.observe(self.model.observe(obs, info))
            reader = getattr(self.model, "position", None)  # models that say where a state puts the agent
            imagined = None if expected is None or reader is None else reader(expected)
            if imagined is not None:
                truth = torch.as_tensor(np.asarray(info["pos"], np.float32))
                self.position_errors.append(float((imagined - truth).norm()))
        self.steps += 1
        if not self.queue:
            states, between = self.memory.history(self.env_action_dim * self.model.frameskip)
            start = time.perf_counter()
            if self.actor is not None:
                init = self.model.actor_plan(self.actor, states, between, self.goal,
                                             self.planner.horizon * self.repeat)[:: self.repeat]
            else:
                init = self.memory.warm_start(self.execute) if self.warm else None
            plan = self.planner.plan(self.cost_fn(states, between), init)
            self.plan_seconds.append(time.perf_counter() - start)
            self.rollouts.append(plan.rollouts + (self.actor is not None))  # the actor's imagined rollout counts
            self.memory.plan = plan.actions
            self.queue = list(self.held(plan.actions[: self.execute]))
            with torch.no_grad():
                self.memory.expected = list(self.model.rollout(states, between, torch.stack(self.queue)[None])[0])
        action = self.queue.pop(0)
        self.memory.did(action)
        return action.numpy()
