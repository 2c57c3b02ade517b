"""The package's shape: modules keep their private names to themselves, stay
small, and the public API imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gearctl"
MODULES = sorted(PACKAGE.rglob("*.py"))
# Private by convention but public API of the standard library.
STDLIB_PRIVATE = {"_exit", "_getframe", "_asdict", "_replace", "_fields", "_make", "_value_", "_name_",
                  "_missing_", "_generate_next_value_"}
MAX_LINES = 600


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_here(tree: ast.AST) -> set[str]:
    """Private names this module defines: functions, classes, attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _private(node.value):
            names.add(node.value)  # __slots__ entries
    return {n for n in names if _private(n)}


def _foreign_private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    own = _defined_here(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{path.name}:{node.lineno}: imports {alias.name} from {node.module}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if node.attr in own or node.attr in STDLIB_PRIVATE:
                continue
            found.append(f"{path.name}:{node.lineno}: uses .{node.attr}, defined in another module")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    found = [use for path in MODULES for use in _foreign_private_uses(path)]
    assert not found, "\n".join(found)


def test_the_private_name_check_catches_a_use(tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text("from .client import _pool\nclass A:\n    def f(self, other):\n        return other._conns\n")
    assert len(_foreign_private_uses(path)) == 2


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_past_the_size_limit(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines (limit {MAX_LINES}): split it by concern"


def test_the_public_api_imports() -> None:
    code = "from gearctl import Worker, job, Client, AsyncClient, ServerAddress, TLSOptions, GearctlError"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)


DECLARED = {"typer", "rich", "prometheus_client", "tomli"}  # pyproject's dependencies, as imported
LOADED_BY = {"testing.py": {"pytest"}}  # the pytest plugin: only pytest loads it


def test_gearctl_imports_only_the_standard_library_and_its_declared_dependencies() -> None:
    """A module a dev machine happens to have (click, which typer 0.28 vendors as
    typer._click) fails on a fresh `pip install .`: README's first command caught
    one. Every import in gearctl/ is the standard library, gearctl or declared."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        fallbacks = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) for h in t.handlers
                     if isinstance(h.type, ast.Name) and h.type.id == "ImportError" for n in ast.walk(h)}
        for node in ast.walk(tree):
            if id(node) in fallbacks:  # `except ImportError: import click` (typer < 0.28 depends on it)
                continue
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            for name in names:
                top = name.split(".")[0]
                allowed = DECLARED | LOADED_BY.get(path.name, set())
                if top not in sys.stdlib_module_names and top != "gearctl" and top not in allowed:
                    found.setdefault(top, set()).add(str(path.relative_to(PACKAGE.parent)))
    assert not found, f"undeclared imports: {found}"
