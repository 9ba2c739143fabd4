"""The README and docs/ stay true to the tree: every repository path and module they name exists,
and every relative link (and its #anchor) points at something that is there.

Paths are read from inline code and code blocks: anything that starts with one of the repository's
folders (server/, training/, bench/, tests/, proto/, deploy/, docs/, weights/), file or folder, with
`*` as a glob. Dotted module names (`server.settings.load`, `python -m training.imagelevel.features`)
must name a module, and a name after a module file must be defined in it. What the commands write at
run time is not in the tree: OUTPUTS lists the few such paths the docs name.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FOLDERS = ("server", "training", "bench", "tests", "proto", "deploy", "docs", "weights")
PACKAGES = ("server", "training", "bench", "wildscreen", "tests")

OUTPUTS = {
    "weights/cache/",       # TensorRT engines built at first start
    "bench/results.json",   # make bench
}
"""Paths the docs name that the commands create at run time (runs/, data/, review-data/, exports/,
reports/ and results/ are outside FOLDERS and never checked)."""

NOT_MODULES = {
    "server.pem", "server.key",     # TLS files in the commands
    "wildscreen.v1.Screening",      # the proto service, not a Python name
}

PATH = re.compile(r"(?<![\w./~:-])((?:%s)/[\w./*-]*)" % "|".join(FOLDERS))
DOTTED = re.compile(r"(?<![\w./~:-])((?:%s)(?:\.\w+)+)" % "|".join(PACKAGES))
FENCE = re.compile(r"^(```|~~~)")
INLINE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def split_code(text: str) -> tuple[list[str], list[str]]:
    """(code: the contents of code blocks and inline code, prose: the other lines with inline code removed)."""
    code, prose, fenced = [], [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if fenced:
            code.append(line)
        else:
            code.extend(m.group(2) for m in INLINE.finditer(line))
            prose.append(INLINE.sub("", line))
    return code, prose


def named_paths(text: str) -> set[str]:
    code, _ = split_code(text)
    return {m.group(1).rstrip(".,:;") for line in code for m in PATH.finditer(line)}


def named_modules(text: str) -> set[str]:
    code, _ = split_code(text)
    return {m.group(1) for line in code for m in DOTTED.finditer(line)}


def exists(path: str) -> bool:
    if "*" in path:
        return any(REPO.glob(path.rstrip("/")))
    return (REPO / path).exists() and (not path.endswith("/") or (REPO / path).is_dir())


@cache
def defined_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def module_problem(dotted: str) -> str | None:
    """None when `dotted` is a module, or a name defined in one; else what is missing."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:n])
        if (base / "__init__.py").exists():
            file = base / "__init__.py"
        elif base.with_suffix(".py").exists():
            file = base.with_suffix(".py")
        else:
            continue
        rest = parts[n:]
        if not rest or rest[0] in defined_names(file):
            return None
        return f"{'.'.join(parts[:n])} ({file.relative_to(REPO)}) defines no {rest[0]!r}"
    return f"no module {parts[0]}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    out: set[str] = set()
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced and (m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            base = slug(m.group(1))
            candidate, n = base, 1
            while candidate in out:
                candidate, n = f"{base}-{n}", n + 1
            out.add(candidate)
    return out


def links(path: Path) -> list[str]:
    _, prose = split_code(path.read_text())
    return [m.group(1) for line in prose for m in LINK.finditer(line)]


def link_problem(doc: Path, target: str) -> str | None:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):   # http:, https:, mailto:
        return None
    file, _, anchor = target.partition("#")
    dest = (doc.parent / file).resolve() if file else doc
    shown = dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest
    if not dest.exists():
        return f"{target}: no file {shown}"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{target}: no heading #{anchor} in {shown}"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_the_docs_name_exists(doc):
    missing = sorted(p for p in named_paths(doc.read_text()) if p not in OUTPUTS and not exists(p))
    assert missing == [], f"{doc.relative_to(REPO)} names paths that are not in the tree: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_the_docs_name_exists(doc):
    problems = sorted(filter(None, (module_problem(m) for m in named_modules(doc.read_text()) - NOT_MODULES)))
    assert problems == [], f"{doc.relative_to(REPO)}: {problems}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_at_something(doc):
    problems = sorted(filter(None, (link_problem(doc, t) for t in links(doc))))
    assert problems == [], f"{doc.relative_to(REPO)}: {problems}"


def test_the_readme_names_the_change_guides_places():
    """The change guide is checked like the rest, so it must keep naming the places a change touches."""
    named = named_paths((REPO / "README.md").read_text())
    assert {"server/core/registry.py", "server/core/taxonomy.py", "server/core/policy.py", "training/cli.py",
            "training/formats.py", "server/__init__.py", "training/__init__.py"} <= named


def test_the_checks_catch_what_they_are_for(tmp_path):
    text = "See `server/core/gone.py`, `training/*.nothing` and `server.settings.no_such_name`.\n```\nbench/gone/\n```\n"
    assert {"server/core/gone.py", "training/*.nothing", "bench/gone/"} <= named_paths(text)
    assert not any(exists(p) for p in ("server/core/gone.py", "training/*.nothing", "bench/gone/"))
    assert exists("training/*.py") and exists("server/core/") and not exists("server/config.py/")
    assert module_problem("server.settings.no_such_name") and module_problem("server.nothing")
    assert module_problem("server.settings.load") is None and module_problem("training.imagelevel.features") is None
    doc = tmp_path / "a.md"
    doc.write_text("# A title, here\n\n[x](#a-title-here) [y](#nowhere) [z](missing.md) [w](https://example.org)\n"
                   "`[not](a-link.md)`\n")
    assert [link_problem(doc, t) is None for t in links(doc)] == [True, False, False, True]
