"""The package's layout: the tree shows the layers, and imports only go down them (``package_imports.py``
reads the import graph from the source, every ``import`` counted, also those inside functions)."""

from __future__ import annotations

import pytest

from package_imports import PACKAGE, import_graph
from paths import REPO_ROOT

# Each top-level part of the package and its layer: a module may import its own layer and those below.
LAYERS = {
    "model_files": 0,
    "gfpgan_arch": 1, "codeformer_arch": 1, "restoreformer_arch": 1, "gpen_arch": 1,
    "face_restorers": 2, "face_detectors": 2,
    "face_pipeline": 3,
    "nodes": 4, "jobs": 4,
    "__init__": 5, "__main__": 5,
}
MAX_FLOORS = 8  # the longest chain of top-level parts importing one another (10 before the layout move)


def _part(module: str) -> str:
    """The top-level part a module belongs to: ``face_pipeline`` for ``comfyui_gfpgan.face_pipeline.detect``."""
    return module.split(".")[1] if "." in module else "__init__"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target, path + [target])):
                return found
        state[node] = 2
        return None

    return next((c for start in sorted(graph) if start not in state and (c := visit(start, [start]))), None)


def test_the_package_root_holds_only_the_entry_points():
    loose = sorted(m for m in import_graph() if m.count(".") == 1 and not REPO_ROOT.joinpath(_part(m)).is_dir())
    assert loose == [f"{PACKAGE}.__main__"], "a module at the package root that is not an entry point: " + ", ".join(loose)


def test_every_part_has_a_layer_and_every_package_is_installed():
    parts = {_part(m) for m in import_graph()}
    assert parts == set(LAYERS), f"parts without a layer, or layers without a part: {sorted(parts ^ set(LAYERS))}"
    packages = {m for m in import_graph() if (REPO_ROOT.joinpath(*m.split(".")[1:]) / "__init__.py").is_file()}
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    installed = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert sorted(packages | {PACKAGE}) == sorted(installed), "pyproject's packages and the tree differ"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """The imports of ``graph`` that go up the layers."""
    return sorted(f"{module} imports {target}" for module, targets in graph.items() for target in targets
                  if LAYERS[_part(target)] > LAYERS[_part(module)])


def tallest_chain(graph: dict[str, set[str]]) -> tuple[str, ...]:
    """The longest chain of top-level parts importing one another (the graph's floors; a part appears once)."""
    between: dict[str, set[str]] = {}
    for module, targets in graph.items():
        between.setdefault(_part(module), set()).update(_part(t) for t in targets if _part(t) != _part(module))

    def from_part(chain: tuple[str, ...]) -> tuple[str, ...]:
        onward = [from_part(chain + (t,)) for t in sorted(between.get(chain[-1], ())) if t not in chain]
        return max(onward, key=len, default=chain)

    return max((from_part((part,)) for part in sorted(between)), key=len)


def test_there_is_no_import_cycle():
    cycle = _cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_imports_only_go_down_the_layers():
    assert not upward_imports(import_graph()), "\n".join(upward_imports(import_graph()))


def test_the_import_graph_is_at_most_max_floors_tall():
    chain = tallest_chain(import_graph())
    assert len(chain) <= MAX_FLOORS, " -> ".join(chain)


def test_the_checks_see_a_bad_import():
    """Each check fails on the mistake it guards against (a guard that cannot fail guards nothing)."""
    def with_import(module: str, target: str) -> dict[str, set[str]]:
        graph = {name: set(targets) for name, targets in import_graph().items()}
        graph[f"{PACKAGE}.{module}"].add(f"{PACKAGE}.{target}")
        return graph

    assert _cycle(with_import("face_restorers.families", "face_restorers.registry")) is not None
    assert upward_imports(with_import("model_files.reader", "face_pipeline.detect")) == [
        f"{PACKAGE}.model_files.reader imports {PACKAGE}.face_pipeline.detect"]
    assert len(tallest_chain(with_import("gfpgan_arch.stylegan2", "codeformer_arch.vqgan"))) > MAX_FLOORS
