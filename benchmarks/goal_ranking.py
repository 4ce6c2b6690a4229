"""Does a world model's goal cost put the actions that reach the goal first? On `jepa plan`'s offline-goal episodes
(start and goal `goal_offset` env steps apart on a held-out trajectory; validation seeds, never the test ones):

- `true_rank`: the fraction of random action sequences (each action held `action_repeat` env steps, as the planner
  samples them) whose imagined cost is below that of the trajectory's own actions, which reach the goal: 0 when the
  model ranks the reaching actions first, ~0.5 when it cannot tell them from chance;
- `held_true_rank`: the same for those actions averaged over each held stretch (what a held-action planner can say);
- `replay_success` / `held_replay_success`: the env's own verdict after replaying the exact / held actions (after
  holding still for the rest of the budget): can held actions reach the goals at all?

With `--planner_options` (e.g. '{samples: 128, iterations: 3, elites: 12}') CEM also searches the model's cost over
free env actions (horizon: the offset in held stretches): `plan_below_true` is the fraction of episodes where it finds
a sequence the model scores below the trajectory's own actions, `plan_final_distance` the env's goal distance after
that sequence (played after holding still): a planner that beats the true actions in the model but not in the env is
exploiting the model's errors.

`--imagine env` ranks by the encoder's latents of the frames the env itself shows after each sequence (a perfect
predictor): whether the latent goal distance can rank the reaching actions first at all, apart from the predictor.

    python benchmarks/goal_ranking.py runs/push_t/pixel_world_model/checkpoints/last.ckpt --env push_t \
        --env_options '{max_steps: 50, success: pose}' --goal_policy push
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def replay(env, protocol, seed: int, actions: np.ndarray, budget: int) -> dict:
    """The env's info after `actions` played from the episode's start after holding still, as jepa plan's
    trajectory replay (jepa_control.protocols.after_holding_still)."""
    from jepa_control.protocols import after_holding_still

    protocol.start(env, seed)
    info = {}
    for action in after_holding_still(actions, budget):
        _, _, _, _, info = env.step(action)
    return info


@torch.no_grad()
def rank_episode(model, cost, env, protocol, seed: int, repeat: int, samples: int, generator: torch.Generator,
                 budget: int = 50, planner=None) -> dict:
    """One episode's ranks and replays (model: jepa_control.mpc.LatentModel or SimModel; cost: a GoalCost;
    planner: one over the offset's held stretches of `repeat` free env actions each, or None)."""
    obs, info = protocol.start(env, seed)
    exact = np.asarray(info["trajectory_actions"], np.float32)  # [T, A], T a multiple of repeat
    goal, state = model.goal(env.goal_observation(), info), model.observe(obs, info)
    steps, dim = exact.shape
    held = exact.reshape(steps // repeat, repeat, dim).mean(1)  # [H, A]: one action per held stretch
    planned = torch.cat([torch.as_tensor(held)[None].expand(2, -1, -1),
                         torch.rand(samples, steps // repeat, dim, generator=generator) * 2 - 1])
    env_actions = planned.repeat_interleave(repeat, 1)
    env_actions[0] = torch.as_tensor(exact)  # row 0: the exact actions; row 1: held; the rest random, held
    per_action = repeat // model.frameskip  # imagined states per planned action
    between = torch.zeros(0, dim * model.frameskip)

    def cost_of(planned: torch.Tensor, env_actions: torch.Tensor) -> torch.Tensor:
        states = model.rollout(state[None], between, env_actions)
        return cost(states[:, per_action - 1 :: per_action], goal, planned)

    costs = cost_of(planned, env_actions)
    out = {"true_rank": float((costs[2:] < costs[0]).float().mean()),
           "held_true_rank": float((costs[2:] < costs[1]).float().mean()),
           "replay_success": bool(replay(env, protocol, seed, exact, budget)["success"]),
           "held_replay_success": bool(replay(env, protocol, seed, np.repeat(held, repeat, 0), budget)["success"])}
    if planner is not None:  # each planned action: `repeat` free env actions, concatenated
        plan = planner.plan(lambda free: cost_of(free, free.reshape(len(free), steps, dim)))
        out["plan_below_true"] = float(plan.cost < float(costs[0]))
        found = plan.actions.reshape(steps, dim).numpy()
        out["plan_final_distance"] = float(replay(env, protocol, seed, found, budget)["distance"])
    return out


class TrueFrames:
    """Imagination by the env itself: each action sequence is run from the episode's start and the frames it shows
    every frameskip env steps are encoded by the world model's encoder (the cost a perfect predictor would give)."""

    def __init__(self, model, env, protocol) -> None:
        self.model, self.env, self.protocol, self.seed = model, env, protocol, None
        self.frameskip = model.frameskip

    def observe(self, obs, info):
        return self.model.observe(obs, info)

    def goal(self, goal_obs, info):
        return self.model.goal(goal_obs, info)

    def rollout(self, states, actions_between, actions: torch.Tensor) -> torch.Tensor:
        out = []
        for sequence in actions.numpy():
            self.protocol.start(self.env, self.seed)
            shown = [self.env.step(a) for a in sequence][self.frameskip - 1 :: self.frameskip]
            frames = torch.as_tensor(np.stack([obs for obs, *_ in shown]))
            proprio = np.stack([info.get("proprio", info["pos"]) for *_, info in shown])
            out.append(self.model.wm.encode(frames[None], torch.as_tensor(proprio, dtype=torch.float32)[None])[0])
        return torch.stack(out)


def goal_ranking(model, cost, env, protocol, seed: int, episodes: int, repeat: int, samples: int,
                 budget: int = 50, planner=None) -> dict:
    """Mean of rank_episode over `episodes` episodes of evaluation seed `seed` (jepa plan's episode seeds)."""
    from jepa_control.evaluate import episode_seed

    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(episodes):
        if isinstance(model, TrueFrames):
            model.seed = episode_seed(seed, i)  # the episode its sequences are replayed from
        rows.append(rank_episode(model, cost, env, protocol, episode_seed(seed, i), repeat, samples, g, budget,
                                 planner))
    return {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]} | {"episodes": episodes}


def main() -> None:
    import yaml

    from jepa_control.cost import GoalCost
    from jepa_control.envs import make_env
    from jepa_control.mpc import LatentModel
    from jepa_control.planners import make_planner
    from jepa_control.protocols import make_protocol
    from jepa_control.world_model import WorldModel

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="world-model checkpoint")
    p.add_argument("--env", default="push_t")
    p.add_argument("--env_options", default="{}", help="environment settings (YAML), as jepa plan's")
    p.add_argument("--goal_policy", default="noisy", help="the collection policy of the held-out trajectories")
    p.add_argument("--goal_offset", type=int, default=25, help="env steps from start to goal")
    p.add_argument("--action_repeat", type=int, default=5, help="env steps each sampled action is held")
    p.add_argument("--distance", default="mse")
    p.add_argument("--cost_mode", default="sum")
    p.add_argument("--seed", type=int, default=100, help="evaluation seed (validation: not the test seeds 0-2)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--samples", type=int, default=256, help="random action sequences per episode")
    p.add_argument("--planner_options", default="",
                   help="CEM settings (YAML) to also search the model's cost (plan_below_true, plan_final_distance)")
    p.add_argument("--imagine", choices=("model", "env"), default="model",
                   help="rank by the world model's rollouts, or by the encoded frames the env shows (no predictor)")
    args = p.parse_args()
    if args.goal_offset % args.action_repeat:
        sys.exit(f"--goal_offset {args.goal_offset} is not a multiple of --action_repeat {args.action_repeat}")
    torch.set_num_threads(2)
    model = LatentModel(WorldModel.from_checkpoint(args.ckpt))
    if args.action_repeat % model.frameskip:
        sys.exit(f"--action_repeat {args.action_repeat} is not a multiple of {args.ckpt}'s frameskip {model.frameskip}")
    env = make_env(args.env, eval_layouts=True, **yaml.safe_load(args.env_options))
    protocol = make_protocol("offline_goal", args.goal_offset, args.goal_policy)
    if args.imagine == "env":
        model = TrueFrames(model, env, protocol)
    planner = None
    if args.planner_options:
        held = args.goal_offset // args.action_repeat
        planner = make_planner("cem", held, args.action_repeat * len(env.action_low), seed=0,
                               **yaml.safe_load(args.planner_options))
    result = goal_ranking(model, GoalCost(args.distance, args.cost_mode), env, protocol, args.seed, args.episodes,
                          args.action_repeat, args.samples, planner=planner)
    print(json.dumps({"ckpt": args.ckpt, **result}))


if __name__ == "__main__":
    main()
