"""Small-data ablations of the Fashion-MNIST I-JEPA recipe: one knob at a time, several seeds, mean +- std.

Each run is `jepa fit --config configs/ijepa/fmnist_cpu_paper.yaml` with the variant's overrides, a step budget, and the
online monitor (eval.monitors.OnlineProbe) measuring at the end: kNN and linear accuracy of the frozen target
encoder's average-pooled features, fitted on 5,000 labelled *training* images and scored on 5,000 others, plus
RankMe. The test split is never touched, so these numbers can choose a recipe.

Prints one JSON line per run and writes <results>/ablations.json and <results>/ablations.md after each run; run again
with the same settings, it skips the runs already in ablations.json (a long sweep can span several sittings). The
results folder is tracked by git (benchmarks/results/ by default) so a sweep spread over several machines adds up;
the training runs themselves (checkpoints, logs) go to --out, which is not. --jobs N runs N at a time, each on
cores / N threads (on 2 cores, two 1-thread runs did 1.2x the steps per hour of one 2-thread run).
Example: python benchmarks/ablations.py --steps 850 --seeds 0 1 2 --variants baseline,ema_0.99,sigreg_0.01

--seconds S compares variants at equal wall-clock compute instead of equal steps: each variant's seconds per step
are measured first (two short runs of the variant, so start-up cancels; once per variant, kept in the results) and
each run gets the steps that fill S seconds, so its LR and EMA schedules span the whole budget. Time only on an
otherwise idle machine (with --jobs 1).

--heldout N adds the quickstart's converged probes (benchmarks/heldout_probe.py: average-pooled linear and kNN, fitted
on the first 60,000 - N training images, scored on the last N) to each run: the minibatch monitor overstates what a
recipe gains under the quickstart's table, so choose with these.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.heldout_probe import heldout_probe  # noqa: E402
from jepa.io import write_json, write_text  # noqa: E402
from jepa.provenance import cpu_model  # noqa: E402
from jepa.seeding import fit_seed_args  # noqa: E402

BASE = ROOT / "configs" / "ijepa" / "fmnist_cpu_paper.yaml"  # each variant changes the paper recipe
MASKS = "--model.mask_sampler.init_args."
# the quickstart's recipe, which the later variants start from
KEPT = ["--data.batch_size=64", "--model.sigreg_weight=0.001", "--data.views=2", "--model.view_weight=3.0"]
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("the paper recipe: batch 256, EMA 0.996 -> 1, predictor 64 x 3, 4 targets of scale 0.15-0.2", []),
    "ema_0.99": ("EMA start 0.99", ["--model.ema_momentum=[0.99,1.0]"]),
    "ema_0.999": ("EMA start 0.999", ["--model.ema_momentum=[0.999,1.0]"]),
    "predictor_32x2": ("predictor 32 wide, 2 deep", ["--model.predictor_embed_dim=32", "--model.predictor_depth=2"]),
    "predictor_128x6": ("predictor 128 wide, 6 deep", ["--model.predictor_embed_dim=128", "--model.predictor_depth=6"]),
    "targets_small": ("4 targets of scale 0.08-0.12", [f"{MASKS}target_scale=[0.08,0.12]"]),
    "targets_large": ("2 targets of scale 0.30-0.45", [f"{MASKS}target_scale=[0.3,0.45]", f"{MASKS}num_targets=2"]),
    "sigreg_0.001": ("+ 0.001 x SIGReg", ["--model.sigreg_weight=0.001"]),
    "sigreg_0.01": ("+ 0.01 x SIGReg", ["--model.sigreg_weight=0.01"]),
    "lr_2e-3": ("peak LR 2e-3", ["--model.lr=2e-3"]),
    "batch_128": ("batch 128: twice the optimizer steps in the same time", ["--data.batch_size=128"]),
    "predictor_128x6_sigreg_0.001": ("predictor 128 x 6 + 0.001 x SIGReg",
                                     ["--model.predictor_embed_dim=128", "--model.predictor_depth=6",
                                      "--model.sigreg_weight=0.001"]),
    "batch_128_sigreg_0.001": ("batch 128 + 0.001 x SIGReg", ["--data.batch_size=128", "--model.sigreg_weight=0.001"]),
    "batch_64_sigreg_0.001": ("batch 64 + 0.001 x SIGReg", ["--data.batch_size=64", "--model.sigreg_weight=0.001"]),
    "batch_128_sigreg_0.003": ("batch 128 + 0.003 x SIGReg", ["--data.batch_size=128", "--model.sigreg_weight=0.003"]),
    "batch_32_sigreg_0.001": ("batch 32 + 0.001 x SIGReg", ["--data.batch_size=32", "--model.sigreg_weight=0.001"]),
    "batch_64_sigreg_0.003": ("batch 64 + 0.003 x SIGReg", ["--data.batch_size=64", "--model.sigreg_weight=0.003"]),
    "batch_64_sigreg_0.001_ema_0.999": ("batch 64 + 0.001 x SIGReg, EMA start 0.999",
                                       ["--data.batch_size=64", "--model.sigreg_weight=0.001",
                                        "--model.ema_momentum=[0.999,1.0]"]),
    "batch_64_sigreg_0.001_ema_0.9995": ("batch 64 + 0.001 x SIGReg, EMA start 0.9995",
                                       ["--data.batch_size=64", "--model.sigreg_weight=0.001",
                                        "--model.ema_momentum=[0.9995,1.0]"]),
    "batch_64_sigreg_0.01": ("batch 64 + 0.01 x SIGReg", ["--data.batch_size=64", "--model.sigreg_weight=0.01"]),
    "batch_64_sigreg_0.03": ("batch 64 + 0.03 x SIGReg", ["--data.batch_size=64", "--model.sigreg_weight=0.03"]),
    "batch_64_sigreg_0.1": ("batch 64 + 0.1 x SIGReg", ["--data.batch_size=64", "--model.sigreg_weight=0.1"]),
    "batch_64_sigreg_0.001_pooled_1": ("batch 64 + 0.001 x SIGReg + 1 x pooled-view term",
                                        ["--data.batch_size=64", "--model.sigreg_weight=0.001",
                                         "--model.pooled_weight=1.0"]),
    "batch_64_sigreg_0.001_pooled_0.3": ("batch 64 + 0.001 x SIGReg + 0.3 x pooled-view term",
                                          ["--data.batch_size=64", "--model.sigreg_weight=0.001",
                                           "--model.pooled_weight=0.3"]),
    "batch_64_sigreg_0.05_pooled_1": ("batch 64 + 0.05 x SIGReg + 1 x pooled-view term (LeJEPA's balance)",
                                       ["--data.batch_size=64", "--model.sigreg_weight=0.05",
                                        "--model.pooled_weight=1.0"]),
    "batch_64_sigreg_0.001_views_2": ("batch 64 + 0.001 x SIGReg + LeJEPA's term on 2 augmented views (weight 1)",
                                       ["--data.batch_size=64", "--model.sigreg_weight=0.001", "--data.views=2",
                                        "--model.view_weight=1.0"]),
    "batch_64_sigreg_0.001_views_2_w3": ("batch 64 + 0.001 x SIGReg + LeJEPA's term on 2 augmented views (weight 3)",
                                          [*KEPT]),
    "batch_64_sigreg_0.001_views_2_w10": ("batch 64 + 0.001 x SIGReg + LeJEPA's term on 2 augmented views (weight 10)",
                                           ["--data.batch_size=64", "--model.sigreg_weight=0.001", "--data.views=2",
                                            "--model.view_weight=10.0"]),
    "batch_64_sigreg_0.001_views_4_w3": ("batch 64 + 0.001 x SIGReg + LeJEPA's term on 4 augmented views (weight 3)",
                                          ["--data.batch_size=64", "--model.sigreg_weight=0.001", "--data.views=4",
                                           "--model.view_weight=3.0"]),
    "batch_64_sigreg_0.001_views_2_w3_lr_2e-3": ("the 2-view recipe (weight 3) at peak LR 2e-3",
                                                 [*KEPT, "--model.lr=2e-3"]),
    "batch_64_sigreg_0.001_views_2_local_4_w3": ("the 2-view recipe (weight 3) + 4 local views (12 px, scale 0.05-0.3)",
                                                 [*KEPT, "--data.local_views=4", "--data.local_size=12"]),
    "batch_64_sigreg_0.001_views_2_local_8_w3": ("the 2-view recipe (weight 3) + 8 local views (12 px, scale 0.05-0.3)",
                                                 [*KEPT, "--data.local_views=8", "--data.local_size=12"]),
    # encoder width / depth against steps, on the kept recipe (heads stay 4, so the predictor's 64 still divides)
    **{f"batch_64_sigreg_0.001_views_2_w3_{name}": (f"the 2-view recipe (weight 3), encoder {what}", [*KEPT, *args])
       for name, what, args in (("width_96", "96 wide", ["--model.embed_dim=96"]),
                                ("width_192", "192 wide", ["--model.embed_dim=192"]),
                                ("depth_2", "2 deep", ["--model.depth=2"]),
                                ("depth_6", "6 deep", ["--model.depth=6"]),
                                # 7-px patches: a 4 x 4 grid, 16 tokens against 49, so ~2.5x the steps in the time
                                ("patch_7", "patch 7 (4 x 4 tokens)", ["--model.patch_size=7"]),
                                ("patch_7_width_192", "patch 7, 192 wide",
                                 ["--model.patch_size=7", "--model.embed_dim=192"]),
                                ("ema_0.99", "EMA start 0.99", ["--model.ema_momentum=[0.99,1.0]"]))},
    # augmentation and regulariser knobs of the kept recipe: the multi-view term dominates its loss, so how strongly
    # the views differ and how hard SIGReg spreads them may matter more than the I-JEPA knobs above
    **{f"batch_64_sigreg_0.001_views_2_w3_{name}": (f"the 2-view recipe (weight 3), {what}", [*KEPT, *args])
       for name, what, args in (("crop_0.14", "crops of 14-100 % of the image", ["--data.crop_scale=[0.14,1.0]"]),
                                ("crop_0.08", "crops of 8-100 % of the image", ["--data.crop_scale=[0.08,1.0]"]),
                                ("view_sigreg_0.2", "SIGReg's share of the multi-view term 0.2",
                                 ["--model.view_sigreg_share=0.2"]),
                                ("view_sigreg_0.5", "SIGReg's share of the multi-view term 0.5",
                                 ["--model.view_sigreg_share=0.5"]),
                                ("wd_0.04", "weight decay held at 0.04", ["--model.final_weight_decay=0.04"]))},
    # Not a knob of the paper: the shared-context speed option (docs/performance.md) changes the predictor's
    # computation, so it needs the same seeds-deep probe A/B as any recipe change before a recipe may turn it on.
    "shared_context": ("shared-context predictor (a speed option)", ["--model.predictor_shared_context=true"]),
}

# Variants whose knob leaves a step's cost unchanged (an EMA schedule) take the step budget of the variant they
# modify: two calibrations of one cost differed by up to 30 %, which would decide the comparison instead of the knob.
SAME_COST_AS = {"batch_64_sigreg_0.001_ema_0.999": "batch_64_sigreg_0.001",
                "batch_64_sigreg_0.001_ema_0.9995": "batch_64_sigreg_0.001",
                # the pooled-view term costs a mean and a layer norm per image, next to the encoders' passes
                "batch_64_sigreg_0.001_pooled_1": "batch_64_sigreg_0.001",
                "batch_64_sigreg_0.001_pooled_0.3": "batch_64_sigreg_0.001",
                "batch_64_sigreg_0.05_pooled_1": "batch_64_sigreg_0.001",  # SIGReg's cost is the same at any weight
                "batch_64_sigreg_0.001_views_2_w3": "batch_64_sigreg_0.001_views_2",
                "batch_64_sigreg_0.001_views_2_w10": "batch_64_sigreg_0.001_views_2",
                "batch_64_sigreg_0.001_views_2_w3_lr_2e-3": "batch_64_sigreg_0.001_views_2",
                **{f"batch_64_sigreg_0.001_views_2_w3_{knob}": "batch_64_sigreg_0.001_views_2"
                   for knob in ("crop_0.14", "crop_0.08", "view_sigreg_0.2", "view_sigreg_0.5", "wd_0.04",
                                "ema_0.99")}}


def seconds_per_step(short: tuple[int, float], long: tuple[int, float]) -> float:
    """Training seconds per step from two runs of (steps, wall seconds): their difference leaves out the start-up
    both pay."""
    (k1, t1), (k2, t2) = short, long
    if k2 <= k1:
        raise ValueError(f"the calibration runs need different step counts, got {k1} and {k2}")
    if t2 <= t1:  # another job slowed the short run: its difference would give a near-endless step budget
        raise ValueError(f"the calibration run of {k2} steps took {t2} s, no longer than the {k1}-step run's {t1} s: "
                         "the machine was busy; calibrate on an idle machine")
    return (t2 - t1) / (k2 - k1)


def steps_for_budget(seconds: float, short: tuple[int, float], long: tuple[int, float]) -> int:
    """The steps a run can take in `seconds` of training (its start-up comes on top)."""
    return max(1, int(seconds / seconds_per_step(short, long)))


def calibrate(variant: str, out: Path, jepa: list[str], limit_train: int, samples: int,
              steps: tuple[int, int] = (10, 40)) -> dict:
    """Seconds per step of a variant, from two short runs (seed 0)."""
    timed = []
    for k in steps:
        row = run(variant, 0, k, out / "calibration", jepa, limit_train, samples, probe=False)
        timed.append((k, row["seconds"]))
    return {"runs": timed, "seconds_per_step": round(seconds_per_step(*timed), 4), "cpu": cpu_model(), "date": time.strftime("%Y-%m-%d")}


def run(variant: str, seed: int, steps: int, out: Path, jepa: list[str], limit_train: int, samples: int,
        jobs: int = 1, probe: bool = True, heldout: int = 0) -> dict:
    """One training run and its final monitor readings; with jobs > 1 it shares the CPU with jobs - 1 others and
    gets cores / jobs threads (its `seconds` are then those of a shared machine, recorded as `parallel_runs`)."""
    run_dir = out / variant / f"seed{seed}"
    argv = [*jepa, "fit", "--config", str(BASE), *VARIANTS[variant][1], *fit_seed_args(seed),
            f"--trainer.max_steps={steps}", f"--trainer.default_root_dir={run_dir}", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--overwrite=true"]
    if probe:
        argv += ["--trainer.callbacks+=eval.monitors.OnlineProbe", f"--trainer.callbacks.every_n_steps={steps}",
                 f"--trainer.callbacks.fit_samples={samples}", f"--trainer.callbacks.query_samples={samples}",
                 "--trainer.callbacks.plot=false", "--trainer.callbacks.at_start=false"]
    if limit_train:
        argv.append(f"--data.limit_train={limit_train}")
    env = dict(os.environ)
    if jobs > 1:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    started = time.time()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False, env=env)
    if proc.returncode != 0:
        raise RunFailed(f"{variant} seed {seed} failed:\n{proc.stderr[-3000:]}")
    if not probe:
        return {"variant": variant, "steps": steps, "seconds": round(time.time() - started, 1)}
    seconds = round(time.time() - started, 1)
    final = json.loads((run_dir / "monitors.json").read_text())["history"][-1]
    converged = heldout_probe(run_dir / "checkpoints" / "last.ckpt", heldout) if heldout else {}
    return {"variant": variant, "seed": seed, "steps": steps, "knn_acc": final["knn_acc"],
            "linear_acc": final["linear_acc"], "rankme": final["rankme"], **converged, "seconds": seconds,
            "parallel_runs": jobs, "cpu": cpu_model(), "date": time.strftime("%Y-%m-%d")}


class RunFailed(RuntimeError):
    """A training run of the sweep exited with an error (its stderr's tail is the message)."""


def table(rows: list[dict], budget: dict, samples: int, holdout: int = 0) -> str:
    def stat(values):  # mean +- sample std; one seed has no spread to show
        values = [100 * v for v in values]
        spread = f" +- {statistics.stdev(values):.1f}" if len(values) > 1 else ""
        return f"{statistics.mean(values):.1f}{spread}"

    heldout = holdout > 0 and all("heldout_avg" in r for r in rows)
    extra = " held-out avg linear (%) | held-out kNN (%) | random init, held-out avg / kNN (%) |" if heldout else ""
    lines = [f"| variant | kNN acc (%) | linear acc (%) |{extra} RankMe | steps | run s | seeds |",
             "|---|---:|---:|" + ("---:|---:|---:|" if heldout else "") + "---:|---:|---:|---:|"]
    for name, (what, _) in VARIANTS.items():
        runs = [r for r in rows if r["variant"] == name]
        if runs:
            rank = statistics.mean(r["rankme"] for r in runs)
            random = [r for r in runs if "heldout_random_avg" in r]  # runs probed before it was measured lack it
            random_cell = (f"{stat([r['heldout_random_avg'] for r in random])} / "
                           f"{stat([r['heldout_random_knn'] for r in random])}" if random else "-")
            cells = (f" {stat([r['heldout_avg'] for r in runs])} | {stat([r['heldout_knn'] for r in runs])} |"
                     f" {random_cell} |" if heldout else "")
            wall = [r["seconds"] for r in runs if "seconds" in r]
            wall_cell = f"{statistics.mean(wall):.0f}" if wall else "-"
            lines.append(f"| {name}: {what} | {stat([r['knn_acc'] for r in runs])} | "
                         f"{stat([r['linear_acc'] for r in runs])} |{cells} {rank:.1f} | {runs[0]['steps']} | "
                         f"{wall_cell} | {len(runs)} |")
    size = (f"{budget['seconds']:g} seconds of training per run (the steps that fill them, measured per variant)"
            if "seconds" in budget else f"{budget['steps']} optimizer steps per run")
    lines += ["", f"{size}, batch 256 unless the variant says otherwise; average-pooled target-encoder features; "
              f"probes fitted on {samples:,} training images and scored on {samples:,} other training images (the test "
              "split is not used); mean +- standard deviation over the seeds (n - 1 in its denominator). Run s: the wall "
              "seconds of the whole training command (start-up and the final monitor included), which shows how well "
              "the step budget matched the time asked for."]
    if heldout:
        lines.append(f"The held-out columns are the quickstart's converged probes (benchmarks/heldout_probe.py), fitted "
                     f"on all but the last {holdout:,} training images and scored on those, beside the same "
                     "architecture at random init (seed 0).")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=850, help="optimizer steps per run (the quickstart's budget)")
    p.add_argument("--seconds", type=float, default=None,
                   help="instead of --steps: each run trains for the steps that fill this many seconds, measured per "
                        "variant (equal wall-clock compute)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--limit_train", type=int, default=0, help="pretrain on the first N images (0: all 60k)")
    p.add_argument("--probe_samples", type=int, default=5000, help="labelled training images to fit on, and to score on")
    p.add_argument("--heldout", type=int, default=0,
                   help="also score each run with the quickstart's converged probes on the last N training images")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time, each with cores / jobs threads (2 x 1 thread on 2 cores: 1.2x the runs per "
                        "hour of one run with 2 threads)")
    p.add_argument("--out", default="runs/ablations", help="the training runs (checkpoints, logs)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "ablations"),
                   help="ablations.json and ablations.md (tracked by git, so the sweep adds up across machines)")
    args = p.parse_args()
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}: choose from {', '.join(VARIANTS)}")
    out = Path(args.out)
    jepa = [sys.executable, "-m", "jepa.cli"]
    budget = {"seconds": args.seconds} if args.seconds else {"steps": args.steps}
    setting = {**budget, "limit_train": args.limit_train, "probe_samples": args.probe_samples,
               **({"heldout": args.heldout} if args.heldout else {})}
    results = Path(args.results)
    rows = finished_runs(results / "ablations.json", setting)
    calibration = saved_calibration(results / "ablations.json") if args.seconds else {}
    if args.seconds and args.jobs > 1:
        raise SystemExit("--seconds times each variant: run it with --jobs 1 on an otherwise idle machine")

    def steps_of(name: str) -> int:
        if not args.seconds:
            return args.steps
        name = SAME_COST_AS.get(name, name)
        if name not in calibration:
            calibration[name] = calibrate(name, out, jepa, args.limit_train, args.probe_samples)
            print(json.dumps({"calibration": name, **calibration[name]}), flush=True)
        runs = calibration[name]["runs"]
        return steps_for_budget(args.seconds, tuple(runs[0]), tuple(runs[1]))

    # seeds outermost: a cut-short sweep still has every variant at the first seeds; runs an earlier, cut-short
    # sweep of the same setting measured are not run again
    pending = [(name, seed) for seed in args.seeds for name in names
               if not any(r["variant"] == name and r["seed"] == seed for r in rows)]
    lock, failed = threading.Lock(), threading.Event()

    def one(name: str, seed: int) -> None:
        if failed.is_set():
            return  # a run failed: the runs under way finish and are saved, none new starts
        try:
            row = run(name, seed, steps_of(name), out, jepa, args.limit_train, args.probe_samples, args.jobs,
                      heldout=args.heldout)
        except BaseException:  # a failed run, an unreadable monitors.json, an interrupt
            failed.set()
            raise
        with lock:  # each finished run is saved at once, so a cut sweep loses only the runs under way
            rows.append(row)
            print(json.dumps(row), flush=True)
            write_json(results / "ablations.json", {**setting, "runs": rows,
                                                    **({"calibration": calibration} if calibration else {})})
            write_text(results / "ablations.md", table(rows, budget, args.probe_samples, args.heldout) + "\n")

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(one, name, seed) for name, seed in pending]
        for future in as_completed(futures):
            error = future.exception()
            if error is not None:
                raise SystemExit(str(error) if isinstance(error, RunFailed) else f"{type(error).__name__}: {error}")
    # also with none to run
    write_text(results / "ablations.md", table(rows, budget, args.probe_samples, args.heldout) + "\n")
    print(table(rows, budget, args.probe_samples, args.heldout))


def saved_calibration(path: Path) -> dict:
    """Seconds per step measured per variant by an earlier sweep of the same results file."""
    return json.loads(path.read_text()).get("calibration", {}) if path.exists() else {}


def finished_runs(path: Path, setting: dict) -> list[dict]:
    """The runs an earlier sweep wrote to `path`, so a sweep cut short (a 20-minute run each) goes on where it
    stopped; a different step budget, training subset or probe size starts afresh rather than mixing settings."""
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    earlier = {key: saved.get(key) for key in setting}
    if earlier != setting:
        raise SystemExit(f"{path} holds runs of {earlier}, not {setting}: pass another --results or remove it")
    return saved["runs"]


if __name__ == "__main__":
    main()
