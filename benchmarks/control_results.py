"""Turn a `jepa plan` run into the control results file other tools read:
benchmarks/results/control/<env>.json and its .md twin.

    python benchmarks/control_results.py runs/two_rooms/plan_offline/results.json \
        --random_init runs/two_rooms/plan_offline_random_init/results.json \
        --fits runs/two_rooms/plan_offline_s1/results.json runs/two_rooms/plan_offline_s2/results.json

The headline row is the first planner on the world model; every other row of the run (random policy, trajectory
replay, oracle, other planners) is kept beside it, measured on the same episodes. --random_init adds the same
planner on a world model whose frozen encoder is the same architecture at random init (`jepa export
--random_init`), run on the same episodes (its protocol and seeds are checked). --fits adds the same evaluation of
world models fitted from other seeds, so the file says how much of the figure is the fit's luck. The references' own
published figures stand in the .md for comparison; they were not measured here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jepa.io import write_json, write_text  # noqa: E402
from jepa.provenance import cpu_model  # noqa: E402

# Published success rates under the offline-goal protocol (their papers and stable-worldmodel's baselines).
REFERENCES = {
    "two_rooms": {"DINO-WM (Wall)": 0.96, "DINO-WM (stable-worldmodel)": 1.00, "PLDM": 0.97, "LeWM": 0.87},
    "point_maze": {"DINO-WM": 0.98},
    "reacher": {"DINO-WM": 0.92, "DINO-WM (stable-worldmodel)": 0.79, "PLDM": 0.78, "LeWM": 0.86},
    "push_t": {"DINO-WM": 0.90, "DINO-WM (stable-worldmodel)": 0.74, "PLDM": 0.78, "LeWM": 0.96},
}


def row(r: dict) -> dict:
    """One agent's figures, as the results file keeps them."""
    return {"success": r["success"], "ci95": r["wilson95"], "per_seed": r["success_per_seed"],
            "seconds_per_plan": r["seconds_per_plan"], "seconds_per_env_step": r.get("seconds_per_env_step"),
            "mean_final_distance": r["mean_final_distance"],
            # the world model's error on the planner's own actions (None: the agent imagines nothing)
            "closed_loop_position_error": r.get("closed_loop_position_error")}


def summarise(run: dict) -> dict:
    results = run["results"]
    settings = run["settings"]
    main = next(k for k in results if k.startswith(settings["planners"][0]) and k.endswith("(world model)"))
    head = results[main]
    rows = {name: row(r) for name, r in results.items()}
    return {
        "env": run["env"], "protocol": run["protocol"]["name"], "agent": main,
        "success": head["success"], "ci95": head["wilson95"], "per_seed": head["success_per_seed"],
        "episodes": head["episodes"], "seeds": run["protocol"]["seeds"],
        "seconds_per_plan": head["seconds_per_plan"], "seconds_per_env_step": head.get("seconds_per_env_step"),
        "random_policy_success": results.get("random policy", {}).get("success"),
        "oracle_success": next((r["success"] for k, r in results.items()
                                if k.startswith(settings["planners"][0]) and k.endswith("(oracle simulator)")), None),
        "trajectory_replay_success": results.get("trajectory replay", {}).get("success"),
        "encoder": run.get("encoder"), "world_model": run["world_model"],
        "planner": {k: settings.get(k) for k in ("planners", "planner_options", "horizon", "action_repeat", "execute",
                                                 "distance", "cost_mode", "action_weight")},
        # imagined position error after 1..horizon model steps along held-out data, beside "nothing moves"
        "rollout_position_error_by_horizon": run.get("rollout_position_error_by_horizon"),
        "protocol_settings": run["protocol"], "rows": rows, "references": REFERENCES.get(run["env"], {}),
        "command": run.get("command"),
        # runs recorded before the CPU's model name was: summarised on the machine that made them
        "hardware": {"cpu": cpu_model(), **run["provenance"]["hardware"]},
        "git_sha": run["provenance"]["git_sha"], "date": run.get("date"),
        "complete": run.get("complete", True),
    }


def check_same_evaluation(summary: dict, run: dict, flag: str) -> None:
    """A run stands beside the headline only if it planned the same episodes the same way."""
    if (run["protocol"]["name"], run["protocol"]["seeds"], run["protocol"]["episodes_per_seed"]) != (
            summary["protocol"], summary["seeds"], summary["protocol_settings"]["episodes_per_seed"]):
        raise SystemExit(f"{flag}: that run used another protocol, seeds or episode count")
    other = {k: run["settings"].get(k) for k in summary["planner"]}
    if other != summary["planner"]:
        changed = ", ".join(f"{k} {other[k]} (here {v})" for k, v in summary["planner"].items() if other[k] != v)
        raise SystemExit(f"{flag}: that run planned with other settings: {changed}")


