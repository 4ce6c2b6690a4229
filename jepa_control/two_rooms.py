"""Two-rooms navigation: a dot moves in the unit square split by a wall with one door; pixels only.

The dynamics are batched torch code (`TwoRoomsSim.step`), so the oracle planner can roll out hundreds of action
sequences on the true simulator at once; `TwoRooms` wraps one episode behind the gymnasium-style interface every
environment of jepa_control/ follows (reset(seed) -> (obs, info), step(a) -> (obs, reward, terminated, truncated, info),
render()). A layout is the door's height, drawn from a layout id: training collects on ids < EVAL_LAYOUT_BASE,
evaluation uses ids from EVAL_LAYOUT_BASE on, so its doors are placed where no training trajectory saw one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from jepa.errors import ConfigError
from jepa_control.mpc import SimModel

EVAL_LAYOUT_BASE = 1_000_000
FLOOR, WALL, AGENT, GLOW = (20, 20, 30), (150, 150, 150), (230, 60, 40), (90, 90, 40)


@dataclass(frozen=True)
class TwoRoomsConfig:
    """Geometry (unit square), dynamics and rendering of the two-rooms env.

    Args:
        img_size: side of the square RGB observation in pixels.
        agent_radius: radius of the agent's disc.
        wall_half: half thickness of the middle wall (at x = 0.5).
        door_half: half height of the door.
        door_range: range of the door's centre height over layouts.
        max_step: displacement per step at |action| = 1 (actions live in [-1, 1]^2).
        success_radius: success when the final position is this close to the goal.
        max_steps: step budget of an episode.
        glow: width (std) of the light the agent carries: the floor brightens around it, so every patch of the
            frame shows where the agent is (0: a bare dot, whose frozen-encoder latent distances do not order
            positions; docs/control.md).
    """

    img_size: int = 64
    agent_radius: float = 0.06
    wall_half: float = 0.03
    door_half: float = 0.15
    door_range: tuple[float, float] = (0.3, 0.7)
    max_step: float = 0.1
    success_radius: float = 0.1
    max_steps: int = 40
    glow: float = 0.3


def door_of(layout: int, cfg: TwoRoomsConfig) -> float:
    """The door's centre height for a layout id (deterministic)."""
    lo, hi = cfg.door_range
    return float(lo + (hi - lo) * np.random.default_rng([layout, 17]).random())


class TwoRoomsSim:
    """Batched dynamics and rendering (torch, no gradients needed); positions are [..., 2] tensors (x, y)."""

    def __init__(self, cfg: TwoRoomsConfig = TwoRoomsConfig()) -> None:
        self.cfg = cfg
        s = cfg.img_size
        centres = (torch.arange(s, dtype=torch.float32) + 0.5) / s
        self._ys, self._xs = torch.meshgrid(centres, centres, indexing="ij")  # pixel row = y

    def blocked(self, pos: torch.Tensor, door: torch.Tensor) -> torch.Tensor:
        """Where a disc at pos overlaps the middle wall outside the door (door: matching leading shape)."""
        c = self.cfg
        in_slab = (pos[..., 0] - 0.5).abs() < c.wall_half + c.agent_radius
        in_door = (pos[..., 1] - door).abs() < c.door_half - c.agent_radius
        return in_slab & ~in_door

    def step(self, pos: torch.Tensor, action: torch.Tensor, door: torch.Tensor) -> torch.Tensor:
        """Next positions: move by action * max_step, stay inside the square; a move into the wall keeps its
        vertical part (sliding along the wall) or, if that is blocked too, does not happen."""
        c = self.cfg
        r = c.agent_radius
        target = (pos + action.clamp(-1, 1) * c.max_step).clamp(r, 1 - r)
        slide = torch.stack([pos[..., 0], target[..., 1]], -1)
        out = torch.where(self.blocked(target, door)[..., None], slide, target)
        return torch.where(self.blocked(out, door)[..., None], pos, out)

    def render(self, pos: torch.Tensor, door: torch.Tensor) -> torch.Tensor:
        """uint8 RGB frames [..., H, W, 3] of agents at pos in layouts with the given doors."""
        c = self.cfg
        lead = pos.shape[:-1]
        pos, door = pos.reshape(-1, 2), door.reshape(-1).expand(pos.reshape(-1, 2).shape[0])
        xs, ys = self._xs, self._ys
        wall = ((xs - 0.5).abs() < c.wall_half)[None] & ((ys[None] - door[:, None, None]).abs() >= c.door_half)
        border = 1.5 / c.img_size
        wall = wall | ((xs < border) | (xs > 1 - border) | (ys < border) | (ys > 1 - border))[None]
        agent = (xs[None] - pos[:, 0, None, None]) ** 2 + (ys[None] - pos[:, 1, None, None]) ** 2 <= c.agent_radius**2
        if c.glow > 0:  # the agent's lamp: floor brightness falls off with distance from it
            d2 = (xs[None] - pos[:, 0, None, None]) ** 2 + (ys[None] - pos[:, 1, None, None]) ** 2
            light = torch.exp(-d2 / (2 * c.glow**2))[..., None]
            floor = torch.tensor(FLOOR, dtype=torch.float32) + light * torch.tensor(GLOW, dtype=torch.float32)
            img = floor.round().clamp(0, 255).to(torch.uint8)
        else:
            img = torch.tensor(FLOOR, dtype=torch.uint8).expand(*wall.shape, 3).clone()
        img[wall] = torch.tensor(WALL, dtype=torch.uint8)
        img[agent] = torch.tensor(AGENT, dtype=torch.uint8)
        return img.reshape(*lead, c.img_size, c.img_size, 3)

    def sample_room(self, rng: np.random.Generator, side: int) -> np.ndarray:
        """A free position in the left (side 0) or right (side 1) room."""
        c = self.cfg
        lo = c.agent_radius
        x_hi = 0.5 - c.wall_half - c.agent_radius
        x = rng.uniform(lo, x_hi)
        return np.array([x if side == 0 else 1 - x, rng.uniform(lo, 1 - lo)], dtype=np.float32)


