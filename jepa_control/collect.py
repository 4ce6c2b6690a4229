"""Roll out policies in an environment and store trajectories (frames, actions, true positions) in tar shards.

Each shard sample is one episode: frames.npy uint8 [T+1, H, W, 3], actions.npy float32 [T, A] (action t leads from
frame t to t+1, after clamping to the bounds) and proprio.npy float32 [T+1, P] = the agent's true position (x, y),
then whatever else its adapter reports as info["proprio"] (Reacher: the joint velocities). The position probe (the
gate) and the metrics read the position (`positions`); only world models with proprioception (proprio_scale) read
the rest. Where the adapter reports the env's true state (info["state"], Push-T: the pusher's and the block's
pose), state.npy float32 [T+1, S] holds it: what a world model's state read-out learns from (never its input).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from jepa.errors import ConfigError

POLICIES = ("random", "noisy", "seek", "push", "plan")


class RandomPolicy:
    """Uniform actions in the bounds, independent per step."""

    def __init__(self, low, high, rng: np.random.Generator) -> None:
        self.low, self.high, self.rng = np.asarray(low), np.asarray(high), rng

    def reset(self, env, info: dict) -> None:
        pass

    def act(self, obs, info) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


class NoisyPolicy(RandomPolicy):
    """A persistent random walk in action space (a_t = rho a_{t-1} + noise): it travels far enough to find the
    door, which independent uniform actions rarely do."""

    def __init__(self, low, high, rng: np.random.Generator, rho: float = 0.8, noise: float = 0.5) -> None:
        super().__init__(low, high, rng)
        self.rho, self.noise = rho, noise

    def reset(self, env, info: dict) -> None:
        self.prev = self.rng.uniform(self.low, self.high)

    def act(self, obs, info) -> np.ndarray:
        self.prev = np.clip(self.rho * self.prev + self.noise * self.rng.standard_normal(self.prev.shape)
                            + self.drift(info), self.low, self.high)
        return self.prev.astype(np.float32)

    def drift(self, info: dict) -> np.ndarray | float:
        return 0.0


class SeekPolicy(NoisyPolicy):
    """The persistent random walk pulled towards the episode's goal (a_t = rho a_{t-1} + noise + pull * unit vector
    to the goal): it runs into the wall on its way and slides along it, so the data hold the states where planning
    fails (pressed against the wall near the door), which an unbiased random walk rarely visits. It reads the
    true position and goal from info, like the oracle: a data-collection policy, never the model's input."""

    def __init__(self, low, high, rng: np.random.Generator, pull: float = 0.2, **walk) -> None:
        super().__init__(low, high, rng, **walk)
        self.pull = pull

    def drift(self, info: dict) -> np.ndarray:
        towards = np.asarray(info["goal"], np.float64) - np.asarray(info["pos"], np.float64)
        return self.pull * towards / max(np.linalg.norm(towards), 1e-9)


class PushPolicy:
    """Push-T: approach the block from a random side and push through its centre, again and again (with action
    noise), so the data hold contacts that move and turn the block, which a random walk of the pusher rarely makes.
    Reads the true block pose from the env, like the seek policy reads the goal: a data-collection policy, never
    the model's input. Each push: a random direction d; go to the point `standoff` table pixels before the block's
    centre along d; push along d for `push_steps` steps (past the centre, so the block moves); repeat."""

    def __init__(self, low, high, rng: np.random.Generator, standoff: float = 90.0, push_steps: int = 4,
                 noise: float = 0.2) -> None:
        self.low, self.high, self.rng = np.asarray(low), np.asarray(high), rng
        self.standoff, self.push_steps, self.noise = standoff, push_steps, noise

    def reset(self, env, info: dict) -> None:
        if not hasattr(env, "reach") or not hasattr(env.env, "block"):
            raise ConfigError("the push policy drives Push-T's pusher into its block: use --env push_t")
        self.env, self.phase, self.left = env, "approach", 0
        self.direction = self._new_direction()

    def _new_direction(self) -> np.ndarray:
        angle = self.rng.uniform(0, 2 * np.pi)
        return np.array([np.cos(angle), np.sin(angle)])

    def act(self, obs, info) -> np.ndarray:
        pusher = np.asarray(self.env.env.agent.position, np.float64)
        block = np.asarray(self.env.env.block.position, np.float64)
        if self.phase == "approach":
            target = np.clip(block - self.standoff * self.direction, 20, 492)
            if np.linalg.norm(target - pusher) < 0.5 * self.env.reach:
                self.phase, self.left = "push", self.push_steps
            move = (target - pusher) / self.env.reach
        else:
            move = self.direction.copy()
            self.left -= 1
            if self.left <= 0:
                self.phase, self.direction = "approach", self._new_direction()
        action = move + self.noise * self.rng.standard_normal(2)
        return np.clip(action, self.low, self.high).astype(np.float32)


