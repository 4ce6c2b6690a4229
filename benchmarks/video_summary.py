"""Gather `jepa probe` clip results (one results.json per seed) into benchmarks/results/video/summary.json and its
.md twin: labels -> LABEL -> PROBE -> ENCODER -> [one accuracy per seed], with the command, hardware and date of
every run it read. PROBE is linear, knn or attentive, and linear/P, knn/P for the other time poolings P a run probed.
Results of several clip datasets (motion clips, the control environments' episodes) are gathered per dataset
(`datasets -> NAME -> seeds, clips, runs`) into the one `labels` map.

    python benchmarks/video_summary.py runs/vjepa_motion_fmnist/probe/results.json \
        runs/vjepa_motion_fmnist_s1/probe/results.json runs/vjepa_motion_fmnist_s2/probe/results.json

Row names of `jepa probe` map to the summary's encoders: the checkpoint's row (`jepa`) is `vjepa`, `random init` is
`random_init`, references keep their names (`ijepa_framewise`). A control environment's episodes are the dataset
`<env>_episodes` and its labels `<env>/<label>` (clips that predate the env's record: `trajectory_clips`, unprefixed
labels). `--plan ENV ENCODER RESULTS` (repeatable) adds a `jepa plan` run's headline planner as planning -> ENV ->
ENCODER -> success; runs of one environment must share the protocol, seeds, episodes and planner settings (only the
world model may differ), or the summary refuses them. The summary already at --out keeps the datasets and the
planning rows this call does not measure again: one dataset or environment is re-measured at a time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jepa.errors import ConfigError  # noqa: E402
from jepa.io import write_json, write_text  # noqa: E402

ENCODER_NAMES = {"jepa": "vjepa", "random init": "random_init"}
PROBES = ("linear", "knn", "attentive")
# planner settings that may differ between the compared runs of one environment
PLAN_FREE_SETTINGS = ("world_model", "encoder_ckpt", "out", "overwrite", "threads", "show", "oracle", "random_policy",
                      "trajectory_replay")


def planning(runs: list[tuple[str, str, str]]) -> dict:
    """(env, encoder, jepa plan results.json) triples -> env -> encoder -> the headline planner's figures."""
    out: dict = {}
    settings: dict = {}
    for env, encoder, path in runs:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: not a readable jepa plan results.json ({err})") from err
        if not record.get("complete"):
            raise ConfigError(f"{path}: the plan run is not complete")
        fixed = {k: v for k, v in record["settings"].items() if k not in PLAN_FREE_SETTINGS}
        first = settings.setdefault(env, (path, fixed))
        differ = sorted(k for k in fixed.keys() | first[1].keys() if fixed.get(k) != first[1].get(k))
        if differ:
            raise ConfigError(f"{path} and {first[0]} plan {env} with different settings: {', '.join(differ)}")
        headline = next(name for name in record["results"] if "(world model)" in name)
        r = record["results"][headline]
        out.setdefault(env, {})[encoder] = {
            "success": r["success"], "per_seed": r["success_per_seed"], "ci95": r["wilson95"],
            "episodes": r["episodes"], "seconds_per_plan": r["seconds_per_plan"], "planner": headline,
            "world_model": record["world_model"], "encoder_ckpt": record.get("encoder"), "results": path,
            "command": record.get("command"), "date": record.get("date"),
            "hardware": record["provenance"].get("hardware")}
    return out


def dataset_name(clips: dict) -> str:
    return f"{clips['env']}_episodes" if clips.get("env") else clips["dataset"]


def label_key(clips: dict, label: str) -> str:
    """The summary's name of a probe label: prefixed with the env whose episodes the clips are."""
    return f"{clips['env']}/{label}" if clips.get("env") else label


def gather(records: list[dict]) -> dict:
    """labels -> label -> probe -> encoder -> [accuracy of each record, in order]."""
    labels: dict = {}
    for record in records:
        for row_name, row in record["rows"].items():
            encoder = ENCODER_NAMES.get(row_name, row_name)
            for label in record["labels"]:
                for probe, result in row[label].items():
                    if probe.split("/")[0] in PROBES:  # linear/avg+2x2: the linear probe on another time pooling
                        labels.setdefault(label_key(record["clips"], label), {}).setdefault(probe, {}).setdefault(
                            encoder, []).append(result["test_acc"])
    return labels


