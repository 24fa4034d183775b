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
        (
            "convert",
            "class A:\n    def m(self):\n        import validation.harness.engines\n",
            3,
            "validation.harness.engines",
        ),
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


# ------------------------------------------------------------------------------------------ no import cycles
def _runtime_imports(source: str, module: str, is_package: bool) -> list[str]:
    """Every module ``source`` may import at run time: :func:`imported_modules` and, for ``from pkg import
    name``, also ``pkg.name`` (a submodule, if it is one); imports under ``if TYPE_CHECKING:`` (annotations
    only, never run) are left out."""
    tree = ast.parse(source)
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {n.lineno for stmt in node.body for n in ast.walk(stmt) if hasattr(n, "lineno")}
    imports = imported_modules(source, module, is_package)
    found = [t for line, t in imports if line not in skipped]
    by_line = dict(imports)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.lineno not in skipped and node.lineno in by_line:
            found += [f"{by_line[node.lineno]}.{alias.name}" for alias in node.names]
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module → the modules of the project it imports at run time (function-local imports included)."""
    paths = modules(root)
    names = {module_name(p, root) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        module = module_name(path, root)
        targets = set()
        for target in _runtime_imports(path.read_text(), module, path.name == "__init__.py"):
            while target and target not in names:  # `from pkg.mod import name`: the module pkg.mod
                target = target.rpartition(".")[0]
            if target and target != module and target.split(".")[0] == module.split(".")[0]:
                if not module.startswith(target + "."):  # a submodule importing its own package's __init__
                    targets.add(target)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_others():
    """Inside a package, imports form no cycle, not even through a function-local import (which only hides
    it): a module that two others need lives below both."""
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_finds_a_planted_cycle(tmp_path):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "fastsim" / "a.py").write_text("def f():\n    from fastsim.b import g\n")
    (tmp_path / "fastsim" / "b.py").write_text("from fastsim import a\n")
    (tmp_path / "fastsim" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import fastsim.a\n"
    )
    (tmp_path / "fastsim" / "d.py").write_text("import fastsim.c\n")
    assert cycles(import_graph(tmp_path)) == [["fastsim.a", "fastsim.b"]]


# ------------------------------------------------------------------------------------------ the contract
# what the simulators' engines may read of convert: the contract, the layer families and the input encoding
# (their command lines, benchmarks and synthetic networks also use datasets and normalization)
CONTRACT = ("convert.contract", "convert.layers", "convert.encoding")
SIMULATOR_TOOLS = {"__main__", "bench", "synthetic"}


def _outside(targets: set[str], allowed: tuple[str, ...]) -> set[str]:
    return {t for t in targets if not any(t == a or t.startswith(a + ".") for a in allowed)}


def test_the_simulators_read_only_the_contract_of_convert():
    graph = _cross_package_graph()
    assert "convert.contract.spec" in graph["fastsim.stages"]  # the graph sees cross-package imports
    assert "convert.normalize" in graph["fastsim.synthetic"]  # and the tools' wider ones
    problems = {
        module: sorted(_outside({t for t in targets if t.startswith("convert")}, CONTRACT))
        for module, targets in graph.items()
        if module.split(".")[0] in ("fastsim", "refsim") and module.split(".")[-1] not in SIMULATOR_TOOLS
    }
    problems = {m: t for m, t in problems.items() if t}
    assert not problems, f"simulator modules importing convert beyond its contract: {problems}"


def test_the_contract_stands_below_the_rest_of_convert():
    """convert.contract imports nothing of convert but itself and the layer families (never training,
    datasets or normalization)."""
    graph = _cross_package_graph()
    problems = {
        module: sorted(_outside({t for t in targets if t.startswith("convert")}, CONTRACT[:2]))
        for module, targets in graph.items()
        if module.startswith("convert.contract")
    }
    problems = {m: t for m, t in problems.items() if t}
    assert not problems, f"convert.contract importing the rest of convert: {problems}"


def _cross_package_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module → every module of the project it imports at run time (across packages too)."""
    paths = modules(root)
    names = {module_name(p, root) for p in paths} | {"convert.contract", "convert.layers"}
    graph: dict[str, set[str]] = {}
    for path in paths:
        module = module_name(path, root)
        targets = set()
        for target in _runtime_imports(path.read_text(), module, path.name == "__init__.py"):
            while target and target not in names:
                target = target.rpartition(".")[0]
            if target and target != module:
                targets.add(target)
        graph[module] = targets
    return graph


# validation/ by what it does: the agreement harness is the base; the paper's experiments and the sweeps build
# on it and not on each other. The shared helpers at the top (markdown, significance, cluster) are open to all.
VALIDATION_LAYERS = {
    "validation.harness": {"validation.paper", "validation.grid"},
    "validation.grid": {"validation.paper"},
    "validation.paper": {"validation.grid"},
}


def test_validation_sub_packages_import_only_downwards():
    found = []
    for path in modules():
        name = module_name(path)
        layer = next((p for p in VALIDATION_LAYERS if name == p or name.startswith(p + ".")), None)
        if layer is None:
            continue
        for line, target in imported_modules(path.read_text(), name, path.name == "__init__.py"):
            if any(target == f or target.startswith(f + ".") for f in VALIDATION_LAYERS[layer]):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert found == []
    assert (ROOT / "validation" / "harness" / "agreement.py").exists()  # the layout this test is about
