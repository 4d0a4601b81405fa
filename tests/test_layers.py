"""The package's two floors: the method (``dissam``) never imports the reproduction (``dissam.repro``), and
no module imports another in a circle (function-local imports included, so none can hide one)."""
from __future__ import annotations

import ast
from pathlib import Path

import dissam

PACKAGE = Path(dissam.__file__).parent
REPRO = "dissam.repro"
FACES = {"dissam.cli", "dissam.predict_files", "dissam.widget", "dissam.__main__"}  # may use both floors


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _target(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> set[str]:
    """Every dissam module ``module`` imports, anywhere in its code (``from pkg import sub`` counts as sub)."""
    path = MODULES[module]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dissam"))
        elif isinstance(node, ast.ImportFrom):
            target = _target(node, module, path.name == "__init__.py")
            if not target.startswith("dissam"):
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            found.update(subs or [target])
    return {m for m in found if m in MODULES and m != module}


def test_the_method_floor_never_imports_the_reproduction():
    method = [m for m in MODULES if not m.startswith(REPRO) and m not in FACES]
    offending = {m: sorted(i for i in imports_of(m) if i.startswith(REPRO)) for m in method}
    assert not {m: i for m, i in offending.items() if i}
    assert not any(target.startswith(REPRO) for target in dissam._LAZY.values())


def test_no_module_imports_in_a_circle():
    graph = {m: imports_of(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # A package importing its own submodules (its public face) is not a circle when they do not import it.
    assert not [c for c in cycles if not _package_face(c)], cycles


def _package_face(cycle: list[str]) -> bool:
    return len(cycle) == 3 and (cycle[1].startswith(cycle[0] + ".") or cycle[0].startswith(cycle[1] + "."))


def test_no_function_is_longer_than_sixty_lines():
    """A function a reader can see whole (its docstring included)."""
    long = {}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long[f"{module}.{node.name}"] = node.end_lineno - node.lineno + 1
    assert not long