def table(labels: dict, seeds: int) -> str:
    names = encoders(labels)
    lines = [f"| label | probe | {' | '.join(names)} | vjepa - random_init |", "|---|---|" + "---:|" * (len(names) + 1)]
    for label, probes in labels.items():
        for probe, rows in probes.items():
            cells = [mean_std(rows.get(e, [])) for e in names]
            diff = ""
            if len(rows.get("vjepa", [])) == len(rows.get("random_init", [])) == seeds:
                diffs = [100 * (a - b) for a, b in zip(rows["vjepa"], rows["random_init"])]
                diff = f"{statistics.mean(diffs):+.1f} ({' / '.join(f'{d:+.1f}' for d in diffs)})"
            lines.append(f"| {label} | {probe} | {' | '.join(cells)} | {diff} |")
    return "\n".join(lines)


def encoders(labels: dict) -> list[str]:
    seen: list[str] = []
    for probes in labels.values():
        for rows in probes.values():
            seen += [e for e in rows if e not in seen]
    return seen


def plan_table(plans: dict) -> str:
    if not plans:
        return ""
    lines = ["| env | encoder | success | Wilson 95 % | per seed | s / plan | episodes |",
             "|---|---|---:|---|---|---:|---:|"]
    for env, rows in plans.items():
        for encoder, r in rows.items():
            lines.append(f"| {env} | {encoder} | {100 * r['success']:.1f} % | {100 * r['ci95'][0]:.1f}-"
                         f"{100 * r['ci95'][1]:.1f} % | {' / '.join(f'{100 * v:.0f}' for v in r['per_seed'])} | "
                         f"{r['seconds_per_plan']:.2f} | {r['episodes']} |")
    return ("Planning (offline-goal protocol, the same episodes for every encoder; `jepa plan` commands in "
            "summary.json):\n\n" + "\n".join(lines) + "\n\n")


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f} %"
    return f"{100 * statistics.mean(values):.1f} +- {100 * statistics.stdev(values):.1f} %"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="*", help="jepa probe results.json of a clip dataset, one per seed (several "
                                              "datasets may be given: each gathers its own seeds)")
    p.add_argument("--out", default="benchmarks/results/video/summary.json")
    p.add_argument("--plan", nargs=3, action="append", default=[], metavar=("ENV", "ENCODER", "RESULTS"),
                   help="a jepa plan results.json planning ENV with ENCODER's world model (repeatable); without any, "
                        "the planning rows of the summary already at --out are kept")
    args = p.parse_args(argv)
    by_dataset: dict[str, list[tuple[str, dict]]] = {}
    for path in args.results:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: not a readable jepa probe results.json ({err})") from err
        if "clips" not in record:
            raise ConfigError(f"{path}: not a clip probe's results (no 'clips' key): run jepa probe --data <clips>")
        by_dataset.setdefault(dataset_name(record["clips"]), []).append((path, record))
    out = Path(args.out)
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    # the datasets this call does not measure again keep their labels and runs
    datasets = {name: d for name, d in earlier.get("datasets", {}).items() if name not in by_dataset}
    labels = {label: earlier["labels"][label] for d in datasets.values() for label in d["labels"]}
    for name, runs in by_dataset.items():
        gathered = gather([r for _, r in runs])
        shared = set(gathered) & set(labels)
        if shared:
            raise ConfigError(f"label {sorted(shared)[0]!r} comes from two clip datasets; summarise them apart")
        labels.update(gathered)
        clips = runs[0][1]["clips"]
        datasets[name] = {"seeds": len(runs), "clips": clips,
                          "labels": [label_key(clips, label) for label in runs[0][1]["labels"]],
                          "runs": [{"results": path, "checkpoint": r["checkpoint"], "wall_time_s": r["wall_time_s"],
                                    "hardware": r["provenance"]["hardware"], "date": r.get("date"),
                                    "command": r.get("command")} for path, r in runs]}
    plans = {**(earlier.get("planning") or {}), **planning(args.plan)}  # an env given again replaces its rows
    summary = {"labels": labels, "planning": plans, "datasets": datasets}
    write_json(out, summary)
    sections = []
    for name, d in datasets.items():
        mine = {label: labels[label] for label in d["labels"]}
        sections.append(f"## {name}, {d['seeds']} seed(s)\n\n{table(mine, d['seeds'])}\n\nRuns:\n" + "\n".join(
            f"- `{r['results']}` ({r['checkpoint']}, {r['date']})" for r in d["runs"]))
    md = ("# Video probes\n\nAccuracy on the test clips, mean +- std over seeds; the last column is the paired "
          "difference (points, per seed).\n\n" + "\n\n".join(sections) + "\n\n" + plan_table(plans))
    write_text(out.with_suffix(".md"), md)
    print(md + f"\nwrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConfigError as err:
        sys.exit(f"video_summary: {err}")
