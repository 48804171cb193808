"""The import graph runs one way: configuration at the bottom, then serving models, the
stream's counting, alerting, the worker wiring and the CLI on top; training sees only
models and configuration. Lazy imports inside functions count too: a cycle hidden in a
function body is still a cycle."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

from config.settings import ModelFamily
from models.bundle import FAMILIES

ROOT = Path(__file__).resolve().parents[2]

# Each product package and the packages it may import.
ALLOWED = {
    "config": set(),
    "models": {"config"},
    "counting": {"config", "models"},
    "alerting": {"config", "models", "counting"},
    "stream": {"config", "models", "counting", "alerting"},
    "training": {"config", "models"},
    # The console draws the worker's live chart with stream.dashboard (pure: no Faust).
    "console": {"config", "models", "counting", "alerting", "stream"},
    "badbuzz": {"config", "models", "counting", "alerting", "stream", "training", "console"},
}
TOOLING = {"benchmarks", "tests"}
# The registry is reached through models.registry alone; training logs its runs itself, and
# the pyfunc is MLflow's face of a bundle.
MLFLOW_USERS = {"models.registry", "models.pyfunc", "training.tracking"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in ALLOWED for p in (ROOT / pkg).rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules imported anywhere in the file, resolved to the longest known name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import submodule` needs the submodule; any other name needs pkg itself.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            parts = target.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts and ".".join(parts) != name:
                found.add(".".join(parts))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_packages_import_only_the_layers_below_them():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if target.split(".")[0] not in ALLOWED[module.split(".")[0]] | {module.split(".")[0]}
    )
    assert wrong == []


def test_no_module_cycle():
    assert _cycles(_graph()) == []


def test_the_product_never_imports_development_tooling():
    offenders = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{name} imports {m}" for m in mods if m.split(".")[0] in TOOLING]
    assert offenders == []


def test_only_the_registry_run_tracking_and_the_pyfunc_import_mlflow():
    users = set()
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(m.split(".")[0] == "mlflow" for m in mods):
                users.add(name)
    assert users == MLFLOW_USERS


def test_settings_validate_the_model_families_models_defines():
    """Settings sit below models/, so they spell the families themselves."""
    assert get_args(ModelFamily) == FAMILIES


def test_the_checker_sees_a_cycle_and_a_wrong_way_import():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _imports("models.x", ROOT / "models" / "scorer.py", {"models.x", "config.settings"}) <= {"config.settings"}


def test_test_files_have_names_of_their_own():
    """pytest imports test files by basename (the folders are not packages): two files of
    one name in tests/unit and tests/integration stop the whole run at collection."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
