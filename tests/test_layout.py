"""The seams of the code, checked: one place builds the parts, one place names each implementation, small modules.

These read the source, so they fail as soon as someone constructs a log store or a registry in a handler again,
names the retrieval model outside its kind's registration, or lets a module grow past the size we can review.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "rsft_plugin"
MAX_MODULE_LINES = 400


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _constructed_names(path: Path) -> set[str]:
    """Names called as constructors/functions in a module (`Store(...)`, `Registry(...)`)."""
    called = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name):
                called.add(function.id)
            elif isinstance(function, ast.Attribute):
                called.add(function.attr)
    return called


def _relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def test_no_module_is_over_the_size_limit():
    too_long = {_relative(p): n for p in _modules() if (n := len(p.read_text(encoding="utf-8").splitlines()))
                > MAX_MODULE_LINES}
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_only_the_composition_root_builds_a_registry_or_a_log():
    builders = {"Registry", "SqliteLog", "PostgresLog", "open_log", "open_sqlite", "open_postgres"}
    allowed = {"rsft_plugin/parts.py"}
    offenders = {}
    for path in _modules():
        name = _relative(path)
        if name in allowed or name.startswith("rsft_plugin/log/"):
            continue
        found = _constructed_names(path) & builders
        if found:
            offenders[name] = sorted(found)
    for path in sorted((REPO / "bench").glob("*.py")) + sorted((REPO / "actions").glob("*.py")):
        found = _constructed_names(path) & builders
        if found:
            offenders[_relative(path)] = sorted(found)
    assert not offenders, f"build parts in rsft_plugin/parts.py only: {offenders}"


def test_the_retrieval_model_class_is_named_only_by_its_module_and_its_registration():
    naming = [_relative(p) for p in [*_modules(), *(REPO / "bench").glob("*.py"), *(REPO / "actions").glob("*.py")]
              if "ResponseModel" in p.read_text(encoding="utf-8")]
    assert set(naming) <= {"rsft_plugin/models/retrieval.py", "rsft_plugin/models/kinds.py"}, naming


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of every module `path` imports (`import a.b`, `from a.b import c` -> a)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_log_package_talks_to_a_database():
    drivers = {"sqlite_utils", "sqlite3", "psycopg", "psycopg2", "psycopg_pool"}
    offenders = {_relative(p): sorted(found) for p in _modules()
                 if not _relative(p).startswith("rsft_plugin/log/") and (found := _imported_modules(p) & drivers)}
    assert not offenders, offenders