class PlanPolicy:
    """The current planner (any agent with reset(goal_obs, info) / act(obs, info), e.g. MPCAgent on a world model)
    driving to each episode's goal: the "act" of the seed's act-store-retrain loop. `noise` adds Gaussian
    exploration noise (std, in action units) to every action."""

    def __init__(self, agent, low, high, rng: np.random.Generator, noise: float = 0.0) -> None:
        self.agent, self.low, self.high, self.rng, self.noise = agent, np.asarray(low), np.asarray(high), rng, noise

    def reset(self, env, info: dict) -> None:
        self.agent.reset(env.goal_observation(), info)

    def act(self, obs, info) -> np.ndarray:
        action = np.asarray(self.agent.act(obs, info), np.float32)
        if self.noise:
            action = action + self.noise * self.rng.standard_normal(action.shape).astype(np.float32)
        return np.clip(action, self.low, self.high)


def make_policy(name: str, env, rng: np.random.Generator, agent=None, noise: float = 0.0):
    if name == "random":
        return RandomPolicy(env.action_low, env.action_high, rng)
    if name == "noisy":
        return NoisyPolicy(env.action_low, env.action_high, rng)
    if name == "seek":
        return SeekPolicy(env.action_low, env.action_high, rng)
    if name == "push":
        return PushPolicy(env.action_low, env.action_high, rng)
    if name == "plan":
        if agent is None:
            raise ConfigError("the plan policy needs a planning agent (jepa collect --policy plan --world_model CKPT)")
        return PlanPolicy(agent, env.action_low, env.action_high, rng, noise)
    raise ConfigError(f"unknown policy {name!r}: use one of {', '.join(POLICIES)}")


def rollout(env, policy, steps: int, seed: int, goals=None) -> dict[str, np.ndarray]:
    """One episode of `steps` actions (the env's own step budget is ignored: collection wants fixed lengths);
    "contacts" counts the steps whose info said "contact" (Push-T: the block moved). `goals`, a protocol of
    jepa_control.protocols, starts the episode and sets its goal (None: the env's own reset and goal); the
    offline-goal protocol gives a planning policy the goals it is evaluated on, so the data hold the sequences it
    picks for them and what they really do."""
    obs, info = env.reset(seed=seed) if goals is None else goals.start(env, seed)
    policy.reset(env, info)
    frames, actions, proprio, contacts = [obs], [], [info.get("proprio", info["pos"])], 0
    states = [info["state"]] if "state" in info else None
    for _ in range(steps):
        action = np.clip(policy.act(obs, info), env.action_low, env.action_high)
        obs, _, _, _, info = env.step(action)
        frames.append(obs)
        actions.append(action)
        proprio.append(info.get("proprio", info["pos"]))
        if states is not None:
            states.append(info["state"])
        contacts += bool(info.get("contact", False))
    out = {"frames": np.stack(frames).astype(np.uint8), "actions": np.stack(actions).astype(np.float32),
           "proprio": np.stack(proprio).astype(np.float32), "contacts": contacts}
    if states is not None:
        out["state"] = np.stack(states).astype(np.float32)
    return out


def collect_episode(env, policy_name: str, steps: int, seed: int, i: int, agent=None, noise: float = 0.0,
                    goals=None) -> dict:
    """Episode i under `seed`: its reset seed and its policy's randomness depend on (seed, i) only, so episodes
    can be collected in any order and by any process and come out the same."""
    policy = make_policy(policy_name, env, np.random.default_rng([seed, i, 1]), agent, noise)
    return rollout(env, policy, steps, seed=int(np.random.default_rng([seed, i]).integers(2**31)), goals=goals)


