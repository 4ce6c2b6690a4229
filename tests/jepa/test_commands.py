"""Subcommands come from the packages that register them; the command imports its own packages, never a same-named
folder of the working directory."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jepa.cli import _overview
from jepa.commands import help_line, own_packages, registered_commands

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_command_loads_and_has_a_help_line():
    commands = registered_commands()
    assert {"quickstart", "probe", "shards", "import", "export", "collect", "plan"} <= set(commands)
    for name, entry_point in commands.items():
        assert callable(entry_point.load()), name
        assert help_line(entry_point), name
        assert f"  {name} " in _overview()


def test_the_distribution_lists_its_packages_and_not_control():
    packages = set(own_packages())
    assert {"jepa", "ijepa", "vjepa", "data", "eval", "jepa_control"} <= packages
    assert "control" not in packages  # python-control's import name


def shadow_folder(tmp_path: Path) -> Path:
    for name in ("data", "eval"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the shadow {name} package was imported')\n")
    return tmp_path


def run(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_a_data_folder_in_the_working_directory_does_not_replace_ours(tmp_path):
    cwd = shadow_folder(tmp_path)
    for args, env in ((["-m", "jepa.cli", "shards", "--help"], {}),  # python -m puts the working directory first
                      (["-c", "import sys; from jepa.cli import main; sys.exit(main(sys.argv[1:]))", "probe", "--help"],
                       {"PYTHONPATH": str(cwd)})):
        proc = run(args, cwd, **env)
        assert proc.returncode == 0, proc.stderr
        assert "shadow" not in proc.stderr


def test_a_shadow_already_imported_is_refused_in_one_line(tmp_path):
    cwd = shadow_folder(tmp_path)
    (cwd / "data" / "__init__.py").write_text("")  # importable this time, and imported before the command runs
    script = "import sys; sys.path.insert(0, '.'); import data; from jepa.cli import main; sys.exit(main(['shards']))"
    proc = run(["-c", script], cwd)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert f"{cwd / 'data'} shadows this project's `data` package" in proc.stderr
