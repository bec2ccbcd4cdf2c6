"""Every function fits on a screen and none is tangled: at most 80 lines, no radon E or F rating.

Read from the source (AST for length, radon for cyclomatic complexity) across archbench/, ppo_core/
and bench/; a planted offender proves each check can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from radon.complexity import cc_rank, cc_visit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("archbench", "ppo_core", "bench")
MAX_LINES = 80

# Data tables, not logic: one entry per row reads better than a table split across functions.
ALLOWED_LONG = {
    "ppo_core/features.py::_specs",  # the feature table: one FeatureSpec literal per feature
}


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def long_functions(source: str, path: str) -> list[str]:
    """'path::name lines' for every function or method over MAX_LINES lines (decorators out)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_LINES:
                out.append(f"{path}::{node.name} {lines}")
    return out


def tangled_functions(source: str, path: str) -> list[str]:
    """'path::name rank(complexity)' for every block radon rates E or F."""
    return [
        f"{path}::{block.name} {cc_rank(block.complexity)}({block.complexity})"
        for block in cc_visit(source)
        if cc_rank(block.complexity) in ("E", "F")
    ]


def _offenders(check) -> list[str]:
    found = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        found.extend(check(path.read_text(encoding="utf-8"), rel))
    return found


def test_no_function_over_80_lines() -> None:
    long = [f for f in _offenders(long_functions) if f.split(" ")[0] not in ALLOWED_LONG]
    assert not long, f"split these functions (over {MAX_LINES} lines): {long}"


def test_no_function_rated_e_or_f_by_radon() -> None:
    tangled = _offenders(tangled_functions)
    assert not tangled, f"untangle these functions (radon E/F): {tangled}"


def test_allow_list_names_real_functions() -> None:
    """A stale entry would hide a future offender of the same name: each one must exist."""
    for entry in ALLOWED_LONG:
        rel, name = entry.split("::")
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in names, f"{entry} is allow-listed but no longer exists"


def _planted(lines: int, branches: int) -> str:
    body = [f"    if x == {i}:\n        x += {i}\n" for i in range(branches)]
    body += ["    x += 1\n"] * max(0, lines - 2 - 2 * branches)
    return "def planted(x):\n" + "".join(body) + "    return x\n"


@pytest.mark.parametrize(("lines", "expected"), [(80, []), (81, ["p.py::planted 81"])])
def test_length_check_sees_a_planted_long_function(lines: int, expected: list[str]) -> None:
    assert long_functions(_planted(lines, 0), "p.py") == expected


@pytest.mark.parametrize(("branches", "expected"), [(29, []), (30, ["p.py::planted E(31)"])])
def test_radon_check_sees_a_planted_tangled_function(branches: int, expected: list[str]) -> None:
    assert tangled_functions(_planted(0, branches), "p.py") == expected
