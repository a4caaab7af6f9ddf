"""The package's shape: one import package, imports in one direction, no private names across
modules, and a ``--help`` that does not import onnx.

Every import statement of every production module is read with ``ast`` (function-local
imports too: a cycle hidden inside a function is still a cycle) and its target's layer is
compared with the importer's.  Layers, lowest first (``docs/architecture.md``):
errors <- ir <- targets <- plan <- solvers <- (simulate, backend, tools) <- (api, cli, commands).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]

#: Module-name prefix -> layer.  The longest matching prefix wins.
LAYERS = {
    "stowage.errors": 0,
    "stowage.format": 0,
    "stowage.ir": 1,
    "stowage.targets": 2,
    "stowage.plan": 3,
    "stowage.solvers": 4,
    "stowage.simulate": 5,
    "stowage.backend": 5,
    "stowage.tools": 5,
    "stowage.api": 6,
    "stowage.progress": 6,
    "stowage.cli": 6,
    "stowage.commands": 6,
    "stowage.__main__": 6,
    "stowage": 6,
}


def layer_of(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def module_files() -> dict[str, Path]:
    """Every production module, by its import name, found through the package-dir mapping."""
    out: dict[str, Path] = {}
    for pkg, folder in PACKAGE_DIR.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            # A nested folder that is itself mapped (stowage.ir inside stowage's tree) is not.
            name = ".".join([pkg, *parts])
            owner = max((p for p in PACKAGE_DIR if name == p or name.startswith(p + ".")), key=len)
            if owner == pkg:
                out[name] = path
    return out


MODULES = module_files()


def imports_of(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every import in the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((target, [a.name for a in node.names], node.lineno))
    return [f for f in found if f[0] == "stowage" or f[0].startswith("stowage.")]


def test_one_top_level_package_and_every_folder_is_packaged():
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert {p.split(".")[0] for p in packages} == {"stowage"}
    with_init = {n for n, p in MODULES.items() if p.name == "__init__.py"}
    assert with_init == packages, "pyproject's [tool.setuptools] packages must list every package folder"
    assert not (ROOT / "models" / "__init__.py").exists(), "models/ is data and a script, not a package"


def test_imports_go_one_way():
    bad = []
    for name, path in MODULES.items():
        mine = layer_of(name)
        for target, _, line in imports_of(name, path):
            if layer_of(target) > mine:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {name} (layer {mine}) imports {target} "
                           f"(layer {layer_of(target)})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_errors_module_imports_nothing():
    tree = ast.parse(MODULES["stowage.errors"].read_text(encoding="utf-8"))
    imported = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [getattr(n, "module", None) for n in imported] == ["__future__"]


def test_no_private_name_crosses_a_module():
    bad = []
    for name, path in MODULES.items():
        for target, names, line in imports_of(name, path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != name:
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {private} from {target}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("argv", [["--help"], ["compile", "--help"]])
def test_help_does_not_import_heavy_libraries(argv):
    code = ("import sys; from stowage.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('onnx', 'onnxruntime', 'ortools', 'pulp', 'matplotlib', 'numba') "
            "if m in sys.modules]\nprint('HEAVY', heavy)")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    assert "HEAVY []" in r.stdout, r.stdout[-500:]
