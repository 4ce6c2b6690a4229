"""Gather `jepa quickstart` runs (one results.json per seed) into benchmarks/results/recipe/summary.json and its .md
twin: the I-JEPA row's average-pooled linear, flat linear and kNN accuracy beside the random init of the same runs
(mean over seeds, every seed's figure, and the paired margin per seed), with the command, hardware and date of each
run it read.

    python benchmarks/recipe_summary.py --quickstart runs/recipe/quickstart_s0/results.json \
        runs/recipe/quickstart_s1/results.json runs/recipe/quickstart_s2/results.json

`--full` takes the full recipe's runs the same way. A section not given keeps what the summary file already holds,
so a better measurement replaces only its own section; a section never measured is written with null figures.
`--add` adds the runs given to the seeds their section already holds (seeds run on other days or machines; a seed
given again replaces its earlier figures), refusing runs of another recipe; each seed keeps its own command,
hardware and date, and the section's `hardware` lists one machine per seed where they differ.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jepa.errors import ConfigError  # noqa: E402
from jepa.io import write_json, write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "recipe"
FIGURES = ("avg", "flat", "knn", "random_init_avg", "random_init_knn")
PER_RUN_KEYS = ("seed_everything", "overwrite", "trainer.default_root_dir", "model.init_args.mask_seed",
                "data.init_args.seed", "data.init_args.root")
TIME_TO_ACCURACY = {"ours_s_to_85": None, "official_s_to_85": None, "ratio": None}


def seed_figures(record: dict) -> dict:
    """One quickstart results.json -> its figures (fractions; None where the protocol was not run)."""
    rows = record["rows"]

    def linear(row: str, protocol: str):
        found = rows[row]["linear"].get(protocol)
        return found["test_acc"] if found else None

    return {"avg": linear("I-JEPA", "avg"), "flat": linear("I-JEPA", "flat"), "knn": rows["I-JEPA"]["knn"]["avg"],
            "random_init_avg": linear("random init", "avg"), "random_init_knn": rows["random init"]["knn"]["avg"],
            "rankme": record.get("feature_spread", {}).get("I-JEPA", {}).get("rankme"),
            "train_seconds": record["seconds"]["pretrain"], "total_seconds": record["seconds"]["total"],
            "steps": record["pretrain"]["optimizer_steps"]}


def recipe_of(record: dict) -> str:
    """The resolved training config without what differs between seeds of one recipe (seeds, run folder, data
    folder), so runs of one recipe compare equal."""
    config = yaml.safe_load(record["config"])
    for path in PER_RUN_KEYS:
        *parents, key = path.split(".")
        node = config
        for parent in parents:
            node = (node or {}).get(parent) or {}
        node.pop(key, None)
    return json.dumps(config, sort_keys=True)


def mean(values):
    values = [v for v in values if v is not None]
    return round(statistics.mean(values), 4) if values else None


def config_flag(command: str) -> str | None:
    words = shlex.split(command)
    return words[words.index("--config") + 1] if "--config" in words[:-1] else None


def section(paths: list[str], earlier: dict | None = None) -> dict:
    """The runs of one recipe (one per seed) -> mean figures, per-seed figures and where they came from; with
    `earlier` (a section of the summary), its seeds not given again are kept beside the new ones."""
    records = []
    for path in paths:
        try:
            records.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: not a readable quickstart results.json ({err})") from err
        if "seed" not in records[-1]:
            raise ConfigError(f"{path}: no seed recorded; re-run it with `jepa quickstart --seed S`")
    seeds = [r["seed"] for r in records]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"the runs repeat a seed ({seeds}): give one run per seed")
    recipes = {recipe_of(r) for r in records}
    if len(recipes) != 1:
        raise ConfigError(f"the runs were trained with different configs ({', '.join(paths)}): one recipe per section")
    recipe = hashlib.sha256(recipes.pop().encode()).hexdigest()[:16]
    per_seed = [{**seed_figures(r), "seed": r["seed"], "command": r["command"], "date": r["date"], "results": path,
                 "hardware": r["provenance"]["hardware"]} for path, r in zip(paths, records)]
    if earlier:
        # sections written before the recipe was recorded: the same recipe when their commands name the same config
        same = (earlier["recipe"] == recipe if earlier.get("recipe") else
                {config_flag(c) for c in earlier["command"]} == {config_flag(r["command"]) for r in records})
        if not same:
            raise ConfigError(f"{', '.join(paths)}: another recipe than the seeds the summary holds "
                              f"({earlier['seeds']}); replace the section without --add")
        kept = [{**f, "seed": seed, "command": command, "date": f.get("date", earlier["date"]),
                 "results": f.get("results", result), "hardware": f.get("hardware", earlier["hardware"])}
                for seed, f, command, result in zip(earlier["seeds"], earlier["per_seed"], earlier["command"],
                                                    earlier["results"]) if seed not in seeds]
        per_seed = sorted(kept + per_seed, key=lambda f: f["seed"])
    out = {key: mean(f[key] for f in per_seed) for key in (*FIGURES, "train_seconds", "total_seconds", "rankme")}
    out["margin_avg_per_seed"] = [round(f["avg"] - f["random_init_avg"], 4) for f in per_seed]
    out["margin_knn_per_seed"] = [round(f["knn"] - f["random_init_knn"], 4) for f in per_seed]
    machines = [f["hardware"] for f in per_seed]
    out.update(seeds=[f["seed"] for f in per_seed], per_seed=per_seed, command=[f["command"] for f in per_seed],
               hardware=machines[0] if all(m == machines[0] for m in machines) else machines,
               date=max(f["date"] for f in per_seed), results=[f["results"] for f in per_seed], recipe=recipe)
    return out


def unmeasured() -> dict:
    return {**dict.fromkeys((*FIGURES, "train_seconds", "total_seconds")), "seeds": [], "command": None,
            "hardware": None, "date": None}


def time_to_85(t: dict) -> str:
    """The time_to_accuracy section in words."""
    if t.get("ratio") is not None:
        return f"ours {t['ours_s_to_85']} s, official {t['official_s_to_85']} s, ratio {t['ratio']}"
    if t.get("ratio_at_least") is not None:
        return (f"ours {t['ours_s_to_85']} s; the official code did not reach 85 % in the {t['official_trained_s']} s "
                f"it trained, so the ratio is at least {t['ratio_at_least']}")
    return "not measured"


def markdown(summary: dict) -> str:
    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}"

    lines = ["| recipe | avg linear | flat linear | kNN | random init avg | random init kNN | train s | seeds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("quickstart", "full"):
        s = summary[name]
        train = "-" if s["train_seconds"] is None else f"{s['train_seconds']:.0f}"
        lines.append(f"| {name} | {pct(s['avg'])} | {pct(s['flat'])} | {pct(s['knn'])} | {pct(s['random_init_avg'])} "
                     f"| {pct(s['random_init_knn'])} | {train} | {len(s['seeds'])} |")
    t = summary["time_to_accuracy"]
    lines += ["", "Accuracy in % on the Fashion-MNIST test split, mean over seeds; the random-init rows are the same "
              "runs' starting weights. Time to 85 % average-pooled linear: "
              + time_to_85(t) + "."]
    for name, other in t.items():  # other recipes' curves, written by time_to_accuracy.py --summary_as NAME
        if isinstance(other, dict):
            lines.append(f"{name} (`{other['config']}`): {other['ours_s_to_85']} s to 85 % "
                         f"({other['ours_s_to_80']} s to 80 %).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quickstart", nargs="+", default=None, help="quickstart results.json files, one per seed")
    p.add_argument("--full", nargs="+", default=None, help="the full recipe's results.json files, one per seed")
    p.add_argument("--out", default=str(RESULTS), help="folder of summary.json and summary.md")
    p.add_argument("--add", action="store_true", help="add the runs to the seeds their section already holds")
    args = p.parse_args(argv)
    out = Path(args.out)
    path = out / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    try:
        for name, paths in (("quickstart", args.quickstart), ("full", args.full)):
            if paths:
                summary[name] = section(paths, summary.get(name) if args.add and summary.get(name, {}).get("seeds")
                                        else None)
            summary.setdefault(name, unmeasured())
    except ConfigError as err:
        raise SystemExit(f"recipe_summary: error: {err}") from None
    summary.setdefault("time_to_accuracy", dict(TIME_TO_ACCURACY))
    write_json(path, summary)
    write_text(out / "summary.md", markdown(summary))
    print(f"wrote {path} and {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
