"""`jepa plan`: evaluate planners on a trained world model with the protocols of docs/control.md.

    jepa plan --config configs/control/plan_two_rooms_offline.yaml \
        --world_model runs/two_rooms/world_model/checkpoints/last.ckpt

Every planner in --planners runs receding-horizon MPC on the world model (frozen encoder latents, goal = the
encoded goal image) on held-out episodes ('episodes' for each seed; --protocol offline_goal: start and goal 25 env
steps apart on a held-out trajectory, the references' protocol; random_goal: the env's own draws), beside a random
policy (lower bound), the trajectory's own actions (offline_goal) and an oracle that plans with the same planner on
the true simulator (upper bound, where one exists). Writes results.json, results.md, episodes.png (a few episodes:
path, start, goal) and rollout_error.png (latent L1 against horizon).
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import torch

from jepa.config_files import expand_configs
from jepa.errors import ConfigError
from jepa.io import write_json, write_text
from jepa.outputs import check_results_folder
from jepa.provenance import provenance
from jepa_control.agents import PlanSetup, build_agent
from jepa_control.cost import GoalCost
from jepa_control.envs import make_env
from jepa_control.evaluate import episode_seed, run_episodes
from jepa_control.mpc import LatentModel
from jepa_control.planners import PLANNERS
from jepa_control.protocols import PROTOCOLS, make_protocol

# the references' offline-goal protocol (DINO-WM, stable-worldmodel): goal 25 env steps along a held-out
# trajectory, 50-step budget, frameskip 5, horizon 5, receding horizon 5 (the parser's defaults)
OFFLINE_GOAL_STEPS, OFFLINE_GOAL_BUDGET = 25, 50


def parser():
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(prog="jepa plan", description=__doc__)
    p.add_argument("--config", action=ActionConfigFile, help="a plan config, e.g. configs/control/plan_two_rooms.yaml")
    p.add_argument("--bases", type=list[str] | None, default=None,
                   help="plan configs a config builds on, relative to it (jepa/config_files.py; applied by parse_args)")
    p.add_argument("--world_model", type=str, required=True, help="world-model checkpoint (jepa fit of jepa_control.WorldModel)")
    p.add_argument("--encoder_ckpt", type=str | None, default=None,
                   help="a world model saved before checkpoints recorded their encoder reads its architecture from "
                        "the encoder's file: where that file is now (default: the path it was trained with)")
    p.add_argument("--env", type=str, default="two_rooms", help="environment")
    p.add_argument("--env_options", type=dict, default={}, help="environment settings, e.g. {max_steps: 60}")
    p.add_argument("--planners", type=list[str], default=["cem"], help=f"planners to evaluate: {', '.join(PLANNERS)}")
    p.add_argument("--planner_options", type=dict, default={},
                   help="per-planner keyword arguments, e.g. {cem: {samples: 256, iterations: 4}}")
    p.add_argument("--protocol", type=str, default="offline_goal",
                   help=f"{' or '.join(PROTOCOLS)}: start and goal {OFFLINE_GOAL_STEPS} env steps apart on a "
                        "held-out trajectory (the references' protocol), or drawn by the env's reset (harder: the "
                        "goal may be far, round walls); jepa_control/protocols.py")
    p.add_argument("--goal_offset", type=int, default=OFFLINE_GOAL_STEPS,
                   help="offline_goal: env steps between start and goal along the trajectory")
    p.add_argument("--goal_policy", type=str, default="noisy",
                   help="offline_goal: the collection policy that draws the held-out trajectories (jepa collect's)")
    p.add_argument("--trajectory_replay", type=bool, default=True,
                   help="offline_goal: also run the trajectory's own actions (checks the goals are reachable)")
    p.add_argument("--horizon", type=int, default=5, help="planned actions")
    p.add_argument("--execute", type=int, default=5,
                   help="planned actions executed before replanning (the receding horizon)")
    p.add_argument("--action_repeat", type=int, default=5,
                   help="frameskip: env steps each planned action is held for (the plan looks horizon x "
                        "action_repeat steps ahead)")
    p.add_argument("--sub_actions", type=bool, default=False,
                   help="a world model trained at a frameskip f: each planned action is the f env actions of one "
                        "model step, each free (DINO-WM's planning; needs --action_repeat f), not one action held f "
                        "steps")
    p.add_argument("--warm_start", type=bool, default=True, help="start each plan from the shifted previous one")
    p.add_argument("--distance", type=str, default="mse",
                   help="goal distance: mse or l1 between latents, position (between the agent's positions the world "
                   "model reads: its model.position_readout or its proprioception token), geodesic (the read-outs' "
                   "shortest path over the steps recorded in --graph_data: round the walls) or state (between the "
                   "env's states its learned read-out reads: model.state_dim)")
    p.add_argument("--graph_data", type=str | None, default=None,
                   help="trajectory shards whose recorded positions make the graph of --distance geodesic")
    p.add_argument("--graph_cell", type=float, default=0.15,
                   help="grid cell of that graph, in position units (below half the thinnest wall)")
    p.add_argument("--cost_mode", type=str, default="sum", help="sum over the horizon, or last")
    p.add_argument("--action_weight", type=float, default=0.0, help="weight of the action-magnitude term")
    p.add_argument("--rest_weight", type=float, default=0.0,
                   help="weight of the read-out distance moved in a plan's last step (position / geodesic "
                        "distances): plans end at rest")
    p.add_argument("--proprio_weight", type=float, default=1.0,
                   help="a world model with proprioception: weight of the agent's position token in the mse / l1 "
                        "goal distance, against 1 per frame token (below 1: the frame's goal counts for more)")
    p.add_argument("--energy", type=str | None, default=None,
                   help="learned-energy checkpoint (jepa fit of jepa_control.energy.EnergyModule): adds lambda * E to the cost")
    p.add_argument("--energy_weights", type=list[float], default=[0.0],
                   help="lambda values to compare (each planner runs once per value; 0 = goal distance only)")
    p.add_argument("--episodes", type=int, default=50, help="episodes per seed")
    p.add_argument("--seeds", type=list[int], default=[0, 1, 2], help="evaluation seeds (starts, goals, layouts)")
    p.add_argument("--budget", type=int | None, default=None,
                   help=f"env steps per episode (default: {OFFLINE_GOAL_BUDGET} under offline_goal, the env's own "
                        "under random_goal)")
    p.add_argument("--plan_to_budget", type=bool, default=False,
                   help="score no imagined state past the budget's end: the horizon shrinks as the budget runs out, "
                        "so plans are judged on the state the success rule reads")
    p.add_argument("--actor", type=str | None, default=None,
                   help="Mode-1 actor checkpoint (jepa fit of jepa_control.actor.ActorModule): adds the actor alone "
                        "(reactive) and each planner warm-started by the actor's imagined plan")
    p.add_argument("--cold_start", type=bool, default=True,
                   help="also run each planner with no actor and the plain cost (false: only the --actor and "
                        "--energy rows, e.g. the seed_mode1_refine preset)")
    p.add_argument("--oracle", type=bool, default=True, help="also run each planner on the true simulator")
    p.add_argument("--oracle_latent", type=bool, default=False,
                   help="also run each planner on the true simulator scored by the world model's cost on the frames "
                        "it would show (Push-T): what the latents allow with perfect dynamics")
    p.add_argument("--oracle_pixels", type=bool, default=False,
                   help="also run each planner on the true simulator scored by the pixel distance of the frames it "
                        "would show to the goal image (Push-T): oracle_latent's raw-pixels baseline")
    p.add_argument("--random_policy", type=bool, default=True, help="also run a uniform random policy")
    p.add_argument("--rollout_data", type=str | None, default=None,
                   help="trajectory shards on which to measure latent rollout error against horizon")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--show", type=int, default=4, help="episodes drawn in episodes.png")
    p.add_argument("--out", type=str | None, default=None, help="output folder (default: <world-model run>/plan)")
    p.add_argument("--overwrite", type=bool, default=False, help="replace the results of an earlier plan run in --out")
    return p


def rollout_errors(world_model, path: str, horizon: int,
                   max_episodes: int = 200) -> dict[str, dict[str, list[float]]]:
    """Rollout error against horizon on the episodes of `path`, from the model's first `context` true frames of
    each (what a plan starts from once the agent has seen that many; teacher forcing nowhere: the model's own
    predictions are fed back), each beside predicting no change (the last true frame held): "latent_l1", the mean
    L1 between imagined and encoded latents after 1..horizon steps; and, for a world model that reads positions (a
    read-out, or the proprioception token) and trajectories that recorded (x, y), "position", the mean distance
    between the imagined positions and the recorded ones (what a position cost plans on)."""
    from jepa_control.collect import positions as xy, read_trajectories
    from jepa_control.windows import model_steps

    data = read_trajectories(path)
    f = world_model.frameskip  # env steps per model step: frames that far apart
    frames, actions = model_steps(data["frames"][:max_episodes], data["actions"][:max_episodes].float(), f)
    k = min(world_model.hparams.context, actions.shape[1])  # true frames the rollout starts from
    horizon = min(horizon, actions.shape[1] - k + 1)
    proprio = model_steps(data["proprio"][:max_episodes], data["actions"][:max_episodes], f)[0]
    proprio = proprio[:, : k + horizon].float()
    positions = xy(proprio)
    with torch.no_grad():
        latents = world_model.encode(frames[:, : k + horizon], proprio)
        preds = world_model.predictor.rollout(latents[:, :k], actions[:, : k - 1], actions[:, k - 1 : k - 1 + horizon],
                                              world_model.hparams.context)
        per_step = lambda pred: [float(v) for v in (pred - latents[:, k:]).abs().mean((0, 2, 3))]  # noqa: E731
        errors = {"latent_l1": {"world_model": per_step(preds),
                                "no_change": per_step(latents[:, k - 1 : k].expand_as(preds))}}
        if world_model.reads_position:
            off = lambda pos: [float(v) for v in (pos - positions[:, k:]).norm(dim=-1).mean(0)]  # noqa: E731
            errors["position"] = {"world_model": off(world_model.read_position(preds)),
                                  "no_change": off(positions[:, k - 1 : k].expand(-1, horizon, -1))}
    return errors


@torch.no_grad()
def cost_landscape(env, model, cost, horizon: int, seed: int, points: int = 21):
    """Cost of every constant action on a points x points grid of [-1, 1]^2 held for `horizon` model steps, from
    the start of the episode `seed` (rows: action y); and the unit action pointing straight at the goal."""
    import numpy as np

    obs, info = env.reset(seed=seed)
    state, goal = model.observe(obs, info), model.goal(env.goal_observation(), info)
    axis = torch.linspace(-1, 1, points)
    ay, ax = torch.meshgrid(axis, axis, indexing="ij")
    actions = torch.stack([ax, ay], -1).reshape(-1, 1, 2).expand(-1, horizon * model.frameskip, 2)
    states = model.rollout(state[None], torch.zeros(0, 2 * model.frameskip), actions)
    grid = cost(states, goal, actions).reshape(points, points).numpy()
    towards = np.asarray(info["goal"], np.float64) - np.asarray(info["pos"], np.float64)
    return grid, tuple(towards / max(np.abs(towards).max(), 1e-9))


def plan_setup(cfg, wm, env) -> tuple[PlanSetup, object]:
    """What the planning agents of a plan config share on `wm` in `env` (its goal cost, horizon, action holding,
    budget), and the transition graph of a geodesic cost (else None): `jepa plan`'s, and `jepa collect --policy
    plan --plan_config`'s, so data collected by the planner come from the plans that are evaluated. Refused in
    one line when `wm` was trained for other frames or another action size than `env` gives."""
    wm.frozen_encoder.check_frames(env.observation_shape)
    if wm.hparams.action_dim != len(env.action_low) * wm.frameskip:
        raise ConfigError(f"{cfg.world_model} was trained for {wm.hparams.action_dim}-D actions at frameskip "
                          f"{wm.frameskip}, {cfg.env} has {len(env.action_low)}-D ones")
    readout = wm.read_position if cfg.distance in ("position", "geodesic") else None
    if cfg.distance == "state":
        if not wm.reads_state:
            raise ConfigError(f"--distance state: {cfg.world_model} reads no state (fit it with "
                              "--model.init_args.state_dim and state_weight on data that recorded the env's state)")
        readout = wm.read_state
    elif readout is not None and not wm.reads_position:
        raise ConfigError(f"--distance {cfg.distance}: {cfg.world_model} reads no position (fit it with "
                          "--model.init_args.position_readout true or a proprio_scale)")
    graph = None
    if cfg.distance == "geodesic":
        from jepa_control.geodesic import load_graph

        if not cfg.graph_data:
            raise ConfigError("--distance geodesic needs --graph_data: trajectory shards with recorded positions")
        graph = load_graph(cfg.graph_data, cfg.graph_cell)
        print(f"transition graph of {cfg.graph_data}: {graph.summary()}", file=sys.stderr)
    cost = GoalCost(cfg.distance, cfg.cost_mode, cfg.action_weight, readout=readout, geodesic=graph,
                    rest_weight=cfg.rest_weight, proprio_weight=cfg.proprio_weight,
                    proprio_token=bool(wm.hparams.get("proprio_scale")))
    budget = cfg.budget or (OFFLINE_GOAL_BUDGET if cfg.protocol == "offline_goal" else env.max_steps)
    setup = PlanSetup(env, wm, cost, horizon=cfg.horizon, execute=cfg.execute, action_repeat=cfg.action_repeat,
                      sub_actions=cfg.sub_actions, warm_start=cfg.warm_start, planner_options=cfg.planner_options,
                      budget=budget, plan_to_budget=cfg.plan_to_budget)
    return setup, graph


def parse_args(argv: list[str]):
    """jepa plan's settings from argv, each --config applied after the bases it names (as jepa fit's)."""
    return parser().parse_args(expand_configs(argv))


def main(argv: list[str]) -> int:
    """evaluate planners on an environment: success rate, seconds per step"""
    from jepa_control.world_model import WorldModel

    cfg = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out) if cfg.out else Path(cfg.world_model).resolve().parent.parent / "plan"
    if Path(cfg.world_model).is_file():  # (a missing one is named by the loader below)
        check_results_folder("--out", out, cfg.overwrite)
    unknown = [p for p in cfg.planners if p not in PLANNERS]
    if unknown or not cfg.planners:  # before the world model is read
        raise ConfigError(f"--planners {unknown or '[]'}: choose from {', '.join(PLANNERS)}")
    wm = WorldModel.from_checkpoint(cfg.world_model, cfg.encoder_ckpt)
    env = make_env(cfg.env, eval_layouts=True, **cfg.env_options)
    action_dim, frameskip = len(env.action_low), wm.frameskip
    if cfg.actor and frameskip > 1:
        raise ConfigError(f"--actor: {cfg.world_model} steps {frameskip} env steps at a time; the Mode-1 actor "
                          "plans one")
    started = time.time()
    setup, graph = plan_setup(cfg, wm, env)
    protocol = make_protocol(cfg.protocol, cfg.goal_offset, cfg.goal_policy)
    budget = setup.budget
    record = {"command": "jepa plan " + shlex.join(argv), "date": time.strftime("%Y-%m-%d"),
              "world_model": cfg.world_model, "encoder": str(wm.frozen_encoder.source), "env": cfg.env,
              "settings": {k: v for k, v in vars(cfg).items() if k != "config"},
              "protocol": {"name": cfg.protocol, "episodes_per_seed": cfg.episodes, "seeds": cfg.seeds,
                           "held_out_layouts": env.held_out_layouts, "budget": budget,
                           "frameskip": cfg.action_repeat, "model_frameskip": frameskip,
                           "sub_actions": cfg.sub_actions, "horizon": cfg.horizon,
                           "receding_horizon": cfg.execute, "plan_to_budget": cfg.plan_to_budget,
                           "success": env.success_rule, "interval": "Wilson 95 %"}}
    if cfg.protocol == "offline_goal":
        record["protocol"]["goal"] = (f"the state {cfg.goal_offset} env steps along a held-out trajectory of the "
                                      f"{cfg.goal_policy!r} collection policy from the episode's start")
    if graph is not None:
        record["transition_graph"] = graph.summary()
    if cfg.oracle and not hasattr(env, "oracle_model"):
        record["protocol"]["oracle"] = f"none: {cfg.env} has no true simulator to plan on"
        print(f"no oracle row: {cfg.env} has no true simulator to plan on", file=sys.stderr)
    rows = agent_rows(cfg, setup)
    results = {}
    for label, make_agent in rows:
        results[label] = run_episodes(env, make_agent, cfg.episodes, cfg.seeds, budget, keep_frames=cfg.show,
                                      protocol=protocol)
        results[label]["predictor_steps_per_plan"] = (results[label]["rollouts_per_plan"] * cfg.horizon
                                                      * cfg.action_repeat // frameskip)
        print(_line(label, results[label]), file=sys.stderr)
        # written after every agent, so a long evaluation stopped half-way keeps what it measured
        record["results"] = {k: {kk: vv for kk, vv in v.items() if kk != "shown"} for k, v in results.items()}
        record["complete"] = label == rows[-1][0]
        write_json(out / "results.json", record)

    from jepa_control.plots import (
        plot_cost_landscape,
        plot_episodes,
        plot_pareto,
        plot_rollout_error,
    )

    main_name = next(k for k in results if k.startswith(cfg.planners[0]) and k.endswith("(world model)"))
    where = "held-out layouts" if env.held_out_layouts else f"{cfg.env} episodes"  # gymnasium envs have no layouts
    record["plots"] = {"episodes": str(plot_episodes(results[main_name]["shown"], out / "episodes.png",
                                                     f"{main_name} on {where}"))}
    record["plots"]["pareto"] = str(plot_pareto(results, out / "pareto.png"))
    costs = {"cost": setup.cost}
    energy = setup.energy
    if energy is not None:
        costs["energy"] = lambda states, goal, actions: energy.energy(states).sum(1)
    for name, fn in costs.items() if action_dim == 2 else ():
        grid, towards = cost_landscape(env, LatentModel(setup.energy_wm if name == "energy" else wm), fn, cfg.horizon,
                                       episode_seed(cfg.seeds[0], 0))
        record["plots"][f"{name}_landscape"] = str(plot_cost_landscape(
            grid, out / f"{name}_landscape.png", f"{name} of a constant action held {cfg.horizon} steps\n(first "
            "evaluation episode's start; x = straight towards the goal)", towards))
    if cfg.rollout_data:
        errors = rollout_errors(wm, cfg.rollout_data, cfg.horizon)
        record["rollout_l1_by_horizon"] = errors["latent_l1"]
        record["plots"]["rollout_error"] = str(plot_rollout_error(errors["latent_l1"], out / "rollout_error.png"))
        if "position" in errors:
            record["rollout_position_error_by_horizon"] = errors["position"]
            record["plots"]["rollout_position_error"] = str(plot_rollout_error(
                errors["position"], out / "rollout_position_error.png", "imagined position error"))
        for kind, values in errors.items():
            print(f"{kind.replace('_', ' ')} error by horizon: " + ", ".join(
                f"{a:.4f} (no change {b:.4f})" for a, b in zip(values["world_model"], values["no_change"])),
                file=sys.stderr)
    gate = Path(cfg.world_model).resolve().parent.parent / "gate.json"
    if gate.is_file():
        import json

        record["gate"] = json.loads(gate.read_text())
    table = markdown(results)
    record["table"] = table
    record["wall_seconds"] = time.time() - started
    record["provenance"] = provenance()
    write_json(out / "results.json", record)
    write_text(out / "results.md", table + "\n")
    print(table)
    print(f"wrote {out}/results.json, results.md, episodes.png", file=sys.stderr)
    return 0


def agent_rows(cfg, setup: PlanSetup) -> list[tuple[str, object]]:
    """(label, make_agent) for every row this evaluation runs, built through the agent registry
    (jepa_control/agents.py): baselines first, then each planner on the world model (cold, actor-warmed and with
    each energy weight) and on the true simulator."""
    rows, actor = [], None
    if cfg.energy:
        from jepa_control.energy import EnergyModule

        setup.energy = EnergyModule.from_checkpoint(cfg.energy)
        # the seed's joint step trained a predictor of its own: plan with it
        setup.energy_wm = setup.energy.wm if setup.energy.hparams.train_predictor else setup.world_model
    elif any(cfg.energy_weights):
        raise ConfigError("--energy_weights above 0 need --energy <checkpoint>")
    if cfg.random_policy:
        rows.append(("random policy", build_agent("random_policy", setup)))
    if cfg.trajectory_replay and cfg.protocol == "offline_goal":
        rows.append(("trajectory replay", build_agent("trajectory_replay", setup)))
    if cfg.actor:
        from jepa_control.actor import ActorModule

        trained = ActorModule.from_checkpoint(cfg.actor)
        ours, its = setup.world_model.predictor.state_dict(), trained.wm.predictor.state_dict()
        if ours.keys() != its.keys() or not all(torch.equal(ours[k], its[k]) for k in ours):
            print(f"warning: {cfg.actor} was trained through another world model than {cfg.world_model} (their "
                  "predictors differ)", file=sys.stderr)
        actor = trained.actor
        rows.append(("actor alone (world model)", build_agent("actor", setup, actor=actor)))
    for name in cfg.planners:
        if cfg.cold_start or (actor is None and setup.energy is None):
            rows.append((f"{name} (world model)", build_agent("world_model", setup, planner=name)))
        if actor is not None:
            rows.append((f"{name} + actor warm start (world model)",
                         build_agent("actor_warm_start", setup, actor=actor, planner=name)))
        for weight in [w for w in cfg.energy_weights if w] if setup.energy is not None else []:
            cost = setup.cost.with_energy(setup.energy.energy, weight)
            rows.append((f"{name}, lambda {weight:g} * E (world model)",
                         build_agent("world_model", setup, planner=name, cost=cost, world_model=setup.energy_wm)))
        if cfg.oracle and hasattr(setup.env, "oracle_model"):  # two-rooms' batched simulator, Push-T's physics
            rows.append((f"{name} (oracle simulator)", build_agent("oracle", setup, planner=name)))
        if cfg.oracle_latent:
            rows.append((f"{name} (oracle simulator, world model's cost)",
                         build_agent("oracle_latent", setup, planner=name)))
        if cfg.oracle_pixels:
            rows.append((f"{name} (oracle simulator, pixel distance)",
                         build_agent("oracle_pixels", setup, planner=name)))
    return rows


def _line(name: str, r: dict) -> str:
    lo, hi = r["wilson95"]
    return (f"{name}: success {r['success']:.1%} [{lo:.1%}, {hi:.1%}] over {r['episodes']} episodes, "
            f"{r['seconds_per_plan']:.3f} s per plan" + ("" if r.get("closed_loop_position_error") is None else
            f"; imagined position off by {r['closed_loop_position_error']:.4f} on the executed actions"))


def markdown(results: dict) -> str:
    lines = ["| agent | success | Wilson 95 % | std over seeds | s / planning step | rollouts / step | "
             "predictor steps / step | final distance |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lo, hi = r["wilson95"]
        lines.append(f"| {name} | {r['success']:.1%} | {lo:.1%} - {hi:.1%} | {r['success_std_over_seeds']:.1%} | "
                     f"{r['seconds_per_plan']:.3f} | {r['rollouts_per_plan']:.0f} | {r['predictor_steps_per_plan']:.0f} | "
                     f"{r['mean_final_distance']:.3f} |")
    return "\n".join(lines)
