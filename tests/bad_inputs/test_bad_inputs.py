"""Every entry point answers a bad input with exit 2 and one line naming the problem, no traceback, and leaves every
file it was given or could have written unchanged (cases.py lists the inputs; files.py makes them).

The cases run in-process through `jepa.cli.main` (a traceback would surface as an exception here); a few also run
as real processes to see exactly what a user's terminal gets.
"""
from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.bad_inputs.cases import CASES, Env
from tests.bad_inputs.files import OFFICIAL, BadFiles, snapshot
from tests.helpers.run_jepa import jepa


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    from jepa.cli import main

    out = tmp_path_factory.mktemp("imported") / "official.ckpt"
    assert main(["import", str(OFFICIAL), "--out", str(out), "--num_heads", "2"]) == 0
    return out


def test_the_suite_covers_every_entry_point():
    assert len(CASES) >= 40
    names = " ".join(c.name for c in CASES)
    for entry in ("fit", "validate", "probe", "export", "import", "quickstart", "config", "image folder", "shard"):
        assert entry in names, entry


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_in_one_line(case, tmp_path, monkeypatch, capsys, fmnist_root, imported):
    from jepa.cli import main

    monkeypatch.chdir(tmp_path)  # anything written by mistake lands here and is seen
    monkeypatch.delenv("JEPA_ALLOW_PIPE", raising=False)
    env = Env(tmp_path, fmnist_root, tmp_path / "imported.ckpt")
    shutil.copy(imported, env.imported)
    argv = case.argv(BadFiles(tmp_path / "inputs"), env)
    before = snapshot(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("jepa: error: "), err[-2000:]
    assert re.search(case.expect, lines[0]), lines[0]
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.parametrize("kind", ["unsafe", "truncated"])
def test_a_user_terminal_sees_one_line_for_a_bad_checkpoint(tmp_path, kind, fmnist_root):
    bad = getattr(BadFiles(tmp_path), kind)()
    out = jepa(*Env(tmp_path, fmnist_root, bad).fit(f"--ckpt_path={bad}"), cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "weights_only=False" not in out.stderr  # torch's advice to load it unsafely is never repeated
    assert not (tmp_path / "code-ran").exists()


def test_auto_resume_passes_over_an_unsafe_newest_checkpoint(tmp_path, fmnist_root):
    from jepa.checkpoint_io import newest_valid_checkpoint

    folder = tmp_path / "checkpoints"
    good = BadFiles(folder).legacy_copy("step000000010.ckpt")
    BadFiles(folder).unsafe("step000000020.ckpt")  # newer, and a valid zip
    with pytest.warns(UserWarning, match=r"step000000020.ckpt: it references posix.system"):
        assert newest_valid_checkpoint(folder) == good
    assert not (tmp_path / "code-ran").exists() and not os.path.exists("code-ran")


def test_lightnings_own_resume_read_is_weights_only(tmp_path, fmnist_root):
    """Past the checks, Lightning's resume reads through the checkpoint IO the CLI installs: it refuses code too."""
    from jepa.checkpoint_io import AtomicCheckpointIO
    from jepa.cli import build_cli
    from jepa.errors import ConfigError

    cli = build_cli(Env(tmp_path, fmnist_root, tmp_path).fit(), run=False)
    io = cli.trainer.strategy.checkpoint_io
    assert isinstance(io, AtomicCheckpointIO)
    with pytest.raises(ConfigError, match="posix.system.*do not load this file"):
        io.load_checkpoint(BadFiles(tmp_path).unsafe(), weights_only=False)  # even when asked to be unsafe
    assert not (tmp_path / "code-ran").exists() and not os.path.exists("code-ran")
