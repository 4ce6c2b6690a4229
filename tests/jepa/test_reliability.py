"""What survives what: SIGKILL and SIGTERM then resume (bitwise equal weights), NaN/inf steps skipped then a
clean stop, a corrupt newest checkpoint passed over, and bad configs or environments rejected before compute."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from jepa.checkpoint_io import (
    AtomicCheckpointIO,
    NonFiniteCheckpointError,
    check_free_space,
    newest_valid_checkpoint,
)
from jepa.errors import ConfigError
from jepa.module import NonFiniteTrainingError
from jepa.periodic_checkpoint import PeriodicCheckpoint, set_resume_hint
from tests.conftest import TinyData, tiny_model, tiny_trainer
from tests.helpers.fault_hooks import InfGradientAt
from tests.helpers.fault_injection import hook
from tests.helpers.run_jepa import CONFIG, ROOT, TINY_ARGS, jepa

STEPS = 14


def fit(out: Path, *extra: str, fmnist_root: str):
    """A tiny `jepa fit` of STEPS steps on 64 Fashion-MNIST images with checkpoints every 3 steps."""
    callbacks = json.dumps([{"class_path": "jepa.periodic_checkpoint.PeriodicCheckpoint",
                             "init_args": {"every_n_steps": 3, "keep_last": 2}}])
    return jepa("fit", "--config", str(CONFIG), *TINY_ARGS, f"--data.root={fmnist_root}",
                f"--trainer.max_steps={STEPS}", f"--trainer.default_root_dir={out}", "--trainer.logger=false",
                f"--trainer.callbacks={callbacks}", "--model.drop_path_rate=0.1", *extra)


def final_weights(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    from data.fashion_mnist import find_root

    out = tmp_path_factory.mktemp("straight")
    run = fit(out, fmnist_root=str(find_root(None)))
    assert run.returncode == 0, run.stderr[-3000:]
    return final_weights(out)


def assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs from the uninterrupted run"


@pytest.mark.parametrize("sig,step,code", [("SIGKILL", 4, -9), ("SIGTERM", 7, 143)])
def test_killed_or_preempted_run_resumes_to_identical_weights(tmp_path, straight, fmnist_root, sig, step, code):
    first = fit(tmp_path, hook("KillAt", step=step, sig=sig), fmnist_root=fmnist_root)
    assert first.returncode == code, first.stderr[-3000:]
    if sig == "SIGTERM":
        assert f"preempted: saved step {step + 1}" in first.stdout and "Traceback" not in first.stderr
    resumed = fit(tmp_path, "--ckpt_path=auto", fmnist_root=fmnist_root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    assert_same(straight, final_weights(tmp_path))
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert names == ["last.ckpt", "step000000012.ckpt", "step000000014.ckpt"]  # keep_last=2, no last-v1.ckpt


def test_sigterm_to_the_whole_process_group_still_saves_the_preemption_checkpoint(tmp_path, fmnist_root):
    """A scheduler's cancel (or `kill -- -PGID`) signals the dataloader workers too; dying of it first, they made
    the trainer fail on their death in mid-step (a traceback, no checkpoint)."""
    argv = [sys.executable, "-m", "jepa.cli", "fit", "--config", str(CONFIG), *TINY_ARGS, "--data.num_workers=1",
            f"--data.root={fmnist_root}", "--trainer.max_steps=100000", f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                           start_new_session=True)  # its own group: the signal below reaches it, not pytest
    deadline = time.time() + 120
    while not list(tmp_path.glob("checkpoints/step*.ckpt")) and run.poll() is None and time.time() < deadline:
        time.sleep(0.2)  # training is under way: a periodic checkpoint was written
    assert run.poll() is None, run.communicate()[1][-3000:]
    os.killpg(run.pid, signal.SIGTERM)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 143, err[-3000:]
    assert "preempted: saved step" in out and "Traceback" not in err


def test_preemption_line_names_the_flag_that_resumes_the_command(tmp_path, capsys):
    trainer = SimpleNamespace(callbacks=[PeriodicCheckpoint(dirpath=str(tmp_path))], is_global_zero=True, global_step=7)
    trainer.callbacks[0]._announce(trainer)
    assert capsys.readouterr().out.strip().endswith("run the same command with --ckpt_path auto to resume")
    set_resume_hint(trainer, "--resume")  # the quickstart resumes by its own flag
    trainer.callbacks[0]._announce(trainer)
    line = capsys.readouterr().out.strip()
    assert line == f"preempted: saved step 7 in {tmp_path}; run the same command with --resume to resume"


def test_a_notice_right_after_a_periodic_save_still_says_which_step_is_saved(tmp_path, capsys):
    """The step was saved just before the notice: nothing to save again, the line printed once all the same."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    callback = PeriodicCheckpoint(dirpath=str(tmp_path))
    trainer = SimpleNamespace(callbacks=[callback], is_global_zero=True, global_step=7, state=SimpleNamespace(fn="fit"))
    callback._last_global_step_saved = 7
    callback._save_now = lambda trainer: pytest.fail("the step is saved already")
    callback.on_exception(trainer, None, SIGTERMException())
    assert capsys.readouterr().out.startswith(f"preempted: saved step 7 in {tmp_path}")
    callback.on_exception(trainer, None, SIGTERMException())  # Lightning's re-raise after a batch-end save
    assert capsys.readouterr().out == ""


