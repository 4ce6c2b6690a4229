"""`jepa collect`: roll out a policy in an environment and write the trajectories to tar shards."""
from __future__ import annotations

import argparse
import json
import sys

from jepa_control.collect import POLICIES, collect
from jepa_control.envs import ENVS, make_env
from data.shard_sources import trajectory_sample
from data.shard_writer import INDEX_NAME, prepare_shard_folder, write_shards
from jepa.errors import ConfigError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jepa collect", description=__doc__)
    p.add_argument("--env", default="two_rooms", choices=ENVS, help="environment (default two_rooms)")
    p.add_argument("--env_options", default="{}", help='environment settings as JSON, e.g. \'{"img_size": 32}\'')
    p.add_argument("--policy", default="noisy", choices=POLICIES,
                   help="random: uniform actions; noisy: persistent random walk (default); plan: the planner on "
                        "--world_model driving to each episode's goal (act, store, retrain)")
    p.add_argument("--world_model", default=None, help="plan: world-model checkpoint to plan with")
    p.add_argument("--planner", default="cem", help="plan: planner name (default cem)")
    p.add_argument("--planner_options", default="{}", help="plan: planner keyword arguments as JSON")
    p.add_argument("--horizon", type=int, default=12, help="plan: planned steps (default 12)")
    p.add_argument("--execute", type=int, default=4, help="plan: planned actions executed before replanning (default 4)")
    p.add_argument("--action_repeat", type=int, default=1, help="plan: env steps each planned action is held (default 1)")
    p.add_argument("--noise", type=float, default=0.0, help="plan: Gaussian exploration noise std (default 0)")
    p.add_argument("--episodes", type=int, default=600, help="episodes to collect (default 600)")
    p.add_argument("--steps", type=int, default=32, help="actions per episode (default 32)")
    p.add_argument("--eval_layouts", action="store_true", help="use the held-out evaluation layouts")
    p.add_argument("--seed", type=int, default=0, help="seed of starts, goals, layouts and actions (default 0)")
    p.add_argument("--out", required=True, help="output folder for NAME-%%06d.tar shards and index.json")
    p.add_argument("--name", default="traj", help="shard file-name prefix (default traj)")
    p.add_argument("--max_count", type=int, default=200, help="most episodes per shard (default 200)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace the shards already in --out")
    return p


def json_option(text: str, name: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{name} is not JSON: {e}") from e
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {text!r}")
    return value


def planning_agent(args, env):
    """MPC with the named planner on the world model, under the default goal cost."""
    from jepa_control.cost import GoalCost
    from jepa_control.mpc import LatentModel, MPCAgent
    from jepa_control.planners import make_planner
    from jepa_control.world_model import load_world_model

    if not args.world_model:
        raise ConfigError("--policy plan needs --world_model <checkpoint>")
    options = json_option(args.planner_options, "--planner_options")
    wm = load_world_model(args.world_model)
    wm.frozen_encoder.check_frames(env.observation_shape)
    planner = make_planner(args.planner, args.horizon, len(env.action_low), seed=args.seed, **options)
    return MPCAgent(LatentModel(wm), planner, GoalCost(), args.execute, action_repeat=args.action_repeat)


def main(argv: list[str]) -> int:
    """roll out a policy in an environment, write trajectories to shards"""
    args = parser().parse_args(argv)
    if args.episodes < 1 or args.steps < 1:
        parser().error("--episodes and --steps must be >= 1")
    prepare_shard_folder(args.out, args.name, args.overwrite)
    env = make_env(args.env, eval_layouts=args.eval_layouts, **json_option(args.env_options, "--env_options"))
    agent, extra = None, {"env": args.env, "policy": args.policy, "steps": args.steps, "seed": args.seed,
                          "eval_layouts": args.eval_layouts, "env_options": args.env_options}
    if args.policy == "plan":
        agent = planning_agent(args, env)
        extra.update(world_model=args.world_model, planner=args.planner, planner_options=args.planner_options,
                     horizon=args.horizon, execute=args.execute, action_repeat=args.action_repeat,
                     noise=args.noise)
    samples = (trajectory_sample(f"ep{i:07d}", **traj) for i, traj in
               collect(env, args.policy, args.episodes, args.steps, args.seed, agent, args.noise))
    index = write_shards(samples, args.out, "collect", args.name, args.max_count, 1 << 31, total=args.episodes,
                         extra=extra, progress=not args.quiet)
    print(f"wrote {index['total']} episodes of {args.steps} steps into {args.out}/{index['pattern']} "
          f"(index: {args.out}/{INDEX_NAME})", file=sys.stderr)
    return 0
