"""The shape of ``shared/`` in figures: module sizes, status writes, retry loops, the import graph.

    python scripts/structure_report.py [ROOT]

Read with the standard library's ``ast`` only, so it runs on any checkout
(tests/unit/test_structure.py asserts on the same figures):

* lines per module;
* the places that write a message's status: an assignment to ``.status``, a
  Firestore field path ending in ``.status`` under ``messages.``, or a
  literal entry ``{"status": <a status>}``;
* the hand-written compare-and-set retry loops: a ``for``/``while`` loop with
  an ``except Conflict`` inside;
* the import graph of ``shared`` (every import, also those inside functions
  and under ``TYPE_CHECKING``) and its cycles.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The one compare-and-set helper (issue 18): its own loop is the one every writer shares.
HELPER = "shared.adapters.compare_and_set"
STATUS_NAMES = frozenset({
    "RECEIVED", "PROCESSING", "ANSWERED", "SENDING", "SENT", "FAILED", "DEAD_LETTERED", "IGNORED",
    "WAITING_BURST", "JOINED", "MERGED",
})


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    imports: set[str] = field(default_factory=set)
    status_writes: list[int] = field(default_factory=list)
    retry_loops: list[int] = field(default_factory=list)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            # ``from shared.domain import conversation`` imports a module, not a name.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _is_status_path(node: ast.AST) -> bool:
    """``"messages.X.status"`` or ``f"messages.{sid}.status"``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.startswith("messages.") and node.value.endswith(".status")
    if isinstance(node, ast.JoinedStr) and node.values:
        first, last = node.values[0], node.values[-1]
        return (
            isinstance(first, ast.Constant) and str(first.value).startswith("messages.")
            and isinstance(last, ast.Constant) and str(last.value).endswith(".status")
        )
    return False


def _status_writes(tree: ast.AST) -> list[int]:
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "status":
                    lines.append(node.lineno)
                elif isinstance(target, ast.Subscript) and _is_status_path(target.slice):
                    lines.append(node.lineno)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if key is None:
                    continue
                if _is_status_path(key):
                    lines.append(key.lineno)
                elif (isinstance(key, ast.Constant) and key.value == "status"
                      and isinstance(value, ast.Name) and value.id in STATUS_NAMES):
                    lines.append(key.lineno)
    return sorted(lines)


def _catches_conflict(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(
        (isinstance(k, ast.Name) and k.id == "Conflict") or (isinstance(k, ast.Attribute) and k.attr == "Conflict")
        for k in kinds if k is not None
    )


def _retry_loops(tree: ast.AST) -> list[int]:
    loops = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.While)):
            if any(isinstance(inner, ast.ExceptHandler) and _catches_conflict(inner) for inner in ast.walk(node)):
                loops.append(node.lineno)
    # A loop inside a loop that both retry counts once, as the outer one.
    nested = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.While)) and node.lineno in loops:
            for inner in ast.walk(node):
                if inner is not node and isinstance(inner, (ast.For, ast.While)) and inner.lineno in loops:
                    nested.add(inner.lineno)
    return [line for line in loops if line not in nested]


def scan(root: Path, package: str = "shared") -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted((root / package).rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source, str(path))
        name = module_name(root, path)
        module = Module(name, path, len(source.splitlines()))
        module.imports = _imports(tree, name, path.name == "__init__.py")
        module.status_writes = _status_writes(tree)
        module.retry_loops = _retry_loops(tree)
        modules[name] = module
    for module in modules.values():
        module.imports = {target for target in module.imports if target in modules and target != module.name}
    return modules


def graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Module → the modules of the package it imports (a package's ``__init__`` imports are left out)."""
    return {name: {t for t in m.imports if modules[t].path.name != "__init__.py"} for name, m in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def report(root: Path) -> str:
    modules = scan(root)
    edges = graph(modules)
    out = ["lines per module of shared/:"]
    for name, module in sorted(modules.items(), key=lambda item: item[1].lines):
        out.append(f"  {module.lines:5}  {module.path.relative_to(root)}")
    out.append(f"  {sum(m.lines for m in modules.values()):5}  total, {len(modules)} modules; "
               f"largest {max(m.lines for m in modules.values())}")
    writes = [(m.path.relative_to(root), line) for m in modules.values() for line in m.status_writes]
    out.append(f"places that write a message's status: {len(writes)}")
    out += [f"  {path}:{line}" for path, line in writes]
    loops = [(m.path.relative_to(root), line) for m in modules.values() for line in m.retry_loops
             if m.name != HELPER]
    helper = [line for line in modules[HELPER].retry_loops] if HELPER in modules else []
    out.append(f"hand-written compare-and-set retry loops: {len(loops)} in {len({p for p, _ in loops})} files"
               + (f" (besides the helper's own, {HELPER}:{helper[0]})" if helper else ""))
    out += [f"  {path}:{line}" for path, line in loops]
    out.append("import graph of shared/ (module -> modules of shared it imports):")
    for name in sorted(edges):
        if edges[name]:
            short = sorted(t.removeprefix("shared.") for t in edges[name])
            out.append(f"  {name.removeprefix('shared.')} -> {', '.join(short)}")
    found = cycles(edges)
    out.append(f"import cycles: {len(found)}")
    out += ["  " + " <-> ".join(c.removeprefix("shared.") for c in component) for component in found]
    return "\n".join(out)


if __name__ == "__main__":
    print(report(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]))
