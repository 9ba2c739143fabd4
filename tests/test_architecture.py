"""The layering holds: read from the source (every import, also those inside functions) and from
what importing really loads. A newcomer who breaks a rule learns it here, with the culprit named."""

from __future__ import annotations

import ast
import json
import os
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
                                             "server.main", "server.workers")) == []


BELOW_THE_EDGES = ("server.config", "server.settings", "server.logs", "server.offline")
"""What the core may import from server/ outside itself: its own settings (CoreSettings), the
settings loader, logging and stay_offline. The edges' settings live in their packages."""
EDGES = ("server.grpc", "server.review", "server.backfill", "server.main", "server.workers")


def test_the_core_imports_no_edge_settings():
    outside = sorted(f"{module_name(p)} imports {m}" for p in project_files() if module_name(p).startswith("server.core")
                     for m in imports_of(p) if m.startswith("server.") and not m.startswith(("server.core", *BELOW_THE_EDGES)))
    assert outside == []
    below = sorted(f"{module_name(p)} imports {m}" for p in project_files() if module_name(p) in BELOW_THE_EDGES
                   for m in imports_of(p) if m.startswith(EDGES))
    assert below == []


def init_files() -> list[Path]:
    return sorted(p for p in [*project_files(), *(REPO / "tests").rglob("*.py")] if p.name == "__init__.py")


def side_effects(source: str, name: str) -> list[str]:
    """Statements of a package `__init__` other than its docstring, imports and `__all__`."""
    found = []
    for i, node in enumerate(ast.parse(source, name).body):
        docstring = i == 0 and isinstance(node, ast.Expr) and isinstance(getattr(node.value, "value", None), str)
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        exports = [getattr(target, "id", None) for target in targets] == ["__all__"]
        if not (docstring or exports or isinstance(node, (ast.Import, ast.ImportFrom))):
            found.append(f"{name}:{node.lineno}: {ast.unparse(node).splitlines()[0]}")
    return found


def test_no_package_does_anything_when_imported():
    """Importing a package only imports: no call at import time (going offline is each entry point's
    explicit first call, server.offline.stay_offline), and the environment is as it was."""
    assert [line for p in init_files() for line in side_effects(p.read_text(), str(p.relative_to(REPO)))] == []
    went_offline_at_import = '"""A package."""\nfrom server.offline import stay_offline\nstay_offline()\n__all__ = ["x"]\n'
    assert side_effects(went_offline_at_import, "bad/__init__.py") == ["bad/__init__.py:3: stay_offline()"]
    packages = sorted(module_name(p) for p in init_files() if p.relative_to(REPO).parts[0] != "tests")
    script = ("import importlib, json, os, sys\n"
              "before = dict(os.environ)\n"
              f"for name in {packages!r}:\n"
              "    importlib.import_module(name)\n"
              "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))\n")
    env = {k: v for k, v in os.environ.items() if k != "YOLO_OFFLINE"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_serving_never_imports_training_or_the_benchmarks():
    assert forbidden_imports("server", ("training", "bench")) == []


def test_the_backfill_edge_knows_no_protocol():
    """No gRPC: of the client package only the review queue's HTTP client (`--queue URL`)."""
    assert forbidden_imports("server.backfill", ("grpc", "grpc_health", "grpc_reflection", "wildscreen.v1",
                                              "wildscreen.client", "wildscreen.cli", "server.grpc",
                                              "server.main", "server.workers", "server.process")) == []


def test_only_the_backfill_imports_ray_and_pyarrow():
    """They are the optional `backfill` extra: the server's own install has neither (its benchmark may use them)."""
    outside = [line for line in forbidden_imports("", ("ray", "pyarrow"))
               if not line.startswith(("server.backfill", "bench.backfill "))]
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


TRAINING_FLOORS = ("training.steps.", "training.labelling.")


def training_modules() -> dict[str, Path]:
    return {module_name(p): p for p in (REPO / "training").rglob("*.py") if p.name != "__main__.py"}


def registers_a_command(path: Path) -> bool:
    return any(isinstance(node, ast.FunctionDef) and node.name == "add_command" for node in ast.parse(path.read_text()).body)


def test_training_steps_do_not_import_each_other():
    """A step (a module of training/steps or training/labelling that registers a command) imports no
    other step, and nothing there imports a recipe or the CLI: what two steps share lives on the floor
    below (training/*.py: layout, mapping, formats, metrics, modelfile, runs, phash, sheets) or in a
    helper that registers nothing (calibrate, quantize, modelcard, segment)."""
    modules, graph = training_modules(), project_graph()
    steps = {name for name, path in modules.items() if name.startswith(TRAINING_FLOORS) and registers_a_command(path)}
    assert {"training.steps.export", "training.steps.evaluate", "training.labelling.autolabel"} <= steps
    borrowed = sorted(f"{name} imports {m}" for name in modules if name.startswith(TRAINING_FLOORS) for m in graph[name]
                      if m in steps or m.startswith(("training.recipes", "training.cli")))
    assert borrowed == []


def test_the_training_floor_below_the_steps_imports_none_of_them():
    modules, graph = training_modules(), project_graph()
    shared = {name for name, path in modules.items() if path.parent == REPO / "training" and path.name != "__init__.py"} - {"training.cli"}
    assert {"training.layout", "training.metrics", "training.modelfile"} <= shared
    upward = sorted(f"{name} imports {m}" for name in shared for m in graph[name] if m.startswith("training.") and m not in shared)
    assert upward == []


def test_every_training_command_is_listed_and_described():
    """cli.COMMANDS names every module that registers a command, and --help's description names every subcommand."""
    from training import cli

    listed = {module.__name__ for module in cli.COMMANDS}
    assert listed == {name for name, path in training_modules().items() if registers_a_command(path)}
    subcommands = cli.build_parser()._subparsers._group_actions[0].choices
    described = {line.split()[0] for line in cli.__doc__.splitlines() if line.startswith("    ")}
    assert described == set(subcommands)


def test_the_module_map_in_training_init_is_true():
    """training/__init__.py's docstring names every module and package of training/ (not inside imagelevel/), and only those."""
    doc = (REPO / "training" / "__init__.py").read_text().split('"""')[1]
    named = {line.split()[0].rstrip("/") for line in doc.splitlines() if line.startswith("    ") and line.strip()}
    actual = {p.stem for p in (REPO / "training").rglob("*.py") if p.stem not in ("__init__", "__main__") and "imagelevel" not in p.parts}
    actual |= {p.name for p in (REPO / "training").iterdir() if (p / "__init__.py").exists()}
    assert named == actual, (sorted(actual - named), sorted(named - actual))
