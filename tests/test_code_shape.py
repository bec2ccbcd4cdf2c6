"""Every function fits on a screen and none is tangled: at most 80 lines, radon C or better; and
every module fits one job: at most 600 lines.

Read from the source (AST for length, radon for cyclomatic complexity, line counts for modules)
across archbench/, ppo_core/ and bench/; a planted offender proves each check can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from radon.complexity import cc_rank, cc_visit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("archbench", "ppo_core", "bench")
MAX_LINES = 80
MAX_MODULE_LINES = 600
TANGLED_RANKS = ("D", "E", "F")  # radon: D is complexity 21-30; a function past 20 is two

# Data tables, not logic: one entry per row reads better than a table split across functions.
ALLOWED_LONG = {
    "ppo_core/features.py::_specs",  # the feature table: one FeatureSpec literal per feature
}


# Modules allowed past MAX_MODULE_LINES, each with the most lines it may have and why. Empty
# since archbench/cli/training.py was split into train, evaluate and run_data (2026-12-03); the
# mechanism stays for the next module that must wait a round for its split.
ALLOWED_LONG_MODULES: dict[str, int] = {}


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
    """'path::name rank(complexity)' for every block radon rates D, E or F."""
    return [
        f"{path}::{block.name} {cc_rank(block.complexity)}({block.complexity})"
        for block in cc_visit(source)
        if cc_rank(block.complexity) in TANGLED_RANKS
    ]


def long_modules(source: str, path: str, allowed: dict[str, int] | None = None) -> list[str]:
    """'path lines' when the module is over its limit (MAX_MODULE_LINES unless `allowed`,
    by default ALLOWED_LONG_MODULES, gives it more)."""
    allowed = ALLOWED_LONG_MODULES if allowed is None else allowed
    lines = len(source.splitlines())
    limit = allowed.get(path, MAX_MODULE_LINES)
    return [f"{path} {lines}"] if lines > limit else []


def _offenders(check) -> list[str]:
    found = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        found.extend(check(path.read_text(encoding="utf-8"), rel))
    return found


def test_no_function_over_80_lines() -> None:
    long = [f for f in _offenders(long_functions) if f.split(" ")[0] not in ALLOWED_LONG]
    assert not long, f"split these functions (over {MAX_LINES} lines): {long}"


def test_no_function_rated_d_or_worse_by_radon() -> None:
    tangled = _offenders(tangled_functions)
    assert not tangled, f"untangle these functions (radon D/E/F): {tangled}"


def test_no_module_over_600_lines() -> None:
    long = _offenders(long_modules)
    assert not long, f"split these modules by job (over {MAX_MODULE_LINES} lines): {long}"


def test_allow_list_names_real_functions() -> None:
    """A stale entry would hide a future offender of the same name: each one must exist."""
    for entry in ALLOWED_LONG:
        rel, name = entry.split("::")
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in names, f"{entry} is allow-listed but no longer exists"


def stale_module_allowances(allowed: dict[str, int]) -> list[str]:
    """Why each entry of `allowed` should go: its module is gone, back under the limit, or
    allowed fewer lines than everyone else (an empty list: every entry earns its place)."""
    stale = []
    for rel, limit in allowed.items():
        path = ROOT / rel
        if not path.is_file():
            stale.append(f"{rel} is allow-listed but no longer exists")
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines <= MAX_MODULE_LINES:
            stale.append(f"{rel} has {lines} lines: drop its allow-list entry")
        if limit <= MAX_MODULE_LINES:
            stale.append(f"{rel}: an allowance under the limit is no exception")
    return stale


def test_module_allow_list_names_real_long_modules() -> None:
    """An entry for a module that is gone, or back under the limit, would let it grow again."""
    stale = stale_module_allowances(ALLOWED_LONG_MODULES)
    assert not stale, "\n".join(stale)


@pytest.mark.parametrize(
    ("allowed", "expected"),
    [
        ({}, []),
        ({"archbench/gone.py": 700}, ["archbench/gone.py is allow-listed but no longer exists"]),
        ({"archbench/__init__.py": 700}, ["archbench/__init__.py has"]),
        ({"archbench/__init__.py": 500}, ["archbench/__init__.py has", "under the limit"]),
    ],
)
def test_module_allow_list_check_sees_stale_entries(
    allowed: dict[str, int], expected: list[str]
) -> None:
    """The allow-list check fails on a planted stale entry, so an empty list is not a pass by
    default: each kind of stale entry is named."""
    stale = stale_module_allowances(allowed)
    assert len(stale) == len(expected), stale
    for message, part in zip(stale, expected, strict=True):
        assert part in message


def _planted(lines: int, branches: int) -> str:
    body = [f"    if x == {i}:\n        x += {i}\n" for i in range(branches)]
    body += ["    x += 1\n"] * max(0, lines - 2 - 2 * branches)
    return "def planted(x):\n" + "".join(body) + "    return x\n"


@pytest.mark.parametrize(("lines", "expected"), [(80, []), (81, ["p.py::planted 81"])])
def test_length_check_sees_a_planted_long_function(lines: int, expected: list[str]) -> None:
    assert long_functions(_planted(lines, 0), "p.py") == expected


@pytest.mark.parametrize(
    ("branches", "expected"),
    [(19, []), (20, ["p.py::planted D(21)"]), (30, ["p.py::planted E(31)"])],
)
def test_radon_check_sees_a_planted_tangled_function(branches: int, expected: list[str]) -> None:
    assert tangled_functions(_planted(0, branches), "p.py") == expected


@pytest.mark.parametrize(
    ("path", "lines", "expected"),
    [
        ("p.py", 600, []),
        ("p.py", 601, ["p.py 601"]),
        ("long.py", 700, []),
        ("long.py", 701, ["long.py 701"]),
    ],
)
def test_module_length_check_sees_a_planted_long_module(
    path: str, lines: int, expected: list[str]
) -> None:
    # long.py is allowed 700 lines here, as an entry of ALLOWED_LONG_MODULES would be.
    assert long_modules("x = 1\n" * lines, path, allowed={"long.py": 700}) == expected
