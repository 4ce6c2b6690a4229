"""Mode-2 planners: optimise an action sequence a_0..a_{H-1} inside the action bounds to minimise a batched cost.

Every planner takes cost_fn(actions [S, H, A]) -> costs [S] (differentiable for the gradient planners), a
warm-start sequence [H, A] (or None: zeros) and returns a Plan. `rollouts` counts the action sequences evaluated
(each one is H predictor steps), the hardware-independent compute figure of the planner table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from jepa.errors import ConfigError

CostFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Plan:
    actions: torch.Tensor  # [H, A], inside the bounds
    cost: float
    rollouts: int


class Planner:
    """Shared set-up: horizon, bounds, seeded generator, and the device the action sequences live on (the cost's:
    a world model on a GPU plans there). The noise is always drawn from a CPU generator and moved, so a seed gives
    the same candidates on every device."""

    def __init__(self, horizon: int, action_dim: int, low: float = -1.0, high: float = 1.0, seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
        if horizon < 1 or action_dim < 1:
            raise ConfigError(f"planner horizon and action_dim must be >= 1, got {horizon}, {action_dim}")
        self.horizon, self.action_dim, self.low, self.high = horizon, action_dim, low, high
        self.generator = torch.Generator().manual_seed(seed)
        self.device = torch.device(device)

    def start(self, init: torch.Tensor | None) -> torch.Tensor:
        if init is None:
            return torch.zeros(self.horizon, self.action_dim, device=self.device)
        if init.shape != (self.horizon, self.action_dim):
            raise ValueError(f"warm start must be [{self.horizon}, {self.action_dim}], got {list(init.shape)}")
        return init.to(self.device).clamp(self.low, self.high)

    def noise(self, *shape) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator).to(self.device, non_blocking=True)

    def sample_around(self, cost_fn: CostFn, mean: torch.Tensor, std, samples: int):
        """(candidates [S, H, A], their costs): Gaussian samples around mean, clamped; the mean itself is first and
        doing nothing (zero actions, clamped to the bounds) second: once at the goal, staying is the best plan, and
        Gaussian samples in H x A dimensions almost never come near it (the agent then wanders off the goal)."""
        cand = (mean + std * self.noise(samples, *mean.shape)).clamp(self.low, self.high)
        cand[0] = mean
        if samples > 1:
            cand[1] = torch.zeros_like(mean).clamp(self.low, self.high)
        with torch.no_grad():
            return cand, cost_fn(cand)

    def plan(self, cost_fn: CostFn, init: torch.Tensor | None = None) -> Plan:
        raise NotImplementedError


class CEM(Planner):
    """Cross-entropy method: sample around a Gaussian, refit it to the `elites` cheapest, repeat; the warm start
    (or the current mean) is always among the samples. `result` says what is returned: "best", the cheapest
    sequence seen, or "mean", the Gaussian's final mean (the elites' average, as DINO-WM's and PETS' CEM return;
    one more rollout scores it). With few samples in many dimensions the cheapest sample is partly noise, and the
    one that the world model's errors flatter most; the mean averages both (on PointMaze it planned no better:
    55.0 vs 58.3 %, docs/control.md)."""

    def __init__(self, horizon: int, action_dim: int, samples: int = 256, iterations: int = 4, elites: int = 24,
                 init_std: float = 0.7, min_std: float = 0.05, result: str = "best", **kw) -> None:
        super().__init__(horizon, action_dim, **kw)
        if not 1 <= elites <= samples:
            raise ConfigError(f"CEM elites must be between 1 and samples={samples}, got {elites}")
        if result not in ("best", "mean"):
            raise ConfigError(f"CEM result = {result!r}: choose 'best' (the cheapest sequence sampled) or 'mean' "
                              "(the elites' final mean)")
        self.samples, self.iterations, self.elites, self.init_std, self.min_std, self.result = (
            samples, iterations, elites, init_std, min_std, result)

    def plan(self, cost_fn: CostFn, init: torch.Tensor | None = None) -> Plan:
        mean = self.start(init)
        std = torch.full_like(mean, self.init_std)
        best, best_cost = mean, float("inf")
        for _ in range(self.iterations):
            cand, costs = self.sample_around(cost_fn, mean, std, self.samples)
            order = costs.argsort()
            if costs[order[0]] < best_cost:
                best, best_cost = cand[order[0]].clone(), float(costs[order[0]])
            elite = cand[order[: self.elites]]
            # one elite has no sample std (NaN): then the std falls to its floor
            mean, std = elite.mean(0), elite.std(0, correction=int(self.elites > 1)).clamp_min(self.min_std)
        if self.result == "mean":
            with torch.no_grad():
                return Plan(mean, float(cost_fn(mean[None])[0]), self.samples * self.iterations + 1)
        return Plan(best, best_cost, self.samples * self.iterations)


class MPPI(Planner):
    """Model-predictive path integral: the new mean is the softmax(-cost / temperature)-weighted average of the
    samples (costs standardised first, so the temperature does not depend on the cost's scale)."""

    def __init__(self, horizon: int, action_dim: int, samples: int = 256, iterations: int = 4,
                 noise_std: float = 0.7, temperature: float = 0.1, decay: float = 0.8, **kw) -> None:
        super().__init__(horizon, action_dim, **kw)
        self.samples, self.iterations, self.noise_std, self.temperature, self.decay = (
            samples, iterations, noise_std, temperature, decay)

    def plan(self, cost_fn: CostFn, init: torch.Tensor | None = None) -> Plan:
        mean = self.start(init)
        std = self.noise_std
        best, best_cost = mean, float("inf")
        for _ in range(self.iterations):
            cand, costs = self.sample_around(cost_fn, mean, std, self.samples)
            i = int(costs.argmin())
            if costs[i] < best_cost:
                best, best_cost = cand[i].clone(), float(costs[i])
            z = (costs - costs.min()) / costs.std().clamp_min(1e-8)
            weights = torch.softmax(-z / self.temperature, 0)
            mean = (weights[:, None, None] * cand).sum(0)
            std *= self.decay
        return Plan(best, best_cost, self.samples * self.iterations)


class GradientPlanner(Planner):
    """The seed's inference-time optimisation: Adam on the action sequence through the differentiable cost,
    clamped to the bounds after every step, from `restarts` starts (the warm start and noisy copies of it)."""

    def __init__(self, horizon: int, action_dim: int, restarts: int = 8, steps: int = 20, lr: float = 0.1,
                 init_std: float = 0.5, **kw) -> None:
        super().__init__(horizon, action_dim, **kw)
        self.restarts, self.steps, self.lr, self.init_std = restarts, steps, lr, init_std

    def refine(self, cost_fn: CostFn, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Optimise every start [R, H, A]; returns the final actions and their costs."""
        actions = starts.clone().requires_grad_(True)
        opt = torch.optim.Adam([actions], lr=self.lr)
        for _ in range(self.steps):
            opt.zero_grad(set_to_none=True)
            cost_fn(actions).sum().backward()
            opt.step()
            with torch.no_grad():
                actions.clamp_(self.low, self.high)
        with torch.no_grad():
            return actions.detach(), cost_fn(actions.detach())

    def plan(self, cost_fn: CostFn, init: torch.Tensor | None = None) -> Plan:
        mean = self.start(init)
        starts = (mean + self.init_std * self.noise(self.restarts, *mean.shape)).clamp(self.low, self.high)
        starts[0] = mean
        actions, costs = self.refine(cost_fn, starts)
        i = int(costs.argmin())
        return Plan(actions[i], float(costs[i]), self.restarts * (self.steps + 1))


class CEMGradient(Planner):
    """CEM for the global search, then gradient refinement of its best `restarts` candidates (the gradient planner
    alone gets stuck in local minima; CEM alone stops at its sampling resolution)."""

    def __init__(self, horizon: int, action_dim: int, samples: int = 256, iterations: int = 3, elites: int = 24,
                 restarts: int = 4, steps: int = 10, lr: float = 0.05, **kw) -> None:
        super().__init__(horizon, action_dim, **kw)
        self.cem = CEM(horizon, action_dim, samples, iterations, elites, **kw)
        self.cem.generator = self.generator
        self.grad = GradientPlanner(horizon, action_dim, restarts, steps, lr, init_std=0.1, **kw)
        self.grad.generator = self.generator

    def plan(self, cost_fn: CostFn, init: torch.Tensor | None = None) -> Plan:
        coarse = self.cem.plan(cost_fn, init)
        refined = self.grad.plan(cost_fn, coarse.actions)
        best = refined if refined.cost < coarse.cost else coarse
        return Plan(best.actions, best.cost, coarse.rollouts + refined.rollouts)


PLANNERS = {"cem": CEM, "mppi": MPPI, "gradient": GradientPlanner, "cem_gradient": CEMGradient}


def make_planner(name: str, horizon: int, action_dim: int, seed: int = 0, **options) -> Planner:
    if name not in PLANNERS:
        raise ConfigError(f"unknown planner {name!r}: use one of {', '.join(PLANNERS)}")
    return PLANNERS[name](horizon, action_dim, seed=seed, **options)
