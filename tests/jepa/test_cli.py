"""The `jepa` command line: help, a 2-step fit, config round-trip, and clean one-line errors for bad input."""
import json

import pytest

from tests.helpers.run_jepa import CONFIG, ROOT, TINY_ARGS, jepa


def test_top_level_help_lists_subcommands():
    out = jepa("--help")
    assert out.returncode == 0
    for sub in ("fit", "validate", "probe", "quickstart"):
        assert sub in out.stdout


def test_fit_help_documents_model_options():
    out = jepa("fit", "--model.help", "ijepa.IJEPA")
    assert out.returncode == 0, out.stderr
    assert "patch side in pixels" in out.stdout and "--model.mask_sampler" in out.stdout
    out = jepa("fit", "--help")
    assert out.returncode == 0 and "--trainer.devices" in out.stdout and "--trainer.num_nodes" in out.stdout


def test_two_step_fit_through_cli(tmp_path, fmnist_root):
    out = jepa("fit", "--config", str(CONFIG), *TINY_ARGS, "--trainer.max_steps=2", f"--data.root={fmnist_root}",
               f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false", "--trainer.log_every_n_steps=1")
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["global_step"] == 2 and record["stage"] == "fit"
    assert record["provenance"]["config_sha256_16"] and record["provenance"]["versions"]["torch"]
    assert "train/loss" in record["metrics"]


def test_print_config_round_trips(tmp_path, fmnist_root):
    first = jepa("fit", "--config", str(CONFIG), f"--data.root={fmnist_root}", "--print_config")
    assert first.returncode == 0, first.stderr
    saved = tmp_path / "printed.yaml"
    saved.write_text(first.stdout)
    second = jepa("fit", "--config", str(saved), "--print_config")
    assert second.returncode == 0, second.stderr
    assert first.stdout == second.stdout
    assert "class_path: ijepa.MultiBlockMaskSampler" in first.stdout


@pytest.mark.parametrize("args,expected", [
    (["--model.bogus_option=1"], "bogus_option"),
    (["--data.batch_size=abc"], "batch_size"),
    (["--model.mask_sampler.init_args.target_scale=[0.1, 1.5]"], "target_scale"),
    (["--model.patch_size=5"], "patch_size 5 does not divide img_size 28"),
    (["--data.root=/nonexistent/fmnist"], "Fashion-MNIST not found in /nonexistent/fmnist"),
    (["--model.warmup_fraction=1.5"], "warmup_fraction"),
])
def test_bad_input_fails_before_compute_with_a_named_error(tmp_path, args, expected):
    out = jepa("fit", "--config", str(CONFIG), *TINY_ARGS, f"--trainer.default_root_dir={tmp_path}", *args, timeout=120)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert expected in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "results.json").exists()


def test_unknown_key_in_yaml_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = CONFIG.read_text().replace("bases: [", f"bases: [{CONFIG.parent}/")  # bases stay found from tmp_path
    assert "trainer:\n" in text
    bad.write_text(text.replace("trainer:\n", "trainer:\n  max_epoch: 3\n"))
    out = jepa("fit", "--config", str(bad), timeout=120)
    assert out.returncode == 2 and "max_epoch" in out.stderr and "Traceback" not in out.stderr


def test_shards_write_then_fit_from_shards(tmp_path):
    import numpy as np
    from PIL import Image

    for label in range(2):
        folder = tmp_path / "images" / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((28, 28), 20 * i + label, np.uint8)).save(folder / f"{i}.jpg")
    out = jepa("shards", "write", "image_folder", str(tmp_path / "images"), "--out", str(tmp_path / "shards"),
               "--max_count", "8", "--quiet")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "wrote 24 samples into 3 shards" in out.stderr

    tiny = [a for a in TINY_ARGS if not a.startswith("--data.")]
    out = jepa("fit", "--config", str(CONFIG), "--data", str(ROOT / "configs" / "data" / "fmnist_shards.yaml"),
               *tiny, f"--data.train_urls={tmp_path / 'shards'}", "--data.val_urls=null", "--data.batch_size=8",
               "--data.num_workers=0", "--trainer.max_steps=2", f"--trainer.default_root_dir={tmp_path / 'run'}",
               "--trainer.logger=false")
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["global_step"] == 2 and record["metrics"]["data/skipped_decode"] == 0

    out = jepa("fit", "--config", str(CONFIG), "--data", str(ROOT / "configs" / "data" / "fmnist_shards.yaml"),
               f"--data.train_urls={tmp_path / 'nowhere' / 'shard-{000000..000003}.tar'}")
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr


FIT_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*/*.yaml")
                     if p.parent.name not in ("probe", "data") and not p.name.startswith("plan_")
                     and p.name != "seed_mode1_refine.yaml")  # those are read by jepa probe / jepa plan / --data


@pytest.mark.parametrize("config", FIT_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_fit_config_parses(config, capsys):
    """Each recipe under configs/ parses with `jepa fit` (unknown or mistyped keys, classes that moved): a renamed
    option must not leave a recipe that only fails when a user runs it."""
    from jepa.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code == 0
    assert "class_path" in capsys.readouterr().out


def test_a_mistyped_key_in_a_config_is_caught_by_that_parse(tmp_path, capsys):
    from jepa.cli import main

    bad = tmp_path / "bad.yaml"
    source = ROOT / "configs" / "control" / "push_t.yaml"
    text = source.read_text().replace("    fold: 4", "    fodl: 4").replace("bases: [", f"bases: [{source.parent}/")
    assert "fodl" in text
    bad.write_text(text)
    assert main(["fit", "--config", str(bad), "--print_config"]) == 2
    assert "'fodl' is not accepted" in capsys.readouterr().err


def test_lightnings_test_is_gone_and_predict_is_ours():
    overview = jepa("--help")
    assert " test " not in overview.stdout and "{fit,validate," in overview.stdout
    assert "predict                           embeddings" in overview.stdout  # `jepa predict`, not LightningCLI's
    out = jepa("test", "--config", str(CONFIG))
    assert out.returncode == 2 and "unknown command 'test'" in out.stderr and "Traceback" not in out.stderr
