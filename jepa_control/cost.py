"""The planning cost: C(a) = sum_t d(s_hat_t, goal) [or d at the last step only] + lambda * sum_t E(s_hat_t)
+ mu * sum_t ||a_t||^2 [+ rho * ||r(s_hat_H) - r(s_hat_{H-1})||], with E the learned energy of jepa_control/energy.py
(optional) and r a position read-out. Lower is better."""
from __future__ import annotations

import copy

import torch

from jepa.errors import ConfigError

DISTANCES = ("mse", "l1", "euclid", "position", "geodesic", "state")


class GoalCost:
    """Args:
        distance: mse / l1 (mean over tokens and channels, for latents), euclid (for true positions) or position
            (euclid between `readout`(latents), a learned read-out of the agent's position: WorldModel.read_position)
            or geodesic (`geodesic`(read-outs), the maze-aware distance of jepa_control/geodesic.py, round the walls)
            or state (euclid between `readout`(latents), a learned read-out of the env's state: WorldModel.read_state).
        mode: sum (over the horizon, the default: beats last-state-only in eb_jepa) or last.
        action_weight: mu, the weight of the action-magnitude term.
        energy: a learned energy E (latents [S, H, N, D] -> [S, H]); energy_weight: lambda.
        rest_weight: rho, the weight of the read-out distance moved in the plan's last imagined step (needs a
            readout): a plan must end at rest, against agents that momentum carries round the goal. Off by
            default: on PointMaze (rho 3) it did not raise success (55.0 % vs 58.3 %).
        proprio_weight: for a world model with proprioception (its states' last token is the agent's recorded
            position), that token's weight in an mse / l1 distance against 1 for each frame token; 1 (the default)
            is the plain mean over tokens. Below 1 the goal's frame (the block, the arm) counts for more than where
            the agent itself stands.
        proprio_token: whether the states carry that token (the world model's proprio_scale > 0).
    """

    def __init__(self, distance: str = "mse", mode: str = "sum", action_weight: float = 0.0, energy=None,
                 energy_weight: float = 0.0, readout=None, geodesic=None, rest_weight: float = 0.0,
                 proprio_weight: float = 1.0, proprio_token: bool = False) -> None:
        if distance not in DISTANCES:
            raise ConfigError(f"unknown distance {distance!r}: use one of {', '.join(DISTANCES)}")
        if distance in ("position", "geodesic", "state") and readout is None:
            what = "state" if distance == "state" else "position"
            raise ConfigError(f"distance {distance!r} needs a read-out of the {what} from the latents")
        if distance == "geodesic" and geodesic is None:
            raise ConfigError("distance 'geodesic' needs a transition graph (control.geodesic.TransitionGraph)")
        if rest_weight and readout is None:
            raise ConfigError("rest_weight needs a read-out of the position from the latents (distance position "
                              "or geodesic)")
        if rest_weight < 0:
            raise ConfigError(f"rest_weight must be >= 0, got {rest_weight}")
        if proprio_weight < 0:
            raise ConfigError(f"proprio_weight must be >= 0, got {proprio_weight}")
        if proprio_weight != 1 and not (proprio_token and distance in ("mse", "l1")):
            raise ConfigError(f"proprio_weight {proprio_weight} weighs the proprioception token of an mse / l1 "
                              "distance: this world model has no such token (proprio_scale 0) or the distance is "
                              f"{distance!r}")
        if mode not in ("sum", "last"):
            raise ConfigError(f"cost mode must be 'sum' or 'last', got {mode!r}")
        self.distance, self.mode, self.action_weight = distance, mode, action_weight
        self.energy, self.energy_weight, self.readout, self.geodesic = energy, energy_weight, readout, geodesic
        self.rest_weight, self.proprio_weight = rest_weight, proprio_weight

    def with_energy(self, energy, energy_weight: float) -> "GoalCost":
        """This cost plus lambda * E."""
        cost = copy.copy(self)
        cost.energy, cost.energy_weight = energy, energy_weight
        return cost

    def distances(self, states: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """states [S, H, ...], goal [...] -> [S, H]."""
        if self.distance in ("position", "state"):
            return (self.readout(states) - self.readout(goal)).norm(dim=-1)
        if self.distance == "geodesic":
            return self.geodesic(self.readout(states), self.readout(goal))
        if self.proprio_weight != 1:  # per-token distances [S, H, N], the last token weighed apart
            per_token = (states - goal).pow(2) if self.distance == "mse" else (states - goal).abs()
            per_token = per_token.flatten(3).mean(-1)
            weights = torch.ones(per_token.shape[-1], dtype=per_token.dtype, device=per_token.device)
            weights[-1] = self.proprio_weight
            return (per_token * weights).sum(-1) / weights.sum()
        diff = (states - goal).flatten(2)
        if self.distance == "mse":
            return diff.pow(2).mean(-1)
        if self.distance == "l1":
            return diff.abs().mean(-1)
        return diff.norm(dim=-1)

    def __call__(self, states: torch.Tensor, goal: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        d = self.distances(states, goal)
        cost = d.sum(1) if self.mode == "sum" else d[:, -1]
        if self.energy is not None and self.energy_weight:
            cost = cost + self.energy_weight * self.energy(states).sum(1)
        if self.action_weight:
            cost = cost + self.action_weight * actions.pow(2).sum((1, 2))
        if self.rest_weight and states.shape[1] > 1:
            last = self.readout(states[:, -2:])
            cost = cost + self.rest_weight * (last[:, 1] - last[:, 0]).norm(dim=-1)
        return cost
