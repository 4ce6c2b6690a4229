"""The `jepa` subcommands other packages register (entry-point group `jepa.commands`), and making sure the command
imports this installation's packages rather than same-named folders of the working directory."""
from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

from jepa.errors import ConfigError

GROUP = "jepa.commands"
DISTRIBUTION = "jepa-pipeline"


def registered_commands() -> dict:
    """name -> entry point, in the order the distribution declares them."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}


def help_line(entry_point) -> str:
    """The first docstring line of the command's function, read from its source without importing it (so that
    `jepa --help` stays fast)."""
    module, _, func = entry_point.value.partition(":")
    try:
        tree = ast.parse(module_source(module).read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == func:
                return (ast.get_docstring(node) or "").splitlines()[0]
    except (ImportError, AttributeError, OSError, SyntaxError, IndexError):
        pass
    return ""


def module_source(module: str) -> Path:
    """The .py file of a module, found from its top-level package's location: importlib.util.find_spec of a submodule
    would import (run) the parent packages, and theirs pull in torch and Lightning."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)  # a top-level package's spec is found without running it
    return Path(spec.submodule_search_locations[0]).joinpath(*rest[:-1], f"{rest[-1]}.py") if rest else Path(spec.origin)


def run_command(name: str, argv: list[str]) -> int:
    return int(registered_commands()[name].load()(argv) or 0)


def own_packages() -> list[str]:
    """The top-level packages this distribution installs (recorded by the build in top_level.txt)."""
    try:
        text = importlib.metadata.distribution(DISTRIBUTION).read_text("top_level.txt") or ""
    except importlib.metadata.PackageNotFoundError:
        return []
    return [name for name in text.split() if name]


def _foreign(home: Path) -> list[tuple[str, str]]:
    found = []
    for name in own_packages():
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin is not None and origin.parent.parent != home:
            found.append((name, str(origin.parent)))
    return found


def prefer_own_packages() -> None:
    """A `data/` or `eval/` folder in the working directory (on sys.path with `python -m` or PYTHONPATH=.) would be
    imported instead of ours: put this installation first; if one is already imported, refuse in one line."""
    home = Path(__file__).resolve().parents[1]
    if not _foreign(home):
        return
    sys.path.insert(0, str(home))
    importlib.invalidate_caches()
    still = _foreign(home)
    if still:
        name, where = still[0]
        raise ConfigError(f"{where} shadows this project's `{name}` package (imported from there first): run jepa "
                          "from another folder or take it off PYTHONPATH")
