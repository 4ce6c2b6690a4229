"""Push-T (gym-pusht) behind the interface of jepa_control/envs.py, with what every gymnasium adapter adds
(jepa_control/gym_envs.py): a round pusher must push a T-shaped block onto a goal pose. Install with
`pip install -e '.[control]'`."""
from __future__ import annotations

import numpy as np

from jepa.errors import ConfigError
from jepa_control.gym_envs import GymAdapter, import_gymnasium
from jepa_control.push_t_oracle import PushTLatentOracle, PushTOracle


class PushT(GymAdapter):
    """Push-T (gym-pusht): a round pusher must push a T-shaped block onto the goal pose drawn in the frame.
    Actions move the pusher's PD target relative to where it is (by up to `reach` pixels of the 512-pixel table
    per axis), so the same action means the same push everywhere. Positions are in table units (pixels / 512).

    success: "coverage", gym-pusht's rule: the block covers > 95 % of the goal region (distance = 1 - coverage);
    or "pose", the rule of DINO-WM and stable-worldmodel (whose Push-T figures the offline-goal protocol compares
    with): the pusher and the block's centre together within 20 table pixels of the goal state's (the norm of the
    4-D difference; the block alone when the goal records no pusher, as the env's own draw does) and the block
    turned less than 20 degrees from it (distance = that norm in table units).

    An offline goal (set_goal) is kept beside the env, never drawn: every frame shows gym-pusht's own goal region
    where the collected frames show it, so a world model meets no region it never saw, and the goal image shows the
    goal state itself (block and pusher where they were)."""

    name = "push_t"
    frame_extent = (0.0, 1.0, 1.0, 0.0)  # the table in table units, y down as in the frame
    SUCCESS_RULES = {"coverage": "final coverage of the goal by the block > 0.95 (Push-T's rule)",
                     "pose": "final pusher and block within 20 table px of the goal state's, block within 20 degrees "
                             "(DINO-WM's and stable-worldmodel's rule)"}
    POSE_PIXELS, POSE_RADIANS = 20.0, np.pi / 9
    ANGLE_SCALE = (POSE_PIXELS / 512) / POSE_RADIANS  # table units per radian: 20 degrees weigh what 20 px do
    CONTACT_PIXELS, CONTACT_RADIANS = 0.5, 0.005  # a block pose change above these (table pixels, radians) is a push

    def __init__(self, img_size: int = 64, action_repeat: int = 1, max_steps: int = 100, reach: float = 64.0,
                 success: str = "coverage", **_) -> None:
        if success not in self.SUCCESS_RULES:
            raise ConfigError(f"push_t success = {success!r}: choose one of {', '.join(self.SUCCESS_RULES)}")
        self.success, self.success_rule = success, self.SUCCESS_RULES[success]
        self.goal_pose, self.goal_pusher = None, None  # an offline goal's block pose and pusher; None: the env's own
        gym = import_gymnasium()
        import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)

        self.gym, self.reach = gym, reach
        self.env, self.goal_env = self.make_pusht(img_size), self.make_pusht(img_size)
        self.goal_env.reset(seed=0)  # its physics set up before render_state first places bodies in it
        super().__init__(img_size, action_repeat, max_steps)

    def make_pusht(self, img_size: int | None = None):
        """A gym-pusht env of this adapter's frame size (its physics also serve the oracle, push_t_oracle.py)."""
        size = img_size or self.img_size
        return self.gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", observation_width=size,
                             observation_height=size).unwrapped

    def env_action(self, action: np.ndarray, pusher=None) -> np.ndarray:
        """The pusher's PD target: `reach` table pixels per unit of action from the pusher (the env's, or `pusher`)."""
        target = np.asarray(self.env.agent.position if pusher is None else pusher) + self.reach * action
        return np.clip(target, 0.0, 512.0).astype(np.float32)

    def oracle_model(self, frameskip: int = 1):
        """The true physics as the oracle's world model, a state every `frameskip` env steps (push_t_oracle.py)."""
        return PushTOracle(self, frameskip)

    def latent_oracle_model(self, latent_model):
        """The true physics scored on a world model's encoding of the frames it would show (push_t_oracle.py)."""
        return PushTLatentOracle(self, latent_model)

    def step(self, action):
        """One step, with info["contact"]: whether the block moved (the pusher touched it: the interactions a
        world model of Push-T must see in its data)."""
        before = self.goal_state()
        obs, reward, terminated, truncated, info = super().step(action)
        moved = self.goal_state() - before
        info["contact"] = bool(np.hypot(*moved[:2]) > self.CONTACT_PIXELS or abs(moved[2]) > self.CONTACT_RADIANS)
        return obs, reward, terminated, truncated, info

    def ends_episode(self, wrapped_terminated: bool) -> bool:
        """This env's success rule, against the offline goal where there is one: gym-pusht's own termination
        knows only its drawn region."""
        return bool(self.measure()[3])

    def render(self) -> np.ndarray:
        return np.ascontiguousarray(self.env._render(visualize=False))

    def target(self) -> np.ndarray:
        """The goal block pose (x, y, angle) in table pixels: the offline goal's, else the env's drawn region."""
        return np.asarray(self.env.goal_pose if self.goal_pose is None else self.goal_pose, np.float64)

    def goal_observation(self) -> np.ndarray:
        """The frame of the goal state, rendered in a second env: the block on the goal pose and the pusher on the
        goal's pusher (where it is now when the goal has none, as the env's own goal), one physics step taken after
        placing them (gym-pusht's own reset_to_state places the block before turning it, which about its centre of
        gravity leaves it off the goal: 30 % coverage instead of 100 %)."""
        goal, block, pusher = self.goal_env, self.target(), self.goal_pusher_position()
        goal.reset(options={"reset_to_state": [*pusher, *block]})
        self.place(goal, block, pusher)
        goal.space.step(goal.dt)
        return np.ascontiguousarray(goal._render(visualize=False))

    def render_state(self, block: np.ndarray, pusher: np.ndarray) -> np.ndarray:
        """The frame this env shows with the block at pose `block` (x, y, angle) and the pusher at `pusher` (table
        pixels), rendered in the goal image's env. Unlike the goal image it steps no physics (which would resolve a
        pusher pressed into the block): the frame of the state itself, as the env shows it mid-push."""
        view = self.goal_env
        self.place(view, block, pusher)
        view.space.reindex_shapes_for_body(view.agent)
        view.space.reindex_shapes_for_body(view.block)
        return np.ascontiguousarray(view._render(visualize=False))

    def place(self, view, block: np.ndarray, pusher: np.ndarray) -> None:
        """Put `view`'s pusher and block at `pusher` and the pose `block`, the block turned before it is placed
        (turned after, about its centre of gravity, it would leave the pose), under gym-pusht's drawn region where
        every frame has it."""
        view.goal_pose = np.asarray(self.env.goal_pose, np.float64).copy()
        view.agent.position = [float(v) for v in pusher[:2]]
        view.block.angle = float(block[2])
        view.block.position = [float(v) for v in block[:2]]

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.goal_pose, self.goal_pusher = None, None  # the env's own goal is its drawn block pose
        return super().reset(seed, options)

    def goal_state(self) -> np.ndarray:
        """The block's pose (x, y, angle) and the pusher's position (x, y), in table pixels: Push-T's goal region is
        the block pose; the pose rule also compares the pusher."""
        block, pusher = self.env.block, self.env.agent
        return np.array([*block.position, block.angle, *pusher.position], np.float64)

    def goal_pusher_position(self) -> np.ndarray:
        """Where the goal puts the pusher (table pixels): the goal state's, or where it is now when the goal has
        none (the env's own goal, a block pose only)."""
        return np.asarray(self.env.agent.position if self.goal_pusher is None else self.goal_pusher, np.float64)

    def info(self) -> dict:
        """The adapter's info, and the proprioception a world model reads: the pusher's position, then its velocity
        in table units per step (DINO-WM's Push-T proprio: two frames 5 steps apart leave open how fast the pusher
        moves now); the goal's is where the goal puts the pusher, at rest, as the goal image shows it."""
        info = self.with_velocity(super().info(), self.pusher_velocity(self.env.agent.velocity),
                                  self.goal_pusher_position() / 512)
        return {**info, "state": self.pose_features(self.goal_state()[[3, 4, 0, 1, 2]])}

    def pose_features(self, poses: np.ndarray) -> np.ndarray:
        """Poses [..., 5] (pusher x, y, block x, y in table pixels, block angle in radians) -> [..., 6]: table units,
        then the angle's cosine and sine scaled so the pose rule's 20 degrees weigh what its 20 pixels do (the chord
        stands in for the angle, and a turn by a whole circle is no turn). Euclidean distances between them are the
        pose rule's two tolerances on one scale: what a state read-out learns and the pose cost compares."""
        poses = np.asarray(poses, np.float64)
        return np.concatenate([poses[..., :4] / 512, self.ANGLE_SCALE * np.cos(poses[..., 4:5]),
                               self.ANGLE_SCALE * np.sin(poses[..., 4:5])], -1).astype(np.float32)

    def pusher_velocity(self, velocity) -> np.ndarray:
        """The pusher's velocity [..., 2] in table pixels per second (the physics') -> table units per env step."""
        return np.asarray(velocity, np.float64) / (self.env.control_hz * 512)

    def set_goal(self, state: np.ndarray) -> dict:
        """The block pose becomes the goal that coverage and the pose rule judge, and the pusher's position, where
        the state has one, what the pose rule compares the pusher with. Neither is drawn (the class says why)."""
        state = np.asarray(state, np.float64)
        self.goal_pose = state[:3].copy()
        self.goal_pusher = state[3:5].copy() if len(state) >= 5 else None
        return self.info()

    def coverage(self) -> float:
        """The fraction of the goal region the block covers (gym-pusht's measure, on the goal block pose)."""
        drawn = self.env.goal_pose
        self.env.goal_pose = self.target()
        try:
            return float(self.env._get_coverage())
        finally:
            self.env.goal_pose = drawn

    def measure(self):
        target = self.target()
        pos, goal = np.asarray(self.env.agent.position, np.float64) / 512, target[:2] / 512
        if self.success == "coverage":
            coverage = self.coverage()
            return pos, goal, 1.0 - coverage, coverage > 0.95
        now = self.goal_state()
        offsets = [now[:2] - target[:2]] + ([now[3:5] - self.goal_pusher] if self.goal_pusher is not None else [])
        off = float(np.linalg.norm(np.concatenate(offsets)))
        turn = abs(now[2] - target[2]) % (2 * np.pi)
        turn = min(turn, 2 * np.pi - turn)
        return pos, goal, off / 512, off < self.POSE_PIXELS and turn < self.POSE_RADIANS

    def close(self) -> None:
        self.env.close()
        self.goal_env.close()
