"""The shape of loader/: no import cycle between its modules, no module over MAX_LINES lines,
no function over MAX_PARAMS parameters (read with the standard library's `ast`)."""

from __future__ import annotations

import ast
from pathlib import Path

from loader.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "loader"
MAX_LINES = 400
MAX_PARAMS = 6  # self and cls not counted
# the run history's writers, which another part of issue #19 reworks (loader/orchestrate/
# history.py and logs.py); remove them from here when that lands


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported(module: str, path: Path, node: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The modules of loader/ that one import statement names (the module, not its package,
    when `from package import module`)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    if not isinstance(node, ast.ImportFrom):
        return set()
    base = node.module or ""
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    found = set()
    for alias in node.names:
        if f"{base}.{alias.name}" in modules:
            found.add(f"{base}.{alias.name}")
        elif base in modules:
            found.add(base)
    return found


def import_graph() -> dict[str, set[str]]:
    """Every import of a loader module by another, at the top or inside a function (a lazy
    import is still a dependency), TYPE_CHECKING imports included."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            graph[module] |= _imported(module, path, node, modules) - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = function.args
    names = [a.arg for a in args.posonlyargs + args.args]
    count = len(names) + len(args.kwonlyargs) + bool(args.vararg) + bool(args.kwarg)
    return count - (1 if names and names[0] in ("self", "cls") else 0)


def test_find_cycle_names_the_modules_of_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_loader_modules_import_each_other_without_a_cycle():
    graph = import_graph()
    assert graph["loader.extract.pipeline"]  # the graph sees the imports at all
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_is_over_the_line_limit():
    long = {
        str(path.relative_to(PROJECT_ROOT)): n
        for path in _modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: split them by concern"


def test_no_function_takes_more_than_six_parameters():
    wide = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{module}.{node.name}"
                if (n := _parameters(node)) > MAX_PARAMS:
                    wide.append(f"{name} ({n})")
    assert wide == [], "group the parameters in a dataclass that names the concept: " + ", ".join(
        wide
    )