class TwoRooms:
    """One episode at a time: start in one room, goal in the other; observation = RGB uint8 [H, W, 3].

    reset(seed, options={"layout": id}) draws the layout (unless given), start and goal from the seed;
    info holds the true position, goal and door (never used by the model, only by the oracle and the metrics).
    Out-of-bounds actions are clamped and counted in info["clamped"].
    """

    name = "two_rooms"
    frame_extent = (0.0, 1.0, 1.0, 0.0)  # the unit square, y down as in the frame

    def __init__(self, cfg: TwoRoomsConfig = TwoRoomsConfig(), eval_layouts: bool = False) -> None:
        self.cfg, self.sim, self.eval_layouts = cfg, TwoRoomsSim(cfg), eval_layouts
        self.action_low, self.action_high = -np.ones(2, np.float32), np.ones(2, np.float32)
        self.max_steps, self.held_out_layouts = cfg.max_steps, eval_layouts
        self.success_rule = f"final distance < {cfg.success_radius}"
        self.pos = self.goal = None

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (self.cfg.img_size, self.cfg.img_size, 3)

    def reset(self, seed: int | None = None, options: dict | None = None):
        rng = np.random.default_rng(seed)
        layout = (options or {}).get("layout")
        if layout is None:
            span = EVAL_LAYOUT_BASE
            layout = int(rng.integers(0, span)) + (EVAL_LAYOUT_BASE if self.eval_layouts else 0)
        self.layout, self.door = int(layout), door_of(int(layout), self.cfg)
        side = int(rng.integers(0, 2))
        self.pos = self.sim.sample_room(rng, side)
        self.goal = self.sim.sample_room(rng, 1 - side)
        self.t, self.clamped = 0, 0
        return self.render(), self.info()

    def info(self) -> dict:
        distance = float(np.linalg.norm(self.pos - self.goal))
        return {"pos": self.pos.copy(), "goal": self.goal.copy(), "door": self.door, "layout": self.layout,
                "clamped": self.clamped, "distance": distance, "success": distance < self.cfg.success_radius}

    def step(self, action):
        if self.pos is None:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != (2,):
            raise ConfigError(f"two_rooms actions have 2 components, got shape {tuple(action.shape)}")
        clipped = np.clip(action, self.action_low, self.action_high)
        self.clamped += int(not np.array_equal(clipped, action))
        self.pos = self.sim.step(torch.from_numpy(self.pos), torch.from_numpy(clipped),
                                 torch.tensor(self.door)).numpy()
        self.t += 1
        info = self.info()
        return self.render(), float(-info["distance"]), False, self.t >= self.cfg.max_steps, info

    def render(self) -> np.ndarray:
        return self.sim.render(torch.from_numpy(self.pos), torch.tensor(self.door)).numpy()

    def goal_state(self) -> np.ndarray:
        """The current state as a goal (the offline-goal protocol): the agent's position in this layout."""
        return self.pos.copy()

    def set_goal(self, state: np.ndarray) -> dict:
        """Make `state` (from goal_state()) this episode's goal; returns the updated info."""
        self.goal = np.asarray(state, np.float32).copy()
        return self.info()

    def goal_observation(self) -> np.ndarray:
        """What the agent would see standing on the goal: the image the planner is given as its target."""
        return self.sim.render(torch.from_numpy(self.goal), torch.tensor(self.door)).numpy()

    def oracle_model(self, frameskip: int = 1):
        """The batched simulator as the oracle's world model (true positions, true dynamics, a state per env step)."""
        if frameskip != 1:
            raise ConfigError(f"the two-rooms oracle imagines every env step: frameskip {frameskip} is not supported")
        return SimModel(self.sim)
