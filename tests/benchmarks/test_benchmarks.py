"""The training-step benchmark runs end to end on a tiny configuration and reports what it promises."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_step.py"


@pytest.mark.parametrize("mode", ["eager", "ckpt", "pad"])
def test_train_step_benchmark_prints_a_json_line(mode):
    out = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "tiny", "--batch", "2", "--img", "64", "--patch", "8", "--modes",
                          mode, "--pred_dim", "48", "--pred_depth", "1", "--steps", "2", "--warmup", "1",
                          "--threads", "1", "--device", "cpu", "--memory"],
                         capture_output=True, text=True, timeout=300, check=True)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["config"]["mode"] == mode and record["config"]["batch"] == 2
    ours = record["ours"]
    assert ours["step_s_min"] <= ours["step_s_median"] <= ours["step_s_max"]
    assert ours["images_per_s"] == pytest.approx(2 / ours["step_s_median"])
    assert ours["peak_rss_mib"] > 50 and 0 < ours["step_rss_mib"] < ours["peak_rss_mib"]


def test_activation_checkpointing_gives_the_same_gradients():
    import torch

    from jepa.vit import Predictor, VisionTransformer

    torch.manual_seed(0)
    enc, pred = VisionTransformer(16, 4, 1, 32, 2, 2), Predictor(4, 32, 16, 2, 2)
    x = torch.randn(2, 1, 16, 16)
    ctx = torch.arange(10).expand(2, -1)
    tgt = [torch.arange(10, 14).expand(2, -1)]

    calls, block_forward = [], enc.blocks[0].forward

    def counted(*args, **kwargs):
        calls.append(1)
        return block_forward(*args, **kwargs)

    enc.blocks[0].forward = counted

    def grads():
        calls.clear()
        enc.zero_grad(), pred.zero_grad()
        pred(enc(x, ctx), ctx, tgt).square().mean().backward()
        return [p.grad.clone() for p in [*enc.parameters(), *pred.parameters()]], len(calls)

    plain, plain_calls = grads()
    enc.set_grad_checkpointing(True), pred.set_grad_checkpointing(True)
    checkpointed, ckpt_calls = grads()
    assert (plain_calls, ckpt_calls) == (1, 2)  # the block's forward is recomputed during backward
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed))


def test_video_benchmark_times_both_clip_pipelines_and_both_recipes(tmp_path, fmnist_root):
    script = SCRIPT.parent / "video.py"
    out = subprocess.run([sys.executable, str(script), "--clips", "16", "--batch", "4", "--repeats", "1", "--steps", "1",
                          "--workers", "1", "--threads", "1", "--data_root", fmnist_root, "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, check=True)
    records = [json.loads(line) for line in out.stdout.strip().splitlines()]
    rates = {r["pipeline"]: r for r in records if r["bench"] == "clips_per_s"}
    assert set(rates) == {"shards_pyav_crop", "generator"}
    assert all(r["clips_per_pass"] == 16 and r["clips_per_s_median"] > 0 for r in rates.values())
    assert len(list((tmp_path / "shards").glob("*.tar"))) == 1  # 16 mp4 clips written once
    steps = {r["recipe"]: r for r in records if r["bench"] == "train_step"}
    assert steps["vjepa"]["inputs"] == [4, 8, 1, 64, 64] and steps["ijepa_frames"]["inputs"] == [16, 1, 64, 64]
    assert all(r["step_s_median"] > 0 for r in steps.values())


def test_planner_latency_benchmark_prints_a_json_line():
    script = SCRIPT.parent / "plan_step.py"
    out = subprocess.run([sys.executable, str(script), "--devices", "cpu", "--shapes", "point_maze", "--samples", "8",
                          "--iterations", "2", "--plans", "2", "--warmup", "0", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, check=True)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["shape"] == "point_maze" and record["samples"] == 8 and record["horizon"] == 12
    assert record["plan_s_min"] <= record["plan_s_median"] <= record["plan_s_max"]
    assert record["rollouts_per_s"] == pytest.approx(8 * 2 / record["plan_s_median"])


def test_ablation_sweep_measures_each_run_once_and_goes_on_after_a_cut(tmp_path, fmnist_root):
    script = SCRIPT.parent / "ablations.py"
    args = [sys.executable, str(script), "--steps", "2", "--seeds", "0", "--variants", "baseline,ema_0.99",
            "--limit_train", "512", "--probe_samples", "100", "--out", str(tmp_path / "runs"), "--results",
            str(tmp_path), "--jobs", "2"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600, check=True)
    saved = json.loads((tmp_path / "ablations.json").read_text())
    runs = sorted(saved["runs"], key=lambda r: r["variant"])  # two at a time: saved in the order they finished
    assert [(r["variant"], r["seed"], r["steps"], r["parallel_runs"]) for r in runs] == [
        ("baseline", 0, 2, 2), ("ema_0.99", 0, 2, 2)]
    for r in runs:
        assert 0.0 <= r["linear_acc"] <= 1.0 and r["rankme"] > 0 and r["cpu"]
        assert (tmp_path / "runs" / r["variant"] / "seed0" / "monitors.json").exists()  # the run went to --out
    assert [json.loads(line) for line in first.stdout.splitlines()[:2]] == saved["runs"]
    assert "| baseline: the paper recipe" in (tmp_path / "ablations.md").read_text()
    assert "| ema_0.99: EMA start 0.99" in (tmp_path / "ablations.md").read_text()
    assert "+-" not in (tmp_path / "ablations.md").read_text().split("\n\n")[0]  # one seed: no spread to show
    # the same sweep again: nothing left to run, the saved runs are reported as they were and the table rewritten
    (tmp_path / "ablations.md").unlink()
    again = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    assert json.loads((tmp_path / "ablations.json").read_text()) == saved
    assert not again.stdout.startswith("{") and "| baseline: the paper recipe" in again.stdout
    assert "| baseline: the paper recipe" in (tmp_path / "ablations.md").read_text()
    # another step budget into the same folder would mix settings in one table: refused, naming both
    other = subprocess.run([*args[:3], "3", *args[4:]], capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "'steps': 2" in other.stderr and "'steps': 3" in other.stderr


def _ablations_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ablations", SCRIPT.parent / "ablations.py")
    ablations = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablations)
    return ablations


def test_ablation_table_gives_mean_and_sample_std_over_seeds():
    ablations = _ablations_module()
    rows = [{"variant": "baseline", "seed": s, "knn_acc": k, "linear_acc": k + 0.1, "rankme": r, "steps": 850}
            for s, k, r in ((0, 0.5, 2.0), (1, 0.6, 4.0), (2, 0.7, 6.0))]
    rows.append({"variant": "ema_0.99", "seed": 0, "knn_acc": 0.4, "linear_acc": 0.45, "rankme": 3.0, "steps": 850,
                 "seconds": 120.4})
    lines = ablations.table(rows, {"steps": 850}, 5000).splitlines()
    assert lines[2].endswith("| 60.0 +- 10.0 | 70.0 +- 10.0 | 4.0 | 850 | - | 3 |")  # std with n - 1: 10, not 8.2
    assert lines[3].endswith("| 40.0 | 45.0 | 3.0 | 850 | 120 | 1 |")


def test_heldout_probe_scores_on_training_images_it_did_not_fit(fmnist_root):
    from benchmarks.heldout_probe import heldout_split
    from data.fashion_mnist import load_split

    x, y = load_split(fmnist_root, "train")
    split = heldout_split(fmnist_root, 1000)
    assert len(split.train_y) == len(y) - 1000 and len(split.test_y) == 1000
    assert torch.equal(split.train_x, x[:-1000]) and torch.equal(split.test_x, x[-1000:])  # disjoint; no test split
    assert torch.equal(split.test_y, y[-1000:])
    with pytest.raises(SystemExit, match="--holdout must lie in"):
        heldout_split(fmnist_root, len(y))


def test_heldout_probe_scores_the_encoder_it_is_asked_for(tmp_path, monkeypatch):
    """--which: the EMA target encoder by default, the context encoder on request; the random-init row beside it."""
    import benchmarks.heldout_probe as heldout
    from tests.conftest import TinyData, tiny_model, tiny_trainer

    model = tiny_model()
    trainer = tiny_trainer(tmp_path, max_steps=2)
    trainer.fit(model, TinyData())
    trainer.save_checkpoint(tmp_path / "tiny.ckpt")
    first = lambda encoder: encoder.blocks[0].attn.qkv.weight  # noqa: E731
    assert not torch.equal(first(model.encoder), first(model.target_encoder))  # the EMA lags the trained weights
    probed = {}

    def fake_probe_rows(rows, data, protocols, knn, log):
        probed["rows"] = rows
        return {row.name: {"linear": {"avg": {"test_acc": 0.5}}, "knn": {"avg": 0.25}} for row in rows}

    monkeypatch.setattr(heldout, "probe_rows", fake_probe_rows)
    monkeypatch.setattr(heldout, "heldout_split", lambda root, holdout: None)
    for which, net in (("target_encoder", model.target_encoder), ("encoder", model.encoder)):
        result = heldout.heldout_probe(tmp_path / "tiny.ckpt", which=which)
        jepa, random_init = probed["rows"]
        assert torch.equal(first(jepa.encoder), first(net)) and jepa.identity["which"] == which
        assert random_init.name == "random init"
        assert result == {"heldout_avg": 0.5, "heldout_knn": 0.25, "heldout_random_avg": 0.5,
                          "heldout_random_knn": 0.25}


def test_ablation_table_adds_the_heldout_probe_columns_when_every_run_has_them():
    ablations = _ablations_module()
    row = {"variant": "baseline", "seed": 0, "knn_acc": 0.5, "linear_acc": 0.6, "rankme": 2.0, "steps": 850}
    lines = ablations.table([{**row, "heldout_avg": 0.8, "heldout_knn": 0.7}], {"steps": 850}, 5000, 10000)
    assert "held-out avg linear (%) | held-out kNN (%)" in lines.splitlines()[0]
    assert lines.splitlines()[2].endswith("| 50.0 | 60.0 | 80.0 | 70.0 | - | 2.0 | 850 | - | 1 |")
    assert "all but the last 10,000 training images" in lines
    probed = {**row, "heldout_avg": 0.8, "heldout_knn": 0.7, "heldout_random_avg": 0.75, "heldout_random_knn": 0.5}
    assert "| 80.0 | 70.0 | 75.0 / 50.0 | 2.0 |" in ablations.table([probed], {"steps": 850}, 5000, 10000)
    assert "held-out" not in ablations.table([row], {"steps": 850}, 5000, 10000)  # a run without them: no columns


def test_time_budget_gives_each_variant_the_steps_that_fill_it(tmp_path, monkeypatch):
    """--seconds: each variant's seconds per step come from two short runs (start-up cancels), once per variant
    and kept in the results; a slower variant gets proportionally fewer steps; all seeds of a variant the same."""
    ablations = _ablations_module()
    assert ablations.steps_for_budget(100.0, (10, 25.0), (40, 55.0)) == 100  # 1 s per step, 15 s of start-up
    with pytest.raises(ValueError, match="different step counts"):
        ablations.steps_for_budget(100.0, (10, 25.0), (10, 30.0))
    with pytest.raises(ValueError, match="machine was busy"):  # a disturbed short run, not an endless budget
        ablations.steps_for_budget(300.0, (10, 10.9), (40, 9.5))
    per_step = {"baseline": 0.5, "predictor_128x6": 2.0}
    calls = []

    def fake_run(variant, seed, steps, out, jepa, limit_train, samples, jobs=1, probe=True, heldout=0):
        calls.append((variant, seed, steps, probe))
        row = {"variant": variant, "steps": steps, "seconds": 7.0 + per_step[variant] * steps}  # 7 s start-up
        if probe:
            row.update(seed=seed, knn_acc=0.5, linear_acc=0.5, rankme=1.0, parallel_runs=jobs, cpu="t", date="d")
        return row

    monkeypatch.setattr(ablations, "run", fake_run)
    argv = ["ablations.py", "--seconds", "60", "--seeds", "0", "1", "--variants", "baseline,predictor_128x6",
            "--results", str(tmp_path), "--out", str(tmp_path / "runs")]
    monkeypatch.setattr(sys, "argv", argv)
    ablations.main()
    trained = {(v, seed): steps for v, seed, steps, probe in calls if probe}
    assert trained == {("baseline", 0): 120, ("baseline", 1): 120, ("predictor_128x6", 0): 30,
                       ("predictor_128x6", 1): 30}
    assert [(v, steps) for v, _, steps, probe in calls if not probe] == [
        ("baseline", 10), ("baseline", 40), ("predictor_128x6", 10), ("predictor_128x6", 40)]  # measured once each
    saved = json.loads((tmp_path / "ablations.json").read_text())
    assert saved["seconds"] == 60 and "steps" not in saved
    assert saved["calibration"]["predictor_128x6"]["seconds_per_step"] == 2.0
    assert "60 seconds of training per run" in (tmp_path / "ablations.md").read_text()
    # run again with one more seed: the calibration is reused, only the new runs train
    calls.clear()
    monkeypatch.setattr(sys, "argv", [*argv[:5], "2", *argv[5:]])
    ablations.main()
    assert [(v, seed, probe) for v, seed, _, probe in calls] == [("baseline", 2, True), ("predictor_128x6", 2, True)]


def test_ablation_sweep_stops_starting_runs_after_a_failure_and_keeps_the_finished(tmp_path, monkeypatch):
    import threading

    ablations = _ablations_module()
    other_started, baseline_failed = threading.Event(), threading.Event()

    def fake_run(variant, seed, steps, out, jepa, limit_train, samples, jobs=1, heldout=0):
        if variant == "baseline":
            other_started.wait(5)
            baseline_failed.set()
            raise ablations.RunFailed("baseline seed 0 failed: boom")
        other_started.set()
        baseline_failed.wait(5)  # under way while the other run fails
        return {"variant": variant, "seed": seed, "steps": steps, "knn_acc": 0.5, "linear_acc": 0.5, "rankme": 1.0,
                "seconds": 0.0, "parallel_runs": jobs, "cpu": "test", "date": "today"}

    monkeypatch.setattr(ablations, "run", fake_run)
    monkeypatch.setattr(sys, "argv", ["ablations.py", "--steps", "5", "--seeds", "0", "--jobs", "2", "--variants",
                                      "baseline,ema_0.99,ema_0.999", "--results", str(tmp_path), "--out",
                                      str(tmp_path / "runs")])
    with pytest.raises(SystemExit, match="baseline seed 0 failed: boom"):
        ablations.main()
    saved = json.loads((tmp_path / "ablations.json").read_text())["runs"]
    assert [r["variant"] for r in saved] == ["ema_0.99"]  # under way: finished and saved; ema_0.999 never started


def test_step_profile_attributes_the_step_to_kernel_kinds():
    sys.path.insert(0, str(SCRIPT.parent))
    from profile_step import kind_of, profile_step

    # names of the kernels an H100 / H200 step launches, and the CPU operators the tests see
    assert kind_of("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64") == "matmul"
    assert kind_of("nvjet_hsh_128x256_64x4_1x2_h_bz_coopB_TNN") == "matmul"
    assert kind_of("fmha_cutlassF_bf16_aligned_64x128_rf_sm80") == "attention"
    assert kind_of("multi_tensor_apply_kernel<FusedAdamMathFunctor>") == "optimizer_ema"
    assert kind_of("triton_per_fused_native_layer_norm_0") == "layer_norm"
    assert kind_of("triton_poi_fused_gelu_1") == "fused_elementwise"
    assert kind_of("aten::addmm") == "matmul"
    import torch

    record = profile_step("tiny", 2, "pad", 1, 2, torch.device("cpu"), img=64, patch=8, pred_dim=48, pred_depth=1)
    assert record["config"]["mode"] == "pad" and record["step_s_wall"] > 0
    assert sum(record["fraction_per_kind"].values()) == pytest.approx(1.0, abs=1e-3)
    assert record["seconds_per_kind"]["matmul"] > 0 and record["seconds_per_kind"]["attention"] > 0
    assert record["slowest"][0]["s_per_step"] >= record["slowest"][-1]["s_per_step"]


def test_video_summary_gathers_per_seed_accuracies_by_label_probe_and_encoder(tmp_path):
    def record(seed, vjepa, random_init):
        rows = {name: {"motion": {"linear": {"test_acc": acc}, "knn": {"test_acc": acc / 2},
                                  "linear/avg+2x2": {"test_acc": acc / 4}}}
                for name, acc in (("jepa", vjepa), ("random init", random_init), ("ijepa_framewise", 0.3))}
        return {"checkpoint": f"s{seed}.ckpt", "labels": ["motion"], "rows": rows, "wall_time_s": 1.0,
                "clips": {"dataset": "motion_fmnist", "seed": seed}, "provenance": {"hardware": {"cpu": "x"}},
                "command": f"jepa probe --seed {seed}", "date": "2026-01-01"}

    paths = []
    for seed, (v, r) in enumerate([(0.5, 0.2), (0.6, 0.3)]):
        paths.append(tmp_path / f"{seed}.json")
        paths[-1].write_text(json.dumps(record(seed, v, r)))
    out = tmp_path / "video" / "summary.json"
    subprocess.run([sys.executable, str(SCRIPT.parent / "video_summary.py"), *map(str, paths), "--out", str(out)],
                   check=True, capture_output=True, timeout=120)
    summary = json.loads(out.read_text())
    assert summary["labels"]["motion"]["linear"] == {"vjepa": [0.5, 0.6], "random_init": [0.2, 0.3],
                                                     "ijepa_framewise": [0.3, 0.3]}
    assert summary["labels"]["motion"]["knn"]["vjepa"] == [0.25, 0.3]
    assert summary["labels"]["motion"]["linear/avg+2x2"]["random_init"] == [0.05, 0.075]  # other time poolings kept
    runs = summary["datasets"]["motion_fmnist"]["runs"]
    assert summary["planning"] == {} and [r["command"] for r in runs] == ["jepa probe --seed 0", "jepa probe --seed 1"]
    assert "+30.0 (+30.0 / +30.0)" in out.with_suffix(".md").read_text()  # paired vjepa - random_init

    def plan(name, success, execute=1):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({
            "complete": True, "world_model": f"{name}.ckpt", "encoder": f"{name}_enc.ckpt",
            "command": f"jepa plan {name}",
            "date": "2026-01-01", "provenance": {"hardware": {"cpu": "x"}},
            "settings": {"world_model": f"{name}.ckpt", "execute": execute, "seeds": [0, 1], "oracle": name == "a"},
            "results": {"random policy": {"success": 0.0},
                        "cem (world model)": {"success": success, "success_per_seed": [success, success],
                                              "wilson95": [0.5, 1.0], "episodes": 100, "seconds_per_plan": 0.7}}}))
        return str(path)

    cmd = [sys.executable, str(SCRIPT.parent / "video_summary.py"), *map(str, paths), "--out", str(out),
           "--plan", "two_rooms", "ijepa", plan("a", 0.9), "--plan", "two_rooms", "vjepa", plan("b", 0.8)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    planned = json.loads(out.read_text())["planning"]["two_rooms"]
    assert planned["ijepa"]["success"] == 0.9 and planned["vjepa"]["success"] == 0.8
    assert planned["vjepa"]["command"] == "jepa plan b" and planned["vjepa"]["world_model"] == "b.ckpt"
    cmd[-1] = plan("c", 0.8, execute=2)  # planned with other settings: not comparable, refused in one line
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "different settings: execute" in proc.stderr.strip().splitlines()[-1]
    # a second clip dataset gathers its own seeds into the same labels map; the planning rows stay without --plan
    other = json.loads(paths[0].read_text())
    other["clips"]["dataset"], other["labels"] = "trajectory_clips", ["action"]
    other["rows"] = {"jepa": {"action": {"linear": {"test_acc": 0.7}}}}
    paths.append(tmp_path / "other.json")
    paths[-1].write_text(json.dumps(other))
    subprocess.run([sys.executable, str(SCRIPT.parent / "video_summary.py"), *map(str, paths), "--out", str(out)],
                   check=True, capture_output=True, timeout=120)
    summary = json.loads(out.read_text())
    assert summary["labels"]["action"]["linear"]["vjepa"] == [0.7]
    assert summary["datasets"]["trajectory_clips"]["seeds"] == 1 and summary["datasets"]["motion_fmnist"]["seeds"] == 2
    assert summary["planning"]["two_rooms"]["vjepa"]["success"] == 0.8
    # an environment's episodes: their own dataset and env-named labels, added beside what the summary holds
    maze = json.loads(paths[-1].read_text())
    maze["clips"]["env"] = "point_maze"
    paths.append(tmp_path / "maze.json")
    paths[-1].write_text(json.dumps(maze))
    subprocess.run([sys.executable, str(SCRIPT.parent / "video_summary.py"), str(paths[-1]), "--out", str(out),
                    "--plan", "point_maze", "vjepa", plan("d", 0.6)], check=True, capture_output=True, timeout=120)
    summary = json.loads(out.read_text())
    assert summary["labels"]["point_maze/action"]["linear"]["vjepa"] == [0.7]
    assert summary["datasets"]["point_maze_episodes"]["labels"] == ["point_maze/action"]
    assert summary["labels"]["motion"]["linear"]["vjepa"] == [0.5, 0.6]  # the datasets not given are kept
    assert set(summary["datasets"]) == {"motion_fmnist", "trajectory_clips", "point_maze_episodes"}
    assert summary["planning"]["two_rooms"]["vjepa"]["success"] == 0.8 and summary["planning"]["point_maze"][
        "vjepa"]["success"] == 0.6
    assert "| point_maze/action | linear |" in out.with_suffix(".md").read_text()


def test_recipe_summary_means_seeds_pairs_margins_and_keeps_other_sections(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    from recipe_summary import main as recipe_summary

    def quickstart(seed, ijepa, random_init, config="abc"):
        def row(acc):
            return {"linear": {"avg": {"test_acc": acc}}, "knn": {"avg": acc - 0.1}}
        path = tmp_path / f"q{seed}_{config}.json"
        path.write_text(json.dumps({
            "seed": seed, "command": f"jepa quickstart --seed {seed}", "date": "2026-01-0" + str(seed + 1),
            "rows": {"I-JEPA": row(ijepa), "random init": row(random_init)},
            "seconds": {"pretrain": 600.0 + seed, "total": 900.0}, "pretrain": {"optimizer_steps": 10},
            "feature_spread": {"I-JEPA": {"rankme": 20.0}},
            "config": f"seed_everything: {seed}\ntrainer: {{default_root_dir: runs/q{seed}}}\n"
                      f"model: {{init_args: {{mask_seed: {seed}, lr: {config!r}}}}}\n",
            "provenance": {"hardware": {"cpu_count": 2}}}))
        return str(path)

    out = tmp_path / "recipe"
    assert recipe_summary(["--quickstart", quickstart(0, 0.86, 0.78), quickstart(1, 0.88, 0.77), "--out",
                           str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    q = summary["quickstart"]
    assert q["avg"] == 0.87 and q["random_init_avg"] == 0.775 and q["knn"] == 0.77 and q["flat"] is None
    assert q["margin_avg_per_seed"] == [0.08, 0.11] and q["seeds"] == [0, 1] and q["train_seconds"] == 600.5
    assert q["command"] == ["jepa quickstart --seed 0", "jepa quickstart --seed 1"] and q["date"] == "2026-01-02"
    assert summary["full"]["avg"] is None and summary["time_to_accuracy"]["ratio"] is None  # not measured: null
    assert "| quickstart | 87.0 | - | 77.0 |" in (out / "summary.md").read_text()

    # a later --full run replaces its own section only
    assert recipe_summary(["--full", quickstart(0, 0.90, 0.78), "--out", str(out)]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["quickstart"] == q and again["full"]["avg"] == 0.9
    # runs of two recipes, or two runs of one seed, are refused in one line naming the problem
    with pytest.raises(SystemExit, match="different configs"):
        recipe_summary(["--quickstart", quickstart(0, 0.8, 0.7), quickstart(1, 0.8, 0.7, config="xyz"), "--out",
                        str(out)])
    with pytest.raises(SystemExit, match="repeat a seed"):
        recipe_summary(["--quickstart", quickstart(1, 0.8, 0.7), quickstart(1, 0.8, 0.7), "--out", str(out)])
    # --add: seeds run apart join the seeds the section holds (a seed given again replaces its figures); each seed
    # keeps its own provenance; a run of another recipe is refused
    assert recipe_summary(["--full", quickstart(2, 0.92, 0.79), "--add", "--out", str(out)]) == 0
    full = json.loads((out / "summary.json").read_text())["full"]
    assert full["seeds"] == [0, 2] and full["avg"] == 0.91 and full["margin_avg_per_seed"] == [0.12, 0.13]
    assert [f["command"] for f in full["per_seed"]] == full["command"] == ["jepa quickstart --seed 0",
                                                                          "jepa quickstart --seed 2"]
    assert recipe_summary(["--full", quickstart(0, 0.94, 0.78), "--add", "--out", str(out)]) == 0
    full = json.loads((out / "summary.json").read_text())["full"]
    assert full["seeds"] == [0, 2] and full["avg"] == 0.93
    with pytest.raises(SystemExit, match="another recipe"):
        recipe_summary(["--full", quickstart(1, 0.9, 0.7, config="xyz"), "--add", "--out", str(out)])
