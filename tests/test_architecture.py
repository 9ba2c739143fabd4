"""The layering holds: read from the source (every import, also those inside functions) and from
what importing really loads. A newcomer who breaks a rule learns it here, with the culprit named."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "training", "wildscreen", "bench")
MAX_LINES = 400
GENERATED = ("wildscreen/v1/",)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")
                  if not str(p.relative_to(REPO)).startswith(GENERATED))


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def project_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in project_files()}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                on_stack.discard(w)
                component.append(w)
            on_stack.discard(v)
            if component:
                out.append(sorted(component + [v]))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert cycles(project_graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def forbidden_imports(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{module_name(p)} imports {m}" for p in project_files() if module_name(p).startswith(prefix)
                  for m in imports_of(p) if m.split(".")[0] in forbidden or m.startswith(forbidden))


def test_the_core_knows_no_protocol():
    assert forbidden_imports("server.core", ("grpc", "grpc_health", "grpc_reflection", "wildscreen", "server.grpc",
                                             "server.main", "server.workers", "server.process")) == []


def test_serving_never_imports_training_or_the_benchmarks():
    assert forbidden_imports("server", ("training", "bench")) == []


def test_the_backfill_edge_knows_no_protocol():
    assert forbidden_imports("server.batch", ("grpc", "grpc_health", "grpc_reflection", "wildscreen", "server.grpc",
                                              "server.main", "server.workers", "server.process")) == []


def test_only_the_backfill_imports_ray_and_pyarrow():
    """They are the optional `backfill` extra: the server's own install has neither (its benchmark may use them)."""
    outside = [line for line in forbidden_imports("", ("ray", "pyarrow"))
               if not line.startswith(("server.batch", "bench.backfill "))]
    assert outside == []


def installed_closure(requirements: list[str]) -> set[str]:
    """The distributions these requirements install, with their extras, followed through the installed metadata."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen, todo = set(), [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        dist = req.name.lower().replace("_", "-")
        for wanted in [""] + sorted(req.extras):
            if (dist, wanted) not in seen:
                seen.add((dist, wanted))
                todo += [(Requirement(r), wanted) for r in metadata.requires(dist) or []]
    return {dist for dist, _ in seen}


def test_the_servers_own_install_pulls_in_neither_ray_nor_pyarrow():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {"ray", "pyarrow"} <= installed_closure(project["optional-dependencies"]["backfill"])
    assert installed_closure(project["dependencies"]) & {"ray", "pyarrow"} == set()


def test_the_client_depends_on_the_stubs_only():
    assert forbidden_imports("wildscreen", ("server", "training", "bench", "torch", "ultralytics")) == []


def loaded_by(modules: list[str], unwanted: tuple[str, ...]) -> dict[str, list[str]]:
    """Import each module in turn in a fresh interpreter; which of `unwanted` each one loaded."""
    script = (
        "import importlib, json, sys\n"
        f"unwanted, out = {unwanted!r}, {{}}\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    out[name] = sorted(m for m in unwanted if m in sys.modules)\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def grpc_free(modules: list[str]) -> list[str]:
    """The modules after whose import grpc is loaded: the first one named is the culprit."""
    loaded = loaded_by(modules, ("grpc",))
    return [name for name, found in loaded.items() if found]


def test_every_training_module_imports_without_grpc():
    modules = sorted(module_name(p) for p in (REPO / "training").rglob("*.py") if p.name != "__main__.py")
    assert len(modules) > 10
    assert grpc_free(modules) == []


def test_every_core_module_imports_without_grpc():
    modules = sorted(module_name(p) for p in (REPO / "server" / "core").rglob("*.py"))
    assert "server.core.screening" in modules
    assert grpc_free(modules) == []


def test_the_client_loads_neither_server_nor_training():
    loaded = loaded_by(["wildscreen.cli", "wildscreen.client"], ("server", "training", "torch"))
    assert loaded == {"wildscreen.cli": [], "wildscreen.client": []}


@pytest.mark.parametrize("path", project_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_files_stay_small_and_named_for_what_they_hold(path):
    assert path.name != "utils.py", "name the module for its one concern"
    assert len(path.read_text().splitlines()) <= MAX_LINES, f"{path.name} is over {MAX_LINES} lines: split it by concern"


def test_the_module_map_in_server_init_is_true():
    """server/__init__.py's docstring names every module and package of server/, and only those."""
    doc = (REPO / "server" / "__init__.py").read_text().split('"""')[1]
    heads = [line.strip().split("  ")[0] for line in doc.splitlines() if line.startswith("    ") and line.strip()]
    named = {name.strip().rstrip("/") for head in heads for name in head.split(",")}
    actual = {p.stem for p in (REPO / "server").rglob("*.py") if p.stem not in ("__init__", "__main__")}
    actual |= {p.name for p in (REPO / "server").iterdir() if (p / "__init__.py").exists()}
    assert named == actual, (sorted(actual - named), sorted(named - actual))
