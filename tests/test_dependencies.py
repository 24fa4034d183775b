"""The pipeline flows one way (see the README): convert -> {fastsim, refsim} -> validation.

Every module of the four packages is parsed with ``ast`` and every import in it is checked, including imports
inside functions (the lazy ones), relative imports and ``importlib.import_module("...")`` with a literal name:

* the simulators never import each other (fastsim -/-> refsim, refsim -/-> fastsim);
* nothing imports validation (convert, fastsim, refsim -/-> validation);
* convert imports neither simulator (convert -/-> fastsim, refsim).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("convert", "fastsim", "refsim", "validation")
FORBIDDEN = {
    "convert": {"fastsim", "refsim", "validation"},
    "fastsim": {"refsim", "validation"},
    "refsim": {"fastsim", "validation"},
    "validation": set(),
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, the module named ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append((node.lineno, target))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def violations(path: Path, root: Path = ROOT) -> list[str]:
    module = module_name(path, root)
    top = module.split(".")[0]
    out = []
    for line, target in imported_modules(path.read_text(), module, path.name == "__init__.py"):
        if target.split(".")[0] in FORBIDDEN[top]:
            out.append(f"{path.relative_to(root)}:{line}: {top} imports {target} ({top} must not import it)")
    return out


def modules(root: Path = ROOT) -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py"))


def test_every_package_is_scanned():
    found = {module_name(p).split(".")[0] for p in modules()}
    assert found == set(PACKAGES)
    assert len(modules()) > 20


def test_the_pipeline_flows_one_way():
    problems = [v for path in modules() for v in violations(path)]
    assert not problems, "forbidden imports:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("package", "source", "line", "caught"),
    [
        ("fastsim", "import refsim.build\n", 1, "refsim.build"),
        ("fastsim", "def f():\n    from refsim import simulate\n", 2, "refsim"),
        ("refsim", "import numpy\nif True:\n    import fastsim.step as s\n", 3, "fastsim.step"),
        ("convert", "class A:\n    def m(self):\n        import validation.engines\n", 3, "validation.engines"),
        ("convert", "import importlib\nimportlib.import_module('fastsim.simulate')\n", 2, "fastsim.simulate"),
    ],
)
def test_the_checker_catches_each_kind_of_import(tmp_path, package, source, line, caught):
    """The check above can fail: a planted import of each form is reported with its file and line."""
    path = tmp_path / package / "sub" / "mod.py"
    path.parent.mkdir(parents=True)
    path.write_text(source)
    assert violations(path, tmp_path) == [
        f"{package}/sub/mod.py:{line}: {package} imports {caught} ({package} must not import it)"
    ]


def test_allowed_imports_pass(tmp_path):
    path = tmp_path / "validation" / "mod.py"
    path.parent.mkdir()
    path.write_text("import fastsim\nfrom refsim.simulate import simulate\nfrom . import tables\nimport convert\n")
    assert violations(path, tmp_path) == []
    assert imported_modules(path.read_text(), "validation.mod") == [
        (1, "fastsim"),
        (2, "refsim.simulate"),
        (3, "validation"),  # relative imports resolve within their own package
        (4, "convert"),
    ]
    assert imported_modules("from ..b import c\n", "refsim.a.mod") == [(1, "refsim.b")]