def collect(env, policy_name: str, episodes: int, steps: int, seed: int = 0, agent=None, noise: float = 0.0,
            goals=None):
    """Yield (episode index, trajectory) for `episodes` rollouts (collect_episode).
    agent / noise / goals: the planning agent of the "plan" policy, its exploration noise and its goals' protocol."""
    for i in range(episodes):
        yield i, collect_episode(env, policy_name, steps, seed, i, agent, noise, goals)


def trajectory_shards(path: str | Path) -> list[Path]:
    """The trajectory shards of a folder (or the one .tar given), in order; refused in one line when there are none."""
    path = Path(path)
    tars = sorted(path.glob("*.tar")) if path.is_dir() else [path]
    if not tars or not tars[0].is_file():
        raise ConfigError(f"no trajectory shards (*.tar) in {path}: write some with `jepa collect --out {path}`")
    return tars


def check_trajectory_dir(path: str | Path) -> None:
    """Before compute: `path` holds trajectory shards and at least one of them opens as a tar."""
    import tarfile

    tars = trajectory_shards(path)
    for tar in tars:
        try:
            with tarfile.open(tar) as f:
                if f.next() is not None:
                    return
        except (tarfile.TarError, OSError, EOFError):
            continue
    raise ConfigError(f"{path}: no readable episodes (damaged shards: {', '.join(t.name for t in tars[:3])})")


def positions(proprio: torch.Tensor) -> torch.Tensor:
    """The agent's (x, y) [..., 2] of recorded proprioception [..., P]: its first two values."""
    return proprio[..., :2]


def read_trajectories(path: str | Path) -> dict[str, torch.Tensor]:
    """All episodes of a folder of trajectory shards (or one .tar) stacked in memory: frames uint8
    [E, T+1, H, W, 3], actions [E, T, A], proprio [E, T+1, P], and state [E, T+1, S] where every episode recorded
    one (else None). Unreadable or mis-shaped episodes are skipped and counted in out["skipped"] (a warning names
    how many)."""
    import tarfile
    import warnings

    tars = trajectory_shards(path)
    episodes: dict[str, dict[str, bytes]] = {}
    damaged = []
    for tar in tars:
        try:  # a damaged shard keeps the episodes read before the damage (a cut one loses only its last)
            with tarfile.open(tar) as f:
                for m in f:
                    key, _, ext = m.name.partition(".")
                    episodes.setdefault(key, {})[ext] = f.extractfile(m).read()
        except (tarfile.TarError, OSError, EOFError) as err:
            damaged.append(f"{tar.name} ({type(err).__name__})")
    if damaged:
        warnings.warn(f"{path}: damaged trajectory shards {', '.join(damaged)}: kept the episodes before the damage",
                      stacklevel=2)
    with_state = bool(episodes) and all("state.npy" in members for members in episodes.values())
    out: dict[str, list] = {"frames": [], "actions": [], "proprio": []} | ({"state": []} if with_state else {})
    skipped = 0
    for key in sorted(episodes):
        try:
            arrays = {k: np.load(io.BytesIO(episodes[key][f"{k}.npy"]), allow_pickle=False) for k in out}
            if out["frames"] and any(arrays[k].shape != out[k][0].shape for k in out):
                raise ValueError("shape differs from the first episode")
            if len(arrays["actions"]) != len(arrays["frames"]) - 1:
                raise ValueError("needs one action fewer than frames")
            if "state" in arrays and len(arrays["state"]) != len(arrays["frames"]):
                raise ValueError("needs a state per frame")
        except (KeyError, ValueError, OSError, EOFError):
            skipped += 1
            continue
        for k in out:
            out[k].append(arrays[k])
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} unreadable or mis-shaped episodes of {len(episodes)}", stacklevel=2)
    if not out["frames"]:
        raise ConfigError(f"{path}: no readable episodes" + (f" (damaged shards: {', '.join(damaged)})" if damaged else ""))
    result = {k: torch.from_numpy(np.stack(v)) for k, v in out.items()}
    result.setdefault("state", None)
    result["skipped"] = skipped
    return result
