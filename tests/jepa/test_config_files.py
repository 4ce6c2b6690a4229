"""Configs composed from bases: the chain of files, overrides key by key, loops refused, every recipe resolves."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from jepa.cli import main
from jepa.config_files import config_chain, expand_configs
from jepa.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_bases_come_first_in_order_and_each_file_once(tmp_path):
    write(tmp_path / "base" / "a.yaml", "trainer: {max_steps: 1}\n")
    write(tmp_path / "base" / "b.yaml", "bases: [a.yaml]\ntrainer: {max_steps: 2}\n")
    child = write(tmp_path / "exp" / "c.yaml", "bases: [../base/b.yaml, ../base/a.yaml]\n")
    assert config_chain(child) == [str(tmp_path / "base" / "a.yaml"), str(tmp_path / "base" / "b.yaml"), child]
    assert expand_configs(["fit", f"--config={child}", "--x", "1"]) == [
        "fit", "--config", str(tmp_path / "base" / "a.yaml"), "--config", str(tmp_path / "base" / "b.yaml"),
        "--config", child, "--x", "1", "--bases=null"]
    assert expand_configs(["fit", "--x", "1"]) == ["fit", "--x", "1"]


def test_a_loop_of_bases_and_a_missing_base_are_named(tmp_path):
    a = write(tmp_path / "a.yaml", "bases: [b.yaml]\n")
    write(tmp_path / "b.yaml", "bases: [a.yaml]\n")
    with pytest.raises(ConfigError, match="come back to"):
        config_chain(a)
    c = write(tmp_path / "c.yaml", "bases: [nowhere.yaml]\n")
    with pytest.raises(ConfigError, match="nowhere.yaml: no such file"):
        config_chain(c)
    d = write(tmp_path / "d.yaml", "bases: 3\n")
    with pytest.raises(ConfigError, match="must be a list"):
        config_chain(d)


def test_a_variant_overrides_only_what_it_names():
    variant = _resolved(ROOT / "configs" / "ijepa" / "fmnist_50ep.yaml")
    full = _resolved(ROOT / "configs" / "ijepa" / "fmnist_full.yaml")
    assert variant["trainer"]["max_epochs"] == 50 and full["trainer"]["max_epochs"] == 10
    assert variant["trainer"]["default_root_dir"] == "runs/fmnist_50ep"
    variant["trainer"].update(max_epochs=10, default_root_dir="runs/fmnist_full")
    assert variant == full  # everything else, model and data included, comes from the bases
    assert full["trainer"]["precision"] == "32-true" and full["trainer"]["accelerator"] == "cpu"  # from base/cpu.yaml


def _resolved(config: Path) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--print_config"])
    data = yaml.safe_load(out.getvalue())
    data.pop("bases", None)
    return data


@pytest.mark.parametrize("config", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").glob("*/*.yaml")
                                          if p.parent.name not in ("base", "probe") and "plan_" not in p.name
                                          and p.name != "seed_mode1_refine.yaml" and p.parent.name != "data"))
def test_every_recipe_resolves_with_one_run_folder_and_no_logger_paths(config):
    text = (ROOT / config).read_text()
    assert "save_dir" not in text  # loggers follow trainer.default_root_dir (jepa/cli.py)
    resolved = _resolved(ROOT / config)
    assert resolved["trainer"]["default_root_dir"].startswith("runs/")
    assert resolved["trainer"]["logger"] is None  # the CLI adds CSV + TensorBoard loggers in the run folder


def test_logs_checkpoints_and_config_all_follow_default_root_dir(tmp_path, fmnist_root):
    run = tmp_path / "elsewhere"
    code = main(["fit", "--config", str(ROOT / "configs" / "ijepa" / "fmnist_cpu.yaml"), f"--data.root={fmnist_root}",
                 "--data.limit_train=64", "--data.batch_size=32", "--data.num_workers=0", "--trainer.max_steps=2",
                 f"--trainer.default_root_dir={run}", "--trainer.enable_progress_bar=false"])
    assert code == 0
    assert (run / "logs" / "metrics.csv").is_file() and (run / "logs" / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "logs").glob("events.out.tfevents*"))  # TensorBoard beside the CSV log
    saved = yaml.safe_load((run / "logs" / "config.yaml").read_text())
    assert saved.get("bases") is None  # the saved config is whole: re-running it needs no base file
    assert saved["trainer"]["default_root_dir"] == str(run)


def test_the_data_follows_the_models_image_size_and_clip_length(fmnist_root):
    from jepa.cli import build_cli

    cli = build_cli(["fit", "--config", str(ROOT / "configs" / "vjepa" / "moving_fmnist_cpu.yaml"),
                     f"--data.init_args.root={fmnist_root}", "--model.img_size=32", "--model.num_frames=4"], run=False)
    assert (cli.datamodule.size, cli.datamodule.num_frames) == (32, 4)
    framewise = build_cli(["fit", "--config", str(ROOT / "configs" / "ijepa" / "moving_fmnist_frames_cpu.yaml"),
                           f"--data.init_args.root={fmnist_root}"], run=False)
    assert (framewise.datamodule.size, framewise.datamodule.num_frames) == (64, 8)  # an image model has no frames


def test_a_data_value_the_link_would_replace_is_refused(fmnist_root, capsys):
    code = main(["fit", "--config", str(ROOT / "configs" / "vjepa" / "moving_fmnist_cpu.yaml"),
                 f"--data.init_args.root={fmnist_root}", "--data.init_args.size=48"])
    assert code == 2
    assert "data.size 48 differs from model.img_size 64" in capsys.readouterr().err
