"""Planner latency: seconds for one planning step (one `Planner.plan` call) on the world-model shapes of the
control recipes, on the CPU and on a GPU side by side.

One planning step = the planner's iterations, each drawing `samples` action sequences and scoring them with the
goal cost of a predictor rollout (`ActionConditionedPredictor.rollout` from `context` true frames, `horizon` x
`repeat` predictor steps, mse to a goal latent summed over the horizon): what `jepa plan` runs before every
executed action. Weights are random (latency does not depend on them); shapes come from the configs:

- point_maze: configs/control/point_maze.yaml + plan_point_maze.yaml (4 tokens x 512, predictor 64 x 3, CEM
  128 x 3, 12 actions held 2 -> 24 predictor steps);
- large: a V-JEPA 2-AC-like width on 8 x 8 tokens (64 tokens x 768, predictor 384 x 6), to show where a GPU pays.

Prints JSON lines (median / min / max over timed plans, predictor rollouts per second). Needs only torch and timm.

    python benchmarks/plan_step.py --devices cpu,cuda --shapes point_maze,large --samples 128,1024
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from jepa_control.cost import GoalCost  # noqa: E402
from jepa_control.planners import make_planner  # noqa: E402
from jepa_control.predictor import ActionConditionedPredictor  # noqa: E402

# token_dim, num_tokens, embed_dim, depth, heads, context, horizon, action repeat, action_dim
SHAPES = {
    "point_maze": dict(token_dim=512, num_tokens=4, embed_dim=64, depth=3, heads=4, context=2, horizon=12, repeat=2,
                       action_dim=2),
    "large": dict(token_dim=768, num_tokens=64, embed_dim=384, depth=6, heads=6, context=2, horizon=8, repeat=1,
                  action_dim=7),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_plans(shape: dict, planner_name: str, samples: int, iterations: int, device: torch.device,
               plans: int, warmup: int, bf16: bool) -> list[float]:
    torch.manual_seed(0)
    model = ActionConditionedPredictor(shape["token_dim"], shape["num_tokens"], shape["action_dim"],
                                       shape["embed_dim"], shape["depth"], shape["heads"], motion=True,
                                       whiten=True).to(device).eval()
    n, d, k, r = shape["num_tokens"], shape["token_dim"], shape["context"], shape["repeat"]
    history = torch.randn(1, k, n, d, device=device)
    between = torch.zeros(1, k - 1, shape["action_dim"], device=device)
    goal = torch.randn(n, d, device=device)
    cost = GoalCost("mse")
    options = {"samples": samples, "iterations": iterations}
    if planner_name == "cem":
        options["elites"] = max(1, samples // 10)
    planner = make_planner(planner_name, shape["horizon"], shape["action_dim"], device=device, **options)

    def cost_fn(actions: torch.Tensor) -> torch.Tensor:
        s = len(actions)
        held = actions.repeat_interleave(r, -2)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            states = model.rollout(history.expand(s, -1, -1, -1), between.expand(s, -1, -1), held, k)
        return cost(states[:, r - 1::r].float(), goal, actions)

    times = []
    for i in range(warmup + plans):
        sync(device)
        t0 = time.perf_counter()
        planner.plan(cost_fn)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shapes", default="point_maze", help=f"comma-separated: {', '.join(SHAPES)}")
    p.add_argument("--planners", default="cem", help="comma-separated: cem, mppi")
    p.add_argument("--samples", default="128", help="comma-separated candidate counts per iteration")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--plans", type=int, default=5, help="timed planning steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (docs/design.md: set it explicitly)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the rollouts (CUDA)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for shape_name in args.shapes.split(","):
        if shape_name not in SHAPES:
            raise SystemExit(f"unknown shape {shape_name!r}: use {', '.join(SHAPES)}")
        shape = SHAPES[shape_name]
        for planner_name in args.planners.split(","):
            for samples in (int(s) for s in args.samples.split(",")):
                for dev in args.devices.split(","):
                    device = torch.device(dev)
                    ts = time_plans(shape, planner_name, samples, args.iterations, device, args.plans,
                                    args.warmup, args.bf16 and device.type == "cuda")
                    med = statistics.median(ts)
                    rollouts = samples * args.iterations
                    print(json.dumps({
                        "shape": shape_name, **shape, "planner": planner_name, "samples": samples,
                        "iterations": args.iterations, "device": torch.cuda.get_device_name(device)
                        if device.type == "cuda" else platform.processor() or "cpu",
                        "threads": torch.get_num_threads(), "bf16": args.bf16 and device.type == "cuda",
                        "plan_s_median": med, "plan_s_min": min(ts), "plan_s_max": max(ts),
                        "rollouts_per_s": rollouts / med, "torch": torch.__version__}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
