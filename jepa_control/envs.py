"""Environments by name. Every environment follows gymnasium's interface (reset(seed, options) -> (obs, info),
step(action) -> (obs, reward, terminated, truncated, info), render()) and adds what planning and the evaluation
protocol need: action_low / action_high (actions live in [-1, 1]^A), observation_shape (RGB uint8 frames),
goal_observation(), max_steps (the step budget), success_rule and held_out_layouts (for the record),
frame_extent ((left, right, bottom, top) of a frame in info["pos"] units: the episode plots draw paths with it) and,
in info, "pos", "goal", "distance", "success" and "clamped" (out-of-bound actions clamped so far).

two_rooms is built in (jepa_control/two_rooms.py); point_maze, reacher and push_t adapt gymnasium environments
(jepa_control/gym_envs.py and push_t_env.py, the optional `control` extra)."""
from __future__ import annotations

import importlib

from jepa.errors import ConfigError

# the gymnasium adapters: module and class, imported only when built (they need the optional control extra)
GYM_ADAPTERS = {"point_maze": ("jepa_control.gym_envs", "PointMaze"), "reacher": ("jepa_control.gym_envs", "Reacher"),
                "push_t": ("jepa_control.push_t_env", "PushT")}
ENVS = ("two_rooms", *GYM_ADAPTERS)


def make_env(name: str, eval_layouts: bool = False, **kwargs):
    """An environment by name; eval_layouts=True draws the held-out layouts used for evaluation (two_rooms; the
    gymnasium environments have no layouts to hold out)."""
    if name == "two_rooms":
        from jepa_control.two_rooms import TwoRooms, TwoRoomsConfig

        return TwoRooms(TwoRoomsConfig(**kwargs), eval_layouts=eval_layouts)
    if name in GYM_ADAPTERS:
        module, cls = GYM_ADAPTERS[name]
        return getattr(importlib.import_module(module), cls)(**kwargs)
    raise ConfigError(f"unknown environment {name!r}: use one of {', '.join(ENVS)}")