def add_random_init(summary: dict, run: dict) -> None:
    """The random-init encoder's headline row beside ours."""
    check_same_evaluation(summary, run, "--random_init")
    r = run["results"][summary["agent"]]
    summary["random_init_success"] = r["success"]
    summary["random_init_encoder"] = run.get("encoder")
    summary["random_init_command"] = run.get("command")
    summary["rows"][summary["agent"].replace("(world model)", "(world model, random-init encoder)")] = row(r)


def add_fits(summary: dict, runs: list[dict]) -> None:
    """World models fitted from other seeds, planned on the same episodes: each one's success and the mean of all."""
    fits = [{"world_model": summary["world_model"], "success": summary["success"], "per_seed": summary["per_seed"],
             "command": summary["command"]}]
    for run in runs:
        check_same_evaluation(summary, run, "--fits")
        if any(run["world_model"] == f["world_model"] for f in fits):
            raise SystemExit(f"--fits: {run['world_model']} is already counted (one run per fitted world model)")
        r = run["results"][summary["agent"]]
        fits.append({"world_model": run["world_model"], "success": r["success"], "per_seed": r["success_per_seed"],
                     "command": run.get("command")})
    summary["world_model_fits"] = fits
    summary["success_mean_over_fits"] = sum(f["success"] for f in fits) / len(fits)


def markdown(s: dict) -> str:
    p = s["protocol_settings"]
    lines = [f"# {s['env']}: {s['protocol']}", "",
             f"{s['episodes']} episodes ({p['episodes_per_seed']} x seeds {p['seeds']}), budget {p['budget']} env "
             f"steps, frameskip {p['frameskip']}, horizon {p['horizon']}, receding horizon {p['receding_horizon']}; "
             f"success: {p['success']}.", "",
             "| agent | success | Wilson 95 % | per seed | s / plan | s / env step |", "|---|---|---|---|---|---|"]
    for name, r in s["rows"].items():
        lo, hi = r["ci95"]
        per = ", ".join(f"{v:.0%}" for v in r["per_seed"])
        step = f"{r['seconds_per_env_step']:.3f}" if r["seconds_per_env_step"] is not None else "-"
        lines.append(f"| {name} | {r['success']:.1%} | {lo:.1%} - {hi:.1%} | {per} | {r['seconds_per_plan']:.3f} | "
                     f"{step} |")
    if s["references"]:
        lines += ["", "Published (their protocol and hardware, not measured here): " + ", ".join(
            f"{k} {v:.0%}" for k, v in s["references"].items()) + "."]
    errors = s.get("rollout_position_error_by_horizon")
    executed = s["rows"][s["agent"]].get("closed_loop_position_error")
    if errors and executed is not None:
        along = ", ".join(f"{a:.3f}" for a in errors["world_model"])
        still = ", ".join(f"{b:.3f}" for b in errors["no_change"])
        lines += ["", f"Imagined position error of the world model: {along} after 1, 2, ... model steps along held-out "
                  f"trajectories (nothing moves: {still}); {executed:.3f} on the actions the planner "
                  "executed."]
    fits = s.get("world_model_fits")
    if fits:
        each = ", ".join(f"{f['success']:.1%} (`{f['world_model']}`)" for f in fits)
        lines += ["", f"The same episodes planned on {len(fits)} world models fitted from different seeds: {each}; "
                  f"mean **{s['success_mean_over_fits']:.1%}**."]
    hw = s["hardware"]
    lines += ["", f"Command: `{s['command']}`", ""]
    if "random_init_command" in s:
        lines += [f"Random-init encoder (`jepa export --random_init`, its world model trained with the same config): "
                  f"`{s['random_init_command']}`", ""]
    lines += [
              f"Encoder: `{s['encoder']}`; world model: `{s['world_model']}`.", "",
              f"Hardware: {hw.get('cpu_count')} cores, {hw.get('cpu')}, {hw.get('torch_threads')} torch threads; "
              f"git {s['git_sha']}; {s['date']}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", help="results.json of a jepa plan run")
    p.add_argument("--random_init", default=None,
                   help="results.json of the same evaluation on a world model over a random-init encoder")
    p.add_argument("--fits", nargs="+", default=[],
                   help="results.json of the same evaluation on world models fitted from other seeds")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/control"), help="folder of the results files")
    args = p.parse_args()
    summary = summarise(json.loads(Path(args.results).read_text()))
    if args.random_init:
        add_random_init(summary, json.loads(Path(args.random_init).read_text()))
    if args.fits:
        add_fits(summary, [json.loads(Path(f).read_text()) for f in args.fits])
    out = Path(args.out)
    write_json(out / f"{summary['env']}.json", summary)
    write_text(out / f"{summary['env']}.md", markdown(summary))
    over_fits = f", mean over fits {summary['success_mean_over_fits']:.1%}" if args.fits else ""
    print(f"wrote {out / summary['env']}.json and .md: {summary['agent']} {summary['success']:.1%}{over_fits}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
