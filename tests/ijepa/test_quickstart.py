"""The quickstart's whole command path at a tiny budget, so it cannot rot."""
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from eval.linear_probe import LinearProbeConfig

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_quickstart_writes_results_and_plots(tmp_path, fmnist_root):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "jepa.cli", "quickstart", "--out", str(tmp_path / "run"), "--data_root", fmnist_root,
         "--max_steps", "3", "--limit_train", "512", "--probe_train_limit", "1000", "--probe_test_limit", "300",
         "--protocols", "avg,flat", "--no_progress"],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "run"  # a folder the quickstart has to create
    results = json.loads((run / "results.json").read_text())
    assert set(results["rows"]) == {"I-JEPA", "random init", "raw pixels"}
    for row in results["rows"].values():
        for protocol in ("avg", "flat"):
            assert 0.0 <= row["linear"][protocol]["test_acc"] <= 1.0
        assert 0.0 <= row["knn"]["avg"] <= 1.0
    # 10 classes: flattened raw pixels on 1000 images are far above chance; the probe really trains
    assert results["rows"]["raw pixels"]["linear"]["flat"]["test_acc"] > 0.6
    assert results["pretrain"]["optimizer_steps"] == 3
    assert results["seed"] == 0 and results["command"].startswith("jepa quickstart --out ")  # summaries cite it
    assert set(results["seconds"]) >= {"pretrain", "probe", "total"}
    assert results["provenance"]["git_sha"]
    assert (run / "masks.png").stat().st_size > 1000
    assert (run / "results.md").read_text().count("|") > 10
    assert Path(results["pretrain"]["checkpoint"]).is_file()
    assert "| I-JEPA |" in out.stdout
    spread = results["feature_spread"]  # how spread out the features are, beside the random init it started from
    assert set(spread) == {"I-JEPA", "random init"} and all(r["width"] == 128 and r["rankme"] >= 1 for r in spread.values())
    assert "feature spread (I-JEPA): RankMe" in out.stdout

    # --resume continues that run from its checkpoint (2 more steps, not 5 anew); the random-init row is the same
    # seeded start, and the pretraining seconds add up
    resumed = subprocess.run(
        [sys.executable, "-m", "jepa.cli", "quickstart", "--out", str(run), "--data_root", fmnist_root,
         "--max_steps", "5", "--limit_train", "512", "--probe_train_limit", "1000", "--probe_test_limit", "300",
         "--protocols", "avg", "--no_progress", "--resume"],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = json.loads((run / "results.json").read_text())
    assert again["pretrain"]["optimizer_steps"] == 5 and again["resumed_from"].endswith(".ckpt")
    assert "resuming from" in resumed.stdout
    assert again["rows"]["random init"]["knn"] == results["rows"]["random init"]["knn"]
    assert again["seconds"]["pretrain"] > results["seconds"]["pretrain"] > 0

    # `jepa probe` on the checkpoint the quickstart wrote: the same probe path from the command line
    probe_dir = tmp_path / "probe"
    out = subprocess.run(
        [sys.executable, "-m", "jepa.cli", "probe", "--ckpt", results["pretrain"]["checkpoint"], "--data_root",
         fmnist_root, "--config", str(ROOT / "configs/probe/fmnist.yaml"), "--train_limit", "500", "--test_limit", "200",
         "--protocols", "[avg]", "--linear.epochs", "3", "--attentive.epochs", "1", "--out", str(probe_dir)],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    probe = json.loads((probe_dir / "results.json").read_text())
    assert set(probe["rows"]) == {"jepa", "random init", "raw pixels"} and probe["encoder"] == "target_encoder"
    for row in probe["rows"].values():
        assert set(row) >= {"linear", "knn", "attentive"} and 0.0 <= row["attentive"]["test_acc"] <= 1.0
    config = yaml.safe_load((ROOT / "configs/probe/fmnist.yaml").read_text())
    default = list(LinearProbeConfig().lrs)
    assert probe["settings"]["linear"]["lrs"] == config["linear"]["lrs"] != default  # the file's, not the default
    assert "| jepa |" in (probe_dir / "results.md").read_text()
    assert (probe_dir / "confusion_matrix.png").stat().st_size > 1000 and (probe_dir / "pca.png").stat().st_size > 1000
    assert probe["feature_cache"]["misses"] > 0
    # a second run reads every feature from the cache
    out = subprocess.run(
        [sys.executable, "-m", "jepa.cli", "probe", "--ckpt", results["pretrain"]["checkpoint"], "--data_root",
         fmnist_root, "--train_limit", "500", "--test_limit", "200", "--protocols", "[avg]", "--attentive.enabled",
         "false", "--out", str(probe_dir), "--overwrite", "true"],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    again = json.loads((probe_dir / "results.json").read_text())
    assert again["feature_cache"]["misses"] == 0 and again["feature_cache"]["hits"] > 0
    assert again["rows"]["jepa"]["knn"] == probe["rows"]["jepa"]["knn"]


def test_max_epochs_lifts_the_recipes_step_cap(tmp_path):
    """The recipe stops at max_steps; --max_epochs must replace that cap, and --max_steps still wins when given."""
    from ijepa.quickstart import fit_args, parser

    argv = fit_args(parser().parse_args(["--max_epochs", "2"]), tmp_path)
    assert argv[-2:] == ["--trainer.max_epochs=2", "--trainer.max_steps=-1"]
    argv = fit_args(parser().parse_args(["--max_epochs", "2", "--max_steps", "5"]), tmp_path)
    assert argv.index("--trainer.max_steps=5") > argv.index("--trainer.max_steps=-1")


def test_seed_reaches_weights_masks_and_data_order(tmp_path):
    from ijepa.quickstart import fit_args, parser

    argv = fit_args(parser().parse_args(["--seed", "3"]), tmp_path)
    assert {"--seed_everything=3", "--model.mask_seed=3", "--data.seed=3"} <= set(argv)
