"""The evaluation protocol (docs/control.md): fixed step budget, success judged on the final state, held-out
layouts, fixed seeds for starts and goals, episodes x seeds, Wilson 95 % interval, seconds per planning step."""
from __future__ import annotations

import math
import time

import numpy as np


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


class RandomAgent:
    """The lower bound: uniform actions in the bounds."""

    def __init__(self, env, seed: int = 0) -> None:
        self.env, self.rng = env, np.random.default_rng(seed)
        self.plan_seconds, self.rollouts = [], []

    def reset(self, goal_obs, info) -> None:
        pass

    def act(self, obs, info) -> np.ndarray:
        return self.rng.uniform(self.env.action_low, self.env.action_high).astype(np.float32)


def episode_seed(seed: int, episode: int) -> int:
    """Start, goal and layout of episode i under evaluation seed s: the same for every agent."""
    return int(np.random.default_rng([seed, episode, 99]).integers(2**31))


def run_episodes(env, make_agent, episodes: int, seeds: list[int], budget: int | None = None,
                 keep_frames: int = 0, protocol=None) -> dict:
    """Run make_agent(seed) for `episodes` episodes per seed; returns the aggregate and per-episode records.
    keep_frames: keep the frames and path of the first N episodes (for the PNG). protocol: where episodes start
    and what their goals are (jepa_control/protocols.py; default: the env's own reset draws both)."""
    from jepa_control.protocols import RandomGoal

    budget = budget or env.max_steps
    protocol = protocol or RandomGoal()
    records, shown = [], []
    seconds, rollouts, position_errors = [], [], []
    acting = 0.0  # seconds inside agent.act, plans included: what one env step of control costs
    start = time.perf_counter()
    for seed in seeds:
        agent = make_agent(seed)
        for i in range(episodes):
            obs, info = protocol.start(env, episode_seed(seed, i))
            agent.reset(env.goal_observation(), info)
            frames, path = [obs], [info["pos"]]
            for _ in range(budget):
                tick = time.perf_counter()
                action = agent.act(obs, info)
                acting += time.perf_counter() - tick
                obs, _, _, _, info = env.step(action)
                if len(shown) < keep_frames:
                    frames.append(obs)
                path.append(info["pos"])
            success = bool(info["success"])  # judged on the final state
            records.append({"seed": seed, "episode": i, "layout": info["layout"], "success": success,
                            "final_distance": info["distance"], "clamped": info["clamped"]})
            if len(shown) < keep_frames:
                shown.append({"frames": np.stack(frames), "path": np.stack(path), "goal": info["goal"],
                              "goal_obs": env.goal_observation(), "success": success,
                              "extent": env.frame_extent})
        seconds += agent.plan_seconds
        rollouts += agent.rollouts
        position_errors += getattr(agent, "position_errors", [])  # agents that imagine where they will be
        agent.plan_seconds, agent.rollouts = [], []
    wins = sum(r["success"] for r in records)
    per_seed = [float(np.mean([r["success"] for r in records if r["seed"] == s])) for s in seeds]
    lo, hi = wilson(wins, len(records))
    return {
        "success": wins / len(records), "wilson95": [lo, hi], "episodes": len(records),
        "success_per_seed": per_seed, "success_std_over_seeds": float(np.std(per_seed)),
        "seconds_per_plan": float(np.mean(seconds)) if seconds else 0.0,
        "seconds_per_env_step": acting / (budget * len(records)),
        "plans": len(seconds), "rollouts_per_plan": float(np.mean(rollouts)) if rollouts else 0.0,
        "mean_final_distance": float(np.mean([r["final_distance"] for r in records])),
        "clamped_actions": int(sum(r["clamped"] for r in records)),
        "closed_loop_position_error": float(np.mean(position_errors)) if position_errors else None,
        "wall_seconds": time.perf_counter() - start, "records": records, "shown": shown,
    }
