"""Environments by name. Every environment follows gymnasium's interface (reset(seed, options) -> (obs, info),
step(action) -> (obs, reward, terminated, truncated, info), render()) and adds what planning needs:
action_low / action_high, observation_shape, goal_observation() and, in info, "pos", "goal" and "success"."""
from __future__ import annotations

from jepa.errors import ConfigError

ENVS = ("two_rooms",)


def make_env(name: str, eval_layouts: bool = False, **kwargs):
    """An environment by name; eval_layouts=True draws the held-out layouts used for evaluation."""
    if name == "two_rooms":
        from control.two_rooms import TwoRooms, TwoRoomsConfig

        return TwoRooms(TwoRoomsConfig(**kwargs), eval_layouts=eval_layouts)
    raise ConfigError(f"unknown environment {name!r}: use one of {', '.join(ENVS)}")
