"""Gymnasium environments behind the interface of jepa_control/envs.py: PointMaze (gymnasium-robotics + MuJoCo) and
Reacher-v5 (gymnasium + MuJoCo) here, Push-T (gym-pusht) in jepa_control/push_t_env.py. Install with
`pip install -e '.[control]'`.

What every adapter adds to the wrapped env:
- observations are RGB uint8 [img_size, img_size, 3] frames, nothing else (the world model sees pixels only);
- actions live in [-1, 1]^A; out-of-bound actions are clamped and counted in info["clamped"], then mapped to the
  env's own action space and repeated `action_repeat` times;
- goal_observation(): the frame the agent would see with the goal reached, rendered on the true state (the
  planner's goal image), leaving the episode's state untouched;
- info["pos"] (the controlled body's position, for the gate and the plots), info["goal"], info["distance"] and
  info["success"] (the env's own rule, judged on the final state by the protocol), max_steps (the step budget);
  where the position alone leaves the dynamics open, info["proprio"] (the position, then more: Reacher's joint
  velocities, Push-T's pusher velocity) and info["goal_proprio"] (the same for the goal).
There are no layouts to hold out here: evaluation episodes differ from collection by their seeds only.
"""
from __future__ import annotations

import os

import numpy as np

from jepa.errors import ConfigError

# headless rendering (docs/design.md): set before mujoco or pygame is imported
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def import_gymnasium():
    try:
        import gymnasium
    except ImportError as e:
        raise ConfigError("gymnasium environments need the control extra: pip install -e '.[control]'") from e
    return gymnasium


class GymAdapter:
    """Base adapter; subclasses build `self.env` (unwrapped) and say how to act, observe and judge."""

    held_out_layouts = False
    success_rule = ""

    def __init__(self, img_size: int, action_repeat: int, max_steps: int) -> None:
        if img_size < 8 or action_repeat < 1 or max_steps < 1:
            raise ConfigError(f"img_size >= 8, action_repeat >= 1 and max_steps >= 1 are required, got {img_size}, "
                              f"{action_repeat}, {max_steps}")
        self.img_size, self.action_repeat, self.max_steps = img_size, action_repeat, max_steps
        dim = self.env.action_space.shape[0]
        self.action_low, self.action_high = -np.ones(dim, np.float32), np.ones(dim, np.float32)
        self.started = False

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (self.img_size, self.img_size, 3)

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.env.reset(seed=seed, options=options)
        self.t, self.clamped, self.started = 0, 0, True
        return self.render(), self.info()

    def step(self, action):
        if not self.started:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != self.action_low.shape:
            raise ConfigError(f"{self.name} actions have {len(self.action_low)} components, got shape "
                              f"{tuple(action.shape)}")
        clipped = np.clip(action, self.action_low, self.action_high)
        self.clamped += int(not np.array_equal(clipped, action))
        reward, terminated = 0.0, False
        for _ in range(self.action_repeat):
            _, r, wrapped_terminated, _, _ = self.env.step(self.env_action(clipped))
            reward += float(r)
            terminated = self.ends_episode(wrapped_terminated)
            if terminated:
                break
        self.t += 1
        return self.render(), reward, bool(terminated), self.t >= self.max_steps, self.info()

    def ends_episode(self, wrapped_terminated: bool) -> bool:
        """Whether the episode ends after one step of the wrapped env (it then stops repeating the action): the
        wrapped env's own termination, unless a subclass judges it by its own rule."""
        return bool(wrapped_terminated)

    def info(self) -> dict:
        pos, goal, distance, success = self.measure()
        return {"pos": pos, "goal": goal, "distance": float(distance), "success": bool(success),
                "clamped": self.clamped, "layout": None}

    def close(self) -> None:
        self.env.close()

    @staticmethod
    def with_velocity(info: dict, velocity: np.ndarray, goal_position: np.ndarray) -> dict:
        """info with the proprioception a world model reads where frames a model step apart leave the motion open:
        "proprio", the agent's position then its velocity, and "goal_proprio", the goal position at rest (as the
        goal image shows it)."""
        return {**info, "proprio": np.concatenate([info["pos"], velocity]),
                "goal_proprio": np.concatenate([goal_position, np.zeros(len(velocity))])}

    # what subclasses provide
    name = ""

    def env_action(self, action: np.ndarray) -> np.ndarray:
        """[-1, 1]^A -> the wrapped env's action."""
        low, high = self.env.action_space.low, self.env.action_space.high
        return (low + (action + 1) * (high - low) / 2).astype(self.env.action_space.dtype)

    def render(self) -> np.ndarray:
        raise NotImplementedError

    def goal_observation(self) -> np.ndarray:
        raise NotImplementedError

    def goal_state(self) -> np.ndarray:
        """The current state as a goal (the offline-goal protocol): what the success rule compares against."""
        raise NotImplementedError

    def set_goal(self, state: np.ndarray) -> dict:
        """Make `state` (from goal_state()) this episode's goal, its goal image included; returns the info."""
        raise NotImplementedError

    def measure(self) -> tuple[np.ndarray, np.ndarray, float, bool]:
        raise NotImplementedError


