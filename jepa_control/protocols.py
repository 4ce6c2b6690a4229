"""Where an evaluation episode starts and what its goal is.

- `random_goal`: the environment's own reset draws start and goal (two-rooms: start in one room, goal in the
  other; PointMaze / Reacher / Push-T: their envs' draws). The harder protocol: the goal may be far and need a way
  round walls.
- `offline_goal`: the protocol DINO-WM and the stable-worldmodel baselines report. Start and goal are two states of
  one held-out trajectory `goal_offset` env steps apart: the trajectory is rolled out by the collection policy from
  the episode's reset, its state after `goal_offset` steps becomes the goal, and the env is reset to the start. The
  goal is therefore reachable by construction (replaying the trajectory's own actions reaches it: the
  "trajectory replay" row checks that) and lies where the data go.

Both give the same start and goal for episode (seed, i), whatever agent runs it: every agent meets the same
episodes.
"""
from __future__ import annotations

import numpy as np

from jepa.errors import ConfigError

PROTOCOLS = ("offline_goal", "random_goal")


class RandomGoal:
    """Start and goal as the environment's reset draws them."""

    name = "random_goal"

    def start(self, env, seed: int) -> tuple[np.ndarray, dict]:
        """(first observation, info)."""
        return env.reset(seed=seed)


class OfflineGoal:
    """Goal = the state `goal_offset` env steps along a held-out trajectory of the collection `policy` that starts
    at the episode's reset state. Needs the env's goal_state() / set_goal(state) (every env of jepa_control has
    them): a snapshot of what defines success, and making it the episode's goal (its goal image included)."""

    name = "offline_goal"

    def __init__(self, goal_offset: int = 25, policy: str = "noisy") -> None:
        if goal_offset < 1:
            raise ConfigError(f"--goal_offset must be >= 1, got {goal_offset}")
        self.goal_offset, self.policy = goal_offset, policy

    def start(self, env, seed: int) -> tuple[np.ndarray, dict]:
        """(first observation, info); info["trajectory_actions"] holds the actions from start to goal (read only
        by the trajectory replay)."""
        from jepa_control.collect import make_policy, rollout

        policy = make_policy(self.policy, env, np.random.default_rng([seed, 7]))
        trajectory = rollout(env, policy, self.goal_offset, seed)  # leaves the env at the trajectory's last state
        goal = env.goal_state()
        obs, _ = env.reset(seed=seed)  # deterministic: the trajectory's first state again
        info = {**env.set_goal(goal), "trajectory_actions": trajectory["actions"]}
        return obs, info


def make_protocol(name: str, goal_offset: int = 25, policy: str = "noisy"):
    if name == "offline_goal":
        return OfflineGoal(goal_offset, policy)
    if name == "random_goal":
        return RandomGoal()
    raise ConfigError(f"--protocol {name!r}: choose one of {', '.join(PROTOCOLS)}")


def after_holding_still(actions, budget: int) -> np.ndarray:
    """Zero actions for the rest of the budget, then `actions` [T, A]: the sequence ends on the budget's last step,
    so an agent still moving when the actions leave it on the goal (Reacher's mid-swing goal states) is judged
    there, not after drifting on."""
    actions = np.asarray(actions, np.float32)
    rest = np.zeros((max(0, budget - len(actions)), actions.shape[1]), np.float32)
    return np.concatenate([rest, actions])


class ReplayAgent:
    """Holds still (zero action) for budget - goal_offset steps, then replays the offline-goal trajectory's own
    actions (info["trajectory_actions"]), so its final state is the goal's when the env is deterministic and
    starts at rest: it checks the protocol, not a planner."""

    def __init__(self, action_dim: int, budget: int) -> None:
        self.action_dim, self.budget = action_dim, budget
        self.plan_seconds: list[float] = []
        self.rollouts: list[int] = []

    def reset(self, goal_obs, info: dict) -> None:
        actions = info.get("trajectory_actions")
        if actions is None:
            raise ConfigError("the trajectory replay needs --protocol offline_goal")
        self.queue = list(after_holding_still(actions, self.budget))

    def act(self, obs, info) -> np.ndarray:
        return self.queue.pop(0) if self.queue else np.zeros(self.action_dim, np.float32)
