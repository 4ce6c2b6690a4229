"""`jepa collect`: roll out a policy in an environment and write the trajectories to tar shards."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from tqdm import tqdm

from data.shard_sources import trajectory_sample
from data.shard_writer import INDEX_NAME, AtomicShardWriter, prepare_shard_folder
from jepa.errors import ConfigError
from jepa_control.collect import POLICIES, collect, collect_episode
from jepa_control.envs import ENVS, make_env
from jepa_control.protocols import make_protocol

_WORKER_ENV = None  # each collection process's own environment


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jepa collect", description=__doc__)
    p.add_argument("--env", default="two_rooms", choices=ENVS, help="environment (default two_rooms)")
    p.add_argument("--env_options", default="{}", help='environment settings as JSON, e.g. \'{"img_size": 32}\'')
    p.add_argument("--policy", default="noisy", choices=POLICIES,
                   help="random: uniform actions; noisy: persistent random walk (default); seek: the walk pulled "
                        "towards the goal; push: Push-T approaches and pushes through the block; plan: the planner on "
                        "--world_model driving to each episode's goal (act, store, retrain)")
    p.add_argument("--world_model", default=None, help="plan: world-model checkpoint to plan with")
    p.add_argument("--planner", default="cem", help="plan: planner name (default cem)")
    p.add_argument("--planner_options", default="{}", help="plan: planner keyword arguments as JSON")
    p.add_argument("--horizon", type=int, default=12, help="plan: planned steps (default 12)")
    p.add_argument("--execute", type=int, default=4, help="plan: planned actions executed before replanning (default 4)")
    p.add_argument("--action_repeat", type=int, default=1, help="plan: env steps each planned action is held (default 1)")
    p.add_argument("--plan_config", default=None,
                   help="plan: a jepa plan config (e.g. configs/control/plan_reacher_offline.yaml) whose first "
                        "planner, planning settings, goal cost and goals drive the collection instead of "
                        "--planner ... --action_repeat: the data then hold the plans that config evaluates")
    p.add_argument("--noise", type=float, default=0.0, help="plan: Gaussian exploration noise std (default 0)")
    p.add_argument("--goal_policy", default=None, choices=[x for x in POLICIES if x != "plan"],
                   help="plan: goals by the offline-goal protocol, the state --goal_offset steps along this "
                        "policy's rollout from the episode's start (default: the env's own goal)")
    p.add_argument("--goal_offset", type=int, default=25, help="plan: env steps from start to goal (default 25)")
    p.add_argument("--episodes", type=int, default=600, help="episodes to collect (default 600)")
    p.add_argument("--steps", type=int, default=32, help="actions per episode (default 32)")
    p.add_argument("--eval_layouts", action="store_true", help="use the held-out evaluation layouts")
    p.add_argument("--seed", type=int, default=0, help="seed of starts, goals, layouts and actions (default 0)")
    p.add_argument("--out", required=True, help="output folder for NAME-%%06d.tar shards and index.json")
    p.add_argument("--name", default="traj", help="shard file-name prefix (default traj)")
    p.add_argument("--max_count", type=int, default=200, help="most episodes per shard (default 200)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes collecting episodes in parallel (the shards are the same for any number)")
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


def configured_planning_agent(args, env, options: dict):
    """MPC as --plan_config plans on the world model (its first planner, cost, horizon, holding and budget), and
    that config's goals; refused when the config plans in another environment than the one collected from
    (`env`, built with `options`)."""
    from jepa_control.mpc import LatentModel
    from jepa_control.plan_cli import parse_args as plan_parse_args
    from jepa_control.plan_cli import plan_setup
    from jepa_control.world_model import WorldModel

    cfg = plan_parse_args(["--config", args.plan_config, "--world_model", args.world_model])
    if (cfg.env, dict(cfg.env_options)) != (args.env, options):
        raise ConfigError(f"--plan_config {args.plan_config} plans in {cfg.env} {dict(cfg.env_options)}, not in "
                          f"--env {args.env} {options}: collect where the plans are evaluated")
    wm = WorldModel.from_checkpoint(args.world_model)
    setup, _ = plan_setup(cfg, wm, env)
    agent = setup.mpc(LatentModel(wm), cfg.planners[0], args.seed, setup.cost)
    return agent, make_protocol(cfg.protocol, cfg.goal_offset, cfg.goal_policy)


def planning_agent(args, env):
    """MPC with the named planner on the world model, under the default goal cost."""
    from jepa_control.cost import GoalCost
    from jepa_control.mpc import LatentModel, MPCAgent
    from jepa_control.planners import make_planner
    from jepa_control.world_model import WorldModel

    if not args.world_model:
        raise ConfigError("--policy plan needs --world_model <checkpoint>")
    options = json_option(args.planner_options, "--planner_options")
    wm = WorldModel.from_checkpoint(args.world_model)
    wm.frozen_encoder.check_frames(env.observation_shape)
    planner = make_planner(args.planner, args.horizon, len(env.action_low), seed=args.seed, **options)
    return MPCAgent(LatentModel(wm), planner, GoalCost(), args.execute, action_repeat=args.action_repeat)


def _start_worker(env: str, eval_layouts: bool, options: dict) -> None:
    import torch

    global _WORKER_ENV
    torch.set_num_threads(1)
    _WORKER_ENV = make_env(env, eval_layouts=eval_layouts, **options)


def _collect_in_worker(job: tuple) -> dict:
    return collect_episode(_WORKER_ENV, *job)


def parallel_collect(args, options: dict):
    """Yield (i, trajectory) in episode order, collected by args.workers processes (each with its own env)."""
    import multiprocessing

    jobs = [(args.policy, args.steps, args.seed, i) for i in range(args.episodes)]
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no renderer state inherited
    with context.Pool(args.workers, _start_worker, (args.env, args.eval_layouts, options)) as pool:
        yield from enumerate(pool.imap(_collect_in_worker, jobs, chunksize=4))


def main(argv: list[str]) -> int:
    """roll out a policy in an environment, write trajectories to shards"""
    args = parser().parse_args(argv)
    if args.episodes < 1 or args.steps < 1:
        parser().error("--episodes and --steps must be >= 1")
    if args.workers < 1 or (args.workers > 1 and args.policy == "plan"):
        parser().error("--workers must be >= 1, and 1 with --policy plan (one planner)")
    if (args.goal_policy is not None or args.plan_config) and args.policy != "plan":
        parser().error("--goal_policy and --plan_config set the plan policy's goals and plans: use them with "
                       "--policy plan")
    if args.goal_policy is not None and args.plan_config:
        parser().error("--plan_config sets the goals (its protocol, goal_policy and goal_offset): drop --goal_policy")
    if args.plan_config and not args.world_model:
        parser().error("--plan_config plans on --world_model <checkpoint>: give it")
    prepare_shard_folder(args.out, args.name, args.overwrite)
    options = json_option(args.env_options, "--env_options")
    env = make_env(args.env, eval_layouts=args.eval_layouts, **options)
    agent, extra = None, {"env": args.env, "policy": args.policy, "steps": args.steps, "seed": args.seed,
                          "eval_layouts": args.eval_layouts, "env_options": args.env_options}
    goals = None if args.goal_policy is None else make_protocol("offline_goal", args.goal_offset, args.goal_policy)
    if args.plan_config:
        agent, goals = configured_planning_agent(args, env, options)
        extra.update(world_model=args.world_model, plan_config=args.plan_config, noise=args.noise)
    elif args.policy == "plan":
        agent = planning_agent(args, env)
        extra.update(world_model=args.world_model, planner=args.planner, planner_options=args.planner_options,
                     horizon=args.horizon, execute=args.execute, action_repeat=args.action_repeat,
                     noise=args.noise, goal_policy=args.goal_policy, goal_offset=args.goal_offset)
    episodes = (parallel_collect(args, options) if args.workers > 1 else
                collect(env, args.policy, args.episodes, args.steps, args.seed, agent, args.noise, goals))
    writer, counts = AtomicShardWriter(args.out, args.name, args.max_count, 1 << 31), []
    for i, traj in tqdm(episodes, total=args.episodes, desc="collecting", unit="episode", disable=args.quiet):
        counts.append(traj["contacts"])
        writer.write(trajectory_sample(f"ep{i:07d}", **traj))
    # steps whose info said "contact" (Push-T: the block moved): the interactions the world model must learn from
    extra["contacts"] = {"per_episode": float(np.mean(counts)), "episodes_with_contact": float(np.mean(
        [c > 0 for c in counts]))}
    index = writer.finish("collect", extra)
    print(f"wrote {index['total']} episodes of {args.steps} steps into {args.out}/{index['pattern']} "
          f"(index: {args.out}/{INDEX_NAME}); contacts per episode {extra['contacts']['per_episode']:.2f}, "
          f"episodes with a contact {extra['contacts']['episodes_with_contact']:.0%}", file=sys.stderr)
    return 0