class _MujocoAdapter(GymAdapter):
    """Renders with a top-down camera; the goal image sets the robot's joints to the goal, renders, restores."""

    def __init__(self, img_size: int, action_repeat: int, max_steps: int, camera: dict) -> None:
        super().__init__(img_size, action_repeat, max_steps)
        self.mujoco_env.mujoco_renderer.default_cam_config = camera
        # the top-down camera sees +-distance * tan(fovy / 2) around where it looks, x to the right and y up
        half = camera["distance"] * np.tan(np.radians(self.mujoco_env.model.vis.global_.fovy) / 2)
        x, y = camera["lookat"][:2]
        self.frame_extent = (x - half, x + half, y - half, y + half)

    @property
    def mujoco_env(self):
        return self.env

    def render(self) -> np.ndarray:
        return np.ascontiguousarray(self.mujoco_env.render())

    def goal_observation(self) -> np.ndarray:
        import mujoco

        env = self.mujoco_env
        qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
        joints = self.goal_joints()
        env.data.qpos[: len(joints)] = joints
        env.data.qvel[:] = 0
        mujoco.mj_forward(env.model, env.data)
        frame = self.render()
        env.data.qpos[:], env.data.qvel[:] = qpos, qvel
        mujoco.mj_forward(env.model, env.data)
        return frame

    def goal_joints(self) -> np.ndarray:
        raise NotImplementedError


class PointMaze(_MujocoAdapter):
    """PointMaze (gymnasium-robotics): a ball pushed by 2-D forces through a maze; start and goal cells drawn by
    the seed; success = final distance to the goal <= 0.45 (the env's own rule)."""

    name = "point_maze"
    success_rule = "final distance to the goal <= 0.45 (PointMaze's rule)"

    def __init__(self, maze: str = "UMaze", img_size: int = 64, action_repeat: int = 5, max_steps: int = 60,
                 camera_distance: float = 0.85, show_target: bool = False, **_) -> None:
        gym = import_gymnasium()
        import gymnasium_robotics
        import mujoco

        gym.register_envs(gymnasium_robotics)
        self.env = gym.make(f"PointMaze_{maze}-v3", render_mode="rgb_array", width=img_size, height=img_size,
                            continuing_task=True).unwrapped
        # camera_distance, in units of the maze's side: 0.85 frames the maze's walls, so the ball (radius 0.2) is
        # ~7 px across at 64 px; the env's own 1.25 left it ~3 px, too faint for a 4x4 token grid.
        side = max(len(self.env.maze.maze_map), len(self.env.maze.maze_map[0])) * self.env.maze.maze_size_scaling
        super().__init__(img_size, action_repeat, max_steps, {"distance": camera_distance * side, "elevation": -90.0,
                                                              "azimuth": 90.0, "lookat": np.zeros(3)})
        if not show_target:
            # The env draws a red goal marker over the ball's spot, so the goal image (ball on the goal) showed no
            # ball at all and the latent distance to it hardly depended on where the ball was. Pixels only: the
            # goal is given by the goal image, not painted into every frame.
            model = self.mujoco_env.model
            model.site_rgba[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "target"), 3] = 0.0

    @property
    def mujoco_env(self):
        return self.env.point_env

    def goal_joints(self) -> np.ndarray:
        return self.env.goal

    def goal_state(self) -> np.ndarray:
        return self.mujoco_env.data.qpos[:2].copy()

    def set_goal(self, state: np.ndarray) -> dict:
        self.env.goal = np.asarray(state, np.float64).copy()
        return self.info()

    def measure(self):
        pos, goal = self.mujoco_env.data.qpos[:2].copy(), self.env.goal.copy()
        distance = np.linalg.norm(pos - goal)
        return pos, goal, distance, distance <= 0.45


