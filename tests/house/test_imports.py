"""The package rules of docs/design.md, measured on the source: imports flow one way and never in a circle."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("jepa", "ijepa", "vjepa", "data", "eval", "jepa_control")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports() -> dict[str, set[str]]:
    """module -> the project modules it imports, at module level or inside functions (a lazy import is still a
    dependency)."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def package_of(module: str) -> str:
    return module.split(".")[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    assert find_cycle(project_imports()) is None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_core_imports_no_package_above_it():
    above = {m: sorted(d for d in deps if package_of(d) != "jepa")
             for m, deps in project_imports().items() if package_of(m) == "jepa"}
    assert {m: d for m, d in above.items() if d} == {}


def test_control_imports_neither_image_nor_video_jepa():
    wrong = {m: sorted(d for d in deps if package_of(d) in ("ijepa", "vjepa"))
             for m, deps in project_imports().items() if package_of(m) == "jepa_control"}
    assert {m: d for m, d in wrong.items() if d} == {}


def test_imports_are_read_from_every_package():
    graph = project_imports()
    assert "jepa.module" in graph["ijepa.module"]  # the graph is not trivially empty
    assert {package_of(m) for m in graph} == set(PACKAGES)


def trainer_reaches(source: str) -> list[str]:
    """`<...>.trainer.datamodule` / `<...>.trainer.lightning_module` in Python source: one module reading another
    through the trainer instead of being handed what it needs."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ("datamodule", "lightning_module"):
            owner = node.value
            if (isinstance(owner, ast.Attribute) and owner.attr == "trainer") or \
                    (isinstance(owner, ast.Name) and owner.id == "trainer"):
                found.append(f"line {node.lineno}: trainer.{node.attr}")
    return found


def test_no_module_of_control_reaches_through_the_trainer():
    reaches = {p.name: trainer_reaches(p.read_text()) for p in (ROOT / "jepa_control").rglob("*.py")}
    assert not {name: found for name, found in reaches.items() if found}


def test_the_trainer_reach_finder_finds_one():
    assert trainer_reaches("x = self.trainer.datamodule.train_set\ny = trainer.lightning_module")
    assert not trainer_reaches("x = self.trainer.max_steps\ndatamodule = 1")
