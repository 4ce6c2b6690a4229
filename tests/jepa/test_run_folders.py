"""A run's outputs follow trainer.default_root_dir and never replace another run's: a fresh fit refuses a folder
holding results unless resuming or told to overwrite (which also clears the earlier run's checkpoints, so a later
`--ckpt_path auto` cannot pick them up), and validate writes beside the training logs, not over them."""
from __future__ import annotations

from jepa.cli import main
from tests.bad_inputs.files import snapshot
from tests.helpers.run_jepa import CONFIG, TINY_ARGS


def fit(root, fmnist_root, *extra) -> int:
    return main(["fit", "--config", str(CONFIG), *TINY_ARGS, f"--data.root={fmnist_root}", "--trainer.max_steps=2",
                 f"--trainer.default_root_dir={root}", *extra])


def test_a_second_fresh_fit_needs_overwrite_and_then_drops_the_old_checkpoints(tmp_path, fmnist_root, capsys):
    root = tmp_path / "run"
    assert fit(root, fmnist_root) == 0
    assert (root / "logs" / "results.json").is_file() and (root / "checkpoints" / "last.ckpt").is_file()
    stale = root / "checkpoints" / "step000009999.ckpt"  # as if the earlier run had gone further
    stale.write_bytes((root / "checkpoints" / "last.ckpt").read_bytes())
    before = snapshot(root)
    assert fit(root, fmnist_root) == 2
    assert "holds another run's results" in capsys.readouterr().err
    assert snapshot(root) == before
    assert fit(root, fmnist_root, "--ckpt_path=auto", "--trainer.max_steps=3") == 0  # resuming is allowed
    assert fit(root, fmnist_root, "--overwrite=true") == 0
    assert not stale.exists()  # the replaced run's checkpoints are gone


def test_validate_writes_beside_the_training_logs(tmp_path, fmnist_root, capsys):
    root = tmp_path / "run"
    assert fit(root, fmnist_root, "--trainer.limit_val_batches=2") == 0
    training_logs = snapshot(root / "logs")
    validate = ["validate", "--config", str(CONFIG), *TINY_ARGS, f"--data.root={fmnist_root}",
                f"--trainer.default_root_dir={root}", f"--ckpt_path={root / 'checkpoints' / 'last.ckpt'}",
                "--trainer.limit_val_batches=2"]
    assert main(validate) == 0
    assert snapshot(root / "logs") == training_logs
    assert (root / "validate" / "results.json").is_file()
    assert main(validate) == 2 and "earlier validation" in capsys.readouterr().err
    assert main([*validate, "--overwrite=true"]) == 0
