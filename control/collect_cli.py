"""`jepa collect`: roll out a policy in an environment and write the trajectories to tar shards."""
from __future__ import annotations

import argparse
import sys

from control.collect import POLICIES, collect
from control.envs import ENVS, make_env
from data.shard_sources import trajectory_sample
from data.shard_writer import INDEX_NAME, write_shards


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jepa collect", description=__doc__)
    p.add_argument("--env", default="two_rooms", choices=ENVS, help="environment (default two_rooms)")
    p.add_argument("--policy", default="noisy", choices=POLICIES,
                   help="random: uniform actions; noisy: persistent random walk (default)")
    p.add_argument("--episodes", type=int, default=600, help="episodes to collect (default 600)")
    p.add_argument("--steps", type=int, default=32, help="actions per episode (default 32)")
    p.add_argument("--eval_layouts", action="store_true", help="use the held-out evaluation layouts")
    p.add_argument("--seed", type=int, default=0, help="seed of starts, goals, layouts and actions (default 0)")
    p.add_argument("--out", required=True, help="output folder for NAME-%%06d.tar shards and index.json")
    p.add_argument("--name", default="traj", help="shard file-name prefix (default traj)")
    p.add_argument("--max_count", type=int, default=200, help="most episodes per shard (default 200)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.episodes < 1 or args.steps < 1:
        parser().error("--episodes and --steps must be >= 1")
    env = make_env(args.env, eval_layouts=args.eval_layouts)
    samples = (trajectory_sample(f"ep{i:07d}", **traj) for i, traj in
               collect(env, args.policy, args.episodes, args.steps, args.seed))
    extra = {"env": args.env, "policy": args.policy, "steps": args.steps, "seed": args.seed,
             "eval_layouts": args.eval_layouts}
    index = write_shards(samples, args.out, "collect", args.name, args.max_count, 1 << 31, total=args.episodes,
                         extra=extra, progress=not args.quiet)
    print(f"wrote {index['total']} episodes of {args.steps} steps into {args.out}/{index['pattern']} "
          f"(index: {args.out}/{INDEX_NAME})", file=sys.stderr)
    return 0
