"""Mode-1: a goal-conditioned actor A(s, g) trained through the frozen world model, used alone (reactive: one
forward pass per step) or to warm-start a planner (docs/control.md).

Training imagines: from a true latent s_0 of the data and a goal latent g (a frame of another trajectory), the
actor picks a_t = A(s_t, g), the frozen predictor gives s_{t+1}, for `horizon` steps; the loss is the planner's own
cost of that imagined trajectory (goal distance summed over the horizon + mu ||a||^2), back-propagated through the
predictor into the actor. Nothing but the actor learns.

As an option (distill_weight > 0) the actor also imitates the planner: on episodes the planner drove (`jepa collect
--policy plan`), A(s_t, g) regresses onto the planner's action a_t, with the window's last frame as the goal
(hindsight relabelling, as in goal-conditioned behaviour cloning: where the planned trajectory did go from s_t).

    jepa fit --config configs/control/two_rooms_actor.yaml
"""
from __future__ import annotations

import time

import lightning as L
import numpy as np
import torch
from torch import nn

from jepa.errors import ConfigError
from jepa_control.cost import GoalCost
from jepa_control.mlp import mlp
from jepa_control.on_world_model import OnWorldModel, frame_states_only
from jepa_control.optim import adamw_cosine
from jepa_control.world_model import WorldModel


class GoalActor(nn.Module):
    """Latents of the state and the goal [B, N, D] -> an action in [-1, 1]^A (tanh), through an MLP on
    (s, g, g - s) flattened."""

    def __init__(self, token_dim: int, num_tokens: int, action_dim: int, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        self.mlp = mlp(3 * token_dim * num_tokens, hidden, depth, action_dim)
        # starts by standing still, where tanh's gradient is largest (with a random output layer the two-rooms actor
        # ended saturated: one constant action for every state and goal, docs/control.md)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.action_dim = action_dim

    def forward(self, state: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        x = torch.cat([state.flatten(1), goal.flatten(1), (goal - state).flatten(1)], 1)
        return torch.tanh(self.mlp(x))


def imagine(actor: GoalActor, predictor, history: torch.Tensor, history_actions: torch.Tensor, goal: torch.Tensor,
            horizon: int, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll the actor through the predictor: history latents [B, k, N, D], the k-1 actions between them, goal
    [B, N, D] -> (imagined latents [B, H, N, D], the actor's actions [B, H, A])."""
    frames, acts = list(history.unbind(1)), list(history_actions.unbind(1))
    for _ in range(horizon):
        acts.append(actor(frames[-1], goal))
        lo = max(0, len(frames) - context)
        frames.append(predictor(torch.stack(frames[lo:], 1), torch.stack(acts[lo:], 1))[:, -1])
    k = history.shape[1]
    return torch.stack(frames[k:], 1), torch.stack(acts[k - 1 :], 1)


def distill_loss(actor: GoalActor, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Imitation with hindsight goals: squared error between A(s_0, s_last) and the action a_0 the data took from
    s_0, for windows of latents [B, W, N, D] and their actions [B, W-1, A]."""
    return (actor(latents[:, 0], latents[:, -1]) - actions[:, 0]).pow(2).sum(-1).mean()


class ActorModule(OnWorldModel, L.LightningModule):
    """Trains a GoalActor through a frozen world model on the summed goal cost of its imagined trajectories.

    Args:
        world_model: the trained world model (`jepa fit --config configs/control/two_rooms.yaml`; a config names it
            by class_path jepa_control.WorldModel.from_checkpoint, jepa_control/on_world_model.py); frozen here.
        horizon: imagined steps per training trajectory.
        hidden: actor MLP width.
        depth: actor hidden layers.
        distance: latent goal distance (mse or l1), as the planner's cost.
        action_weight: mu of the action-magnitude term.
        lr: AdamW learning rate (cosine decay to 0 over the trainer's max_steps).
        weight_decay: AdamW weight decay.
        cost_weight: weight of the imagined goal cost (0: distillation only).
        distill_weight: weight of the squared error to the data's actions (the planner's, on planned episodes),
            with each window's last frame as the goal; 0 (default): no distillation.
    """

    checkpoint_kind, checkpoint_keys = "an actor", ("horizon", "distance")

    def __init__(self, world_model: WorldModel, horizon: int = 12, hidden: int = 256, depth: int = 2,
                 distance: str = "mse", action_weight: float = 0.0, lr: float = 1e-3, weight_decay: float = 0.01,
                 cost_weight: float = 1.0, distill_weight: float = 0.0) -> None:
        super().__init__()
        if horizon < 1:
            raise ConfigError(f"model.horizon must be >= 1, got {horizon}")
        if cost_weight < 0 or distill_weight < 0 or cost_weight + distill_weight == 0:
            raise ConfigError(f"model.cost_weight and model.distill_weight must be >= 0 and not both 0, got "
                              f"{cost_weight} and {distill_weight}")
        self.save_hyperparameters(ignore=["world_model"])
        self.wm = world_model.requires_grad_(False)
        frame_states_only(self.wm, "the actor")
        enc = self.wm.frozen_encoder
        self.actor = GoalActor(enc.dim, enc.num_tokens, self.wm.hparams.action_dim, hidden, depth)
        self.cost = GoalCost(distance, "sum", action_weight)

    def loss(self, latents: torch.Tensor) -> torch.Tensor:
        """Mean cost of the actor's imagined trajectories from each window's first frame to another window's last
        frame (the batch rolled by one, so goals come from other trajectories)."""
        self.wm.eval()
        start, goal = latents[:, :1], latents.roll(1, 0)[:, -1]
        states, actions = imagine(self.actor, self.wm.predictor, start, latents.new_zeros(len(latents), 0,
                                  self.actor.action_dim), goal, self.hparams.horizon, self.wm.hparams.context)
        return self.cost(states, goal[:, None], actions).mean() / self.hparams.horizon

    def losses(self, batch) -> dict[str, torch.Tensor]:
        out = {}
        if self.hparams.cost_weight > 0:
            out["cost"] = self.loss(batch["latents"])
        if self.hparams.distill_weight > 0:
            out["distill"] = distill_loss(self.actor, batch["latents"], batch["actions"])
        return out

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        parts = self.losses(batch)
        for name, value in parts.items():
            self.log(f"train/{name}", value, prog_bar=True, batch_size=len(batch["latents"]))
        return sum(self.hparams[f"{name}_weight"] * value for name, value in parts.items())

    def validation_step(self, batch, batch_idx: int) -> None:
        for name, value in self.losses(batch).items():
            self.log(f"val/{name}", value, batch_size=len(batch["latents"]))

    def configure_optimizers(self):
        return adamw_cosine(self.actor.parameters(), self.hparams.lr, self.hparams.weight_decay, self.trainer)


class ActorAgent:
    """Mode-1 alone: one actor forward pass per step on the encoded frame and goal, no planning."""

    def __init__(self, model, actor: GoalActor) -> None:
        self.model, self.actor = model, actor.eval()
        self.plan_seconds: list[float] = []
        self.rollouts: list[int] = []

    def reset(self, goal_obs: np.ndarray, info: dict) -> None:
        self.goal = self.model.goal(goal_obs, info)

    @torch.no_grad()
    def act(self, obs: np.ndarray, info: dict) -> np.ndarray:
        start = time.perf_counter()
        action = self.actor(self.model.observe(obs, info)[None], self.goal[None])[0]
        self.plan_seconds.append(time.perf_counter() - start)
        self.rollouts.append(0)
        return action.numpy()
