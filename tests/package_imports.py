"""The package's import graph, read from its source: every ``import`` counted, also those inside functions,
so the tests that use it see what a reader of the code sees, whichever modules a run happens to import."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from paths import REPO_ROOT

PACKAGE = "comfyui_gfpgan"
NOT_PACKAGE = {"tests", "benchmarks", "scripts", "docs", "web", "workflows"}


@functools.cache
def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (``comfyui_gfpgan.face_pipeline.detect``): its file."""
    found = {}
    for path in sorted(REPO_ROOT.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        if parts[0] in NOT_PACKAGE or parts[0].startswith("."):
            continue
        if len(parts) > 1 and not (REPO_ROOT.joinpath(*parts[:-1]) / "__init__.py").is_file():
            continue
        name = ".".join((PACKAGE, *parts)).removesuffix(".__init__")
        found[name] = path
    return found


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from .x import name`` counts as importing ``x.name``
    when that is a module, else ``x``)."""
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = name == PACKAGE or any(m.startswith(name + ".") for m in modules)
        here = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = here.split(".")[: len(here.split(".")) - node.level + 1] if node.level else []
                base = ".".join(base + ([node.module] if node.module else []))
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def reachable(start: str) -> set[str]:
    """The modules that importing ``start`` (a dotted name) can reach, ``start`` included."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += import_graph()[module]
    return seen