def test_truncated_newest_checkpoint_is_passed_over(tmp_path, fmnist_root):
    first = fit(tmp_path, hook("KillAt", step=8), fmnist_root=fmnist_root)
    assert first.returncode == -9
    folder = tmp_path / "checkpoints"
    newest, older = folder / "step000000006.ckpt", folder / "step000000003.ckpt"
    assert newest.is_file() and older.is_file()
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(UserWarning, match="skipping checkpoint .*step000000006"):
        assert newest_valid_checkpoint(folder) == older
    (folder / "last.ckpt").unlink()  # a copy of the newest, also damaged in a real crash of the disk
    resumed = fit(tmp_path, "--ckpt_path=auto", fmnist_root=fmnist_root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "step000000003" in resumed.stdout


def test_nonfinite_gradient_steps_are_skipped_then_training_stops(tmp_path):
    snapshots = {}

    class Snap(InfGradientAt):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            snapshots[trainer.global_step] = {k: v.clone() for k, v in pl_module.state_dict().items()}

    model = tiny_model(max_nonfinite_steps=2)
    with pytest.warns(UserWarning, match="non-finite gradient, step skipped"):
        tiny_trainer(tmp_path, max_steps=6, callbacks=[Snap([2])]).fit(model, datamodule=TinyData(n=64))
    # step 2 changed nothing: not the weights, not the EMA target (global_step still counts it)
    assert_same(snapshots[2], snapshots[3])
    assert not torch.equal(snapshots[3]["encoder.blocks.0.attn.qkv.weight"],
                           snapshots[4]["encoder.blocks.0.attn.qkv.weight"])
    assert model.nonfinite_total == 1

    model = tiny_model(max_nonfinite_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NonFiniteTrainingError, match="3 steps in a row"):
            tiny_trainer(tmp_path, max_steps=8, callbacks=[InfGradientAt([1, 2, 3])]).fit(
                model, datamodule=TinyData(n=64))
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def test_nan_loss_step_is_skipped(tmp_path):
    from tests.helpers.fault_hooks import PoisonBatch

    model = tiny_model()
    before = {}

    class Keep(PoisonBatch):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.global_step == self.step:
                before.update({k: v.clone() for k, v in pl_module.state_dict().items()})
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            if trainer.global_step == self.step + 1:
                assert_same(before, pl_module.state_dict())

    with pytest.warns(UserWarning, match="non-finite loss, step skipped"):
        tiny_trainer(tmp_path, max_steps=4, callbacks=[Keep(2)]).fit(model, datamodule=TinyData(n=64))
    assert model.nonfinite_total == 1


def test_no_nonfinite_checkpoint_is_written(tmp_path):
    state = {"state_dict": {"w": torch.tensor([1.0, float("nan")])}}
    with pytest.raises(NonFiniteCheckpointError, match="w"):
        AtomicCheckpointIO().save_checkpoint(state, tmp_path / "bad.ckpt")
    assert not list(tmp_path.iterdir())


def test_broken_yaml_and_damaged_checkpoints_are_named(tmp_path, capsys):
    from jepa.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: ijepa.IJEPA\n   init_args: [unclosed\n")
    assert main(["fit", "--config", str(bad)]) == 2
    assert "invalid YAML at line 3" in capsys.readouterr().err
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint" * 64)
    assert main(["fit", "--config", str(CONFIG), f"--ckpt_path={garbage}"]) == 2
    assert "garbage.ckpt cannot be used: it cannot be read" in capsys.readouterr().err


def test_too_little_disk_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not enough disk for a checkpoint"):
        check_free_space(tmp_path, 1 << 60, "a checkpoint")


MALFORMED = [
    (["--model.lr=-1"], "model.lr"),
    (["--model.max_nonfinite_steps=-1"], "max_nonfinite_steps"),
    (["--data.batch_size=0"], "batch_size"),
    (["--trainer.default_root_dir=/proc/jepa-run"], "cannot write into /proc/jepa-run"),
    (["--trainer.callbacks=" + json.dumps([{"class_path": "jepa.periodic_checkpoint.PeriodicCheckpoint",
                                             "init_args": {"every_n_steps": 0}}])], "every_n_steps"),
    (["--ckpt_path=/nonexistent/x.ckpt"], "x.ckpt"),
    (["--model.bogus_option=1"], "bogus_option"),
    (["--trainer.max_steps=many"], "trainer.max_steps"),
    (["--model.num_heads=3"], "num_heads"),
]


@pytest.mark.parametrize("args,expected", MALFORMED)
def test_malformed_configs_fail_in_one_line_before_compute(tmp_path, fmnist_root, args, expected, capsys):
    from jepa.cli import main

    code = main(["fit", "--config", str(CONFIG), *TINY_ARGS, f"--data.root={fmnist_root}",
                 f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false", *args])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert err.startswith("jepa: error:") and expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())