class Reacher(_MujocoAdapter):
    """Reacher-v5: a two-link arm whose fingertip must reach a target drawn by the seed; actions = joint torques
    (times `torque_scale`); success = final fingertip-target distance < `success_radius` (0.02 by default: twice
    the fingertip radius). torque_scale < 1 slows the arm: at full torque a random walk swings the fingertip
    ~0.03 m per Reacher-v5 step, farther than the 2-pixel-wide links at 64 x 64, so consecutive frames share no
    arm pixels; at 0.3 it moves ~0.015 m and still travels as far in 25 steps (full torque spins it round)."""

    name = "reacher"
    LINKS = (0.1, 0.11)  # shoulder-elbow and elbow-fingertip lengths of reacher.xml

    def __init__(self, img_size: int = 64, action_repeat: int = 2, max_steps: int = 25, success_radius: float = 0.02,
                 torque_scale: float = 1.0, **_) -> None:
        if not 0 < torque_scale <= 1:
            raise ConfigError(f"torque_scale must be in (0, 1], got {torque_scale}")
        gym = import_gymnasium()
        self.env = gym.make("Reacher-v5", render_mode="rgb_array", width=img_size, height=img_size).unwrapped
        self.success_radius, self.torque_scale = success_radius, torque_scale
        self.success_rule = f"final fingertip-target distance < {success_radius}"
        super().__init__(img_size, action_repeat, max_steps,
                         {"distance": 0.62, "elevation": -90.0, "azimuth": 90.0, "lookat": np.zeros(3)})

    def env_action(self, action: np.ndarray) -> np.ndarray:
        return super().env_action(action * self.torque_scale)

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.goal_pose = None  # (shoulder, elbow, fingertip x, y) of an offline goal; None: the env's target
        return super().reset(seed, options)

    def goal_state(self) -> np.ndarray:
        return np.concatenate([self.env.data.qpos[:2], self.env.get_body_com("fingertip")[:2]]).copy()

    def set_goal(self, state: np.ndarray) -> dict:
        """The arm's pose from goal_state() becomes the goal: success when the fingertip is where that pose put
        it (the env's target sphere stays where reset drew it, a static part of every frame)."""
        self.goal_pose = np.asarray(state, np.float64).copy()
        return self.info()

    def goal_joints(self) -> np.ndarray:
        """The elbow-down joint angles that put the fingertip on the target (two-link inverse kinematics), or the
        offline goal's own joints."""
        if self.goal_pose is not None:
            return self.goal_pose[:2]
        (l1, l2), target = self.LINKS, self.env.data.qpos[2:4]
        cos_elbow = (target @ target - l1**2 - l2**2) / (2 * l1 * l2)
        elbow = np.arccos(np.clip(cos_elbow, -1.0, 1.0))
        shoulder = np.arctan2(target[1], target[0]) - np.arctan2(l2 * np.sin(elbow), l1 + l2 * np.cos(elbow))
        return np.array([shoulder, elbow])

    def info(self) -> dict:
        """The adapter's info, and the proprioception a model with proprio_dim 4 reads: the fingertip (x, y), then
        the two joint velocities in radians per Reacher-v5 step (the arm's momentum, which frames 5 steps apart
        leave open); the goal's are the goal pose at rest, as the goal image shows it."""
        info = super().info()
        return self.with_velocity(info, self.env.data.qvel[:2] * self.env.dt, info["goal"])

    def measure(self):
        pos = self.env.get_body_com("fingertip")[:2].copy()
        goal = self.env.data.qpos[2:4].copy() if self.goal_pose is None else self.goal_pose[2:].copy()
        distance = np.linalg.norm(pos - goal)
        return pos, goal, distance, distance < self.success_radius

