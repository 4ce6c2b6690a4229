"""The oracle's model of Push-T: the planner's candidates played on a private copy of the true physics, one after
another (gym-pusht has no batched simulator), scored on the true pose. What it plans is the upper bound of a world
model planned with the same planner, budget and protocol: it separates what the planner can reach from what the
world model and its latents lose."""
from __future__ import annotations

import numpy as np
import torch


class PushTOracle:
    """States are the true pose (pusher x, y, block x, y in table units, then the block's angle scaled so that the
    pose rule's 20 degrees weigh what its 20 pixels do), so the Euclidean distance to the goal's is the pose rule's
    two tolerances on one scale. Each rollout starts from the full physical state the env was in when last observed
    (positions and velocities), held apart from the env, and steps the physics as gym-pusht's step does, without the
    rendering and coverage it also computes every step (the oracle's whole cost). From rest it imagines exactly what
    the env does; mid-push the contact impulses the physics carries from step to step stay behind (pymunk cannot
    copy a space with gym-pusht's collision handler), a few hundredths of a pixel."""

    context = 1

    def __init__(self, env, frameskip: int = 1) -> None:
        self.env = env  # the jepa_control PushT adapter
        self.frameskip = frameskip  # env steps per imagined state: the world model's, to plan as it does
        self.sim = env.make_pusht()
        self.sim.reset(seed=0)
        self.angle_scale = env.ANGLE_SCALE
        self.snapshot = None

    def pose(self, pusher, block_position, block_angle: float) -> torch.Tensor:
        return self.scaled(np.array([*pusher, *block_position, block_angle], np.float64))

    def scaled(self, poses: np.ndarray) -> torch.Tensor:
        """Physical states [..., 5] (table pixels, radians) -> the oracle's states: table units, the angle scaled."""
        return torch.from_numpy(np.concatenate([poses[..., :4] / 512, poses[..., 4:] * self.angle_scale], -1)).float()

    def observe(self, obs: np.ndarray, info: dict) -> torch.Tensor:
        agent, block = self.env.env.agent, self.env.env.block
        self.snapshot = (tuple(agent.position), tuple(agent.velocity), tuple(block.position), float(block.angle),
                         tuple(block.velocity), float(block.angular_velocity))
        return self.pose(agent.position, block.position, block.angle)

    def goal(self, goal_obs: np.ndarray, info: dict) -> torch.Tensor:
        block, pusher = self.env.target(), self.env.goal_pusher_position()
        return self.pose(pusher, block[:2], float(block[2]))

    def position(self, states: torch.Tensor) -> torch.Tensor:
        return states[..., :2]

    def restore(self) -> None:
        agent, block = self.sim.agent, self.sim.block
        agent.position, agent.velocity = self.snapshot[0], self.snapshot[1]
        block.angle, block.position = self.snapshot[3], self.snapshot[2]
        block.velocity, block.angular_velocity = self.snapshot[4], self.snapshot[5]

    def pusher_velocities(self, actions: np.ndarray) -> np.ndarray:
        """The pusher's velocity at every physics step [S, T * repeat * substeps, 2] under env-step actions [S, T, 2]:
        gym-pusht's PD step, batched over the candidates. The pusher is kinematic (contacts never move it), so its
        path is the same whatever the block does and only the block needs the physics, one candidate at a time."""
        sim, env = self.sim, self.env
        position = np.tile(np.asarray(self.snapshot[0], np.float64), (len(actions), 1))
        velocity = np.tile(np.asarray(self.snapshot[1], np.float64), (len(actions), 1))
        out = []
        for t in range(actions.shape[1]):
            for _ in range(env.action_repeat):
                target = env.env_action(actions[:, t], position)  # float32, as the adapter hands gym-pusht
                for _ in range(int(1 / (sim.dt * sim.control_hz))):
                    velocity = velocity + (sim.k_p * (target - position) + sim.k_v * (0.0 - velocity)) * sim.dt
                    position = position + velocity * sim.dt  # the physics' own update of a kinematic body
                    out.append(velocity)
        return np.stack(out, 1)

    def simulate(self, actions: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The physical state after every `frameskip` of the env-step actions [S, T, 2] from the last observed state:
        (pusher x, y, block x, y, angle) in table pixels and radians [S, T / frameskip, 5], and the pusher's velocity
        [S, T / frameskip, 2] in table pixels per second."""
        actions = np.clip(actions.detach().numpy(), self.env.action_low, self.env.action_high)
        velocities = self.pusher_velocities(actions)
        per_step = velocities.shape[1] // actions.shape[1] * self.frameskip
        steps = actions.shape[1] // self.frameskip
        sim, poses = self.sim, np.empty((len(actions), steps, 5))
        for s, sequence in enumerate(velocities.tolist()):
            self.restore()
            for k, velocity in enumerate(sequence, 1):
                sim.agent.velocity = velocity
                sim.space.step(sim.dt)
                if k % per_step == 0:
                    poses[s, k // per_step - 1] = (*sim.agent.position, *sim.block.position, sim.block.angle)
        return poses, velocities[:, per_step - 1::per_step][:, :steps]

    def rollout(self, states: torch.Tensor, actions_between: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The true poses [S, T / frameskip, 5] after env-step actions [S, T, 2] from the last observed state."""
        return self.scaled(self.simulate(actions)[0])


class PushTLatentOracle:
    """The true physics scored by a world model's own cost: each imagined state is the frame the env would show
    there (with the pusher's position and velocity where the model reads them), encoded by the world model. Beside
    PushTOracle it says how far the latents' goal distance, given perfect dynamics, takes the same planner: what the
    world model's encoder and cost allow, apart from its predictor."""

    context = 1

    def __init__(self, env, latent_model) -> None:
        self.env, self.latent = env, latent_model  # latent_model: mpc.LatentModel of the world model
        self.physics = PushTOracle(env, latent_model.frameskip)
        self.frameskip = latent_model.frameskip

    def observe(self, obs: np.ndarray, info: dict) -> torch.Tensor:
        self.physics.observe(obs, info)
        return self.latent.observe(obs, info)

    def goal(self, goal_obs: np.ndarray, info: dict) -> torch.Tensor:
        return self.latent.goal(goal_obs, info)

    def rollout(self, states: torch.Tensor, actions_between: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The world model's states [S, T / frameskip, N, D] of the frames the env shows after the actions."""
        poses, velocities = self.physics.simulate(actions)
        frames = np.stack([self.env.render_state(pose[2:], pose[:2]) for pose in poses.reshape(-1, 5)])
        proprio = np.concatenate([poses[..., :2] / 512, self.env.pusher_velocity(velocities)], -1)
        frames = torch.from_numpy(frames).reshape(*poses.shape[:2], *frames.shape[1:])
        return self.latent.wm.encode(frames, torch.from_numpy(proprio).float())


class FramePixels:
    """Frames as their own states (the raw-pixels baseline of a latent cost): pixels in [0, 1], one token per pixel
    [H * W, C], read by PushTLatentOracle in place of a world model's encoding."""

    context = 1

    def __init__(self, frameskip: int) -> None:
        self.frameskip = frameskip
        self.wm = self  # PushTLatentOracle encodes with latent_model.wm.encode

    def encode(self, frames: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 frames [B, T, H, W, C] -> [B, T, H * W, C]."""
        return frames.flatten(2, 3).float() / 255

    def observe(self, obs: np.ndarray, info: dict) -> torch.Tensor:
        return self.encode(torch.as_tensor(obs)[None, None])[0, 0]

    def goal(self, goal_obs: np.ndarray, info: dict) -> torch.Tensor:
        return self.observe(goal_obs, info)
