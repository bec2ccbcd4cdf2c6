"""The map of the house holds: each part imports only the parts below it.

Read from the source (AST), every import anywhere in a module, lazy ones inside functions too.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top. A part may import itself and the parts listed for it, nothing else of ours.
# Parts are dotted packages; a module belongs to the longest part its name starts with.
ALLOWED = {
    "ppo_core": set(),  # the subject: what is measured
    "archbench.instrument": {"ppo_core"},  # the measuring kit
    "archbench.reports": {"ppo_core", "archbench.instrument"},  # decisions, pages (no torch)
    "bench": {"ppo_core", "archbench.instrument"},  # the suites, run by the instrument's sweep
    "archbench.cli": {"ppo_core", "archbench.instrument", "archbench.reports"},  # renders
}
PARTS = tuple(ALLOWED)


def _part_of(name: str) -> str | None:
    """The part a dotted module name belongs to (the longest part it starts with)."""
    owners = [p for p in PARTS if name == p or name.startswith(p + ".")]
    return max(owners, key=len) if owners else None


def _modules(part: str) -> list[Path]:
    paths = sorted(ROOT.joinpath(*part.split(".")).rglob("*.py"))
    return [p for p in paths if _part_of(_module_name(p)) == part]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Dotted names `path` imports ('from a import b' gives 'a.b' and 'a')."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _file_of(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _imports_torch_at_load(module: str) -> bool:
    """Importing `module` loads torch (its top-level imports, followed through our modules)."""
    path = _file_of(module)
    if path is None:
        return False
    names = _imports(path, top_level_only=True)
    if any(name == "torch" or name.startswith("torch.") for name in names):
        return True
    ours = {n for n in names if _part_of(n) and n != module}
    return any(_imports_torch_at_load(name) for name in ours)


@pytest.mark.parametrize("part", PARTS)
def test_each_part_imports_only_downward(part):
    wrong = []
    for path in _modules(part):
        for name in _imports(path):
            top = _part_of(name)
            if top and top != part and top not in ALLOWED[part]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, f"{part} may import only {sorted(ALLOWED[part])}:\n" + "\n".join(wrong)


# Inside a part, modules split by job import only the ones before them here: the page from
# its tables and charts, the sweep's run from its options, progress, stop signals and rebuild,
# the market data's loaders from the record, the synthetic markets and the splits, and the
# simple rules from the ceiling they are judged against (the capacity probe uses both), and the
# trainer from its rollout buffer, captured step, Adam and progress bar.
JOBS_IN_ORDER = {
    "ppo_core": (
        "market",
        "synthetic",
        "capacity_market",
        "data",
        "loaders",
        "ceiling",
        "rules",
        "capacity_probe",
        "rollout",
        "capture",
        "adam",
        "progress",
        "trainer",
    ),
    "archbench.reports": (
        "decision_types",
        "ranking",
        "use_cases",
        "compare_verdicts",
        "compare_pool",
        "compare",
        "compare_text",
        "tables",
        "charts",
        "render",
    ),
    "archbench.instrument.sweep": (
        "options",
        "progress",
        "signals",
        "rebuild",
        "runner",
        "ray_connect",
        "ray_worker",
        "ray_driver",
        "raysweep",
    ),
}


@pytest.mark.parametrize("part", JOBS_IN_ORDER)
def test_the_modules_split_by_job_import_only_the_ones_below(part):
    order = JOBS_IN_ORDER[part]
    wrong = []
    for i, job in enumerate(order):
        path = ROOT.joinpath(*part.split("."), f"{job}.py")
        for name in _imports(path):
            rest = name.removeprefix(part + ".").split(".")
            if name.startswith(part + ".") and rest[0] in order[i:]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, f"{part}: each of {order} imports only the ones before it:\n" + "\n".join(
        wrong
    )


def test_nothing_imports_the_command_line():
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for part in PARTS
        if part != "archbench.cli"
        for path in _modules(part)
        for name in _imports(path)
        if _part_of(name) == "archbench.cli"
    ]
    assert not wrong, "\n".join(wrong)


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _started_modules(path: Path) -> set[str]:
    """Our dotted module names among the strings a module builds its commands from: the
    elements of every list or tuple display (`[sys.executable, "-m", "archbench.cli.main"]`)
    and the arguments of every call (`Popen(...)`, `import_module(...)`), docstrings aside."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            values = node.elts
        elif isinstance(node, ast.Call):
            values = [*node.args, *(k.value for k in node.keywords)]
        else:
            continue
        for value in values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                text = value.value.strip()
                if _MODULE_NAME.fullmatch(text) and _part_of(text):
                    found.add(text)
    return found


def _upward_commands(part: str, paths: list[Path]) -> list[str]:
    return [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} starts {name}"
        for path in paths
        for name in sorted(_started_modules(path))
        if _part_of(name) != part and _part_of(name) not in ALLOWED[part]
    ]


@pytest.mark.parametrize("part", PARTS)
def test_no_lower_part_starts_a_higher_one_in_a_subprocess(part):
    """An argv is invisible to the import rule: a shard that ran `python -m archbench.cli.main`
    would be the instrument starting the command line."""
    wrong = _upward_commands(part, _modules(part))
    assert not wrong, f"{part} may start only {sorted(ALLOWED[part])}:\n" + "\n".join(wrong)


def test_the_subprocess_rule_sees_a_violation(tmp_path):
    """The checker itself: a shard command naming the command line is found; the runner
    module, a docstring and a message that only mentions a module are not."""
    module = tmp_path / "m.py"
    module.write_text(
        '"""Runs archbench.cli.main."""\n'
        "import subprocess, sys\n"
        "def shard(out):\n"
        '    command = [sys.executable, "-m", "archbench.cli.main", "sweep", "--out", out]\n'
        '    ok = [sys.executable, "-m", "archbench.instrument.sweep.runner"]\n'
        '    print("see archbench.cli.main for the flags")\n'
        "    return subprocess.run(command + ok, check=False)\n"
    )
    assert _upward_commands("archbench.instrument", [module]) == [
        f"{module} starts archbench.cli.main"
    ]
    assert _upward_commands("archbench.cli", [module]) == []


def test_reports_never_reach_the_instruments_torch_modules():
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}, which loads torch"
        for path in _modules("archbench.reports")
        for name in _imports(path)
        if name.split(".")[0] == "torch"
        or (_part_of(name) in ("archbench.instrument", "ppo_core") and _imports_torch_at_load(name))
    ]
    assert not wrong, "\n".join(wrong)


def test_the_rules_see_a_violation(tmp_path):
    """The checker itself: a lazy upward import inside a function is found."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from archbench.reports.render import render_report\n")
    assert "archbench.reports.render.render_report" in _imports(module)
    assert "archbench.reports.render" in _imports(module)
    assert _imports_torch_at_load("archbench.instrument.timing") or _imports_torch_at_load(
        "ppo_core.network"
    )
    assert not _imports_torch_at_load("archbench.instrument.record")


def test_the_entry_point_and_the_packages_match_the_layout():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'archbench = "archbench.cli.main:main"' in text
    for top in {part.split(".")[0] for part in ALLOWED} - {"bench"}:
        assert f'"{top}*"' in text, f"pyproject.toml does not package {top}"


def test_the_writer_and_the_loader_share_one_schema():
    from archbench.instrument import record
    from archbench.reports import load

    assert (load.SCHEMA, load.SUITES) == (record.SCHEMA, record.SUITES)
    assert load.SCHEMA is record.SCHEMA  # imported, not retyped


def test_a_record_is_copied_with_changes_one_way():
    from archbench.instrument.record import Metric, Record

    base = Record(suite="train", device="cpu", profile="quick", preset="tiny")
    metric = Metric.measured(1.5, unit="1/s", better="higher")
    copy = base.replace(metrics={"x": metric})
    assert (copy.preset, copy.metrics["x"].value, base.metrics) == ("tiny", metric.value, {})
    with pytest.raises(ValueError, match=r"Record\.suite"):
        base.replace(suite="nope")


def test_the_command_line_takes_its_defaults_from_the_config_dataclasses():
    from archbench.cli.main import build_parser
    from ppo_core.config import NetworkConfig, PPOConfig

    parser, ppo, net = build_parser(), PPOConfig(), NetworkConfig()
    estimate = parser.parse_args(["estimate"])
    assert (estimate.features, estimate.lookback, estimate.n_actions, estimate.trunk) == (
        net.n_features,
        net.lookback,
        net.n_actions,
        net.trunk,
    )
    assert (estimate.n_envs, estimate.n_steps, estimate.minibatch) == (
        ppo.n_envs,
        ppo.n_steps,
        ppo.minibatch_size,
    )
    train = parser.parse_args(["train"])
    # --timesteps and --seed have no parse-time default: on a resume the first counts more
    # steps and the second is the checkpoint's (issue 25).
    from archbench.cli.training import _training_config

    config = _training_config(train)
    assert (config.total_timesteps, config.seed, train.device) == (
        ppo.total_timesteps,
        ppo.seed,
        ppo.device,
    )
    assert (train.timesteps, train.precision) == (None, ppo.precision)
    assert parser.parse_args(["pick"]).obs_buffer == ppo.obs_buffer


def _top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def test_every_import_of_our_modules_names_something_that_exists():
    """Lazy imports inside functions run only on some paths: check them all from the source,
    so a moved module or function cannot leave a stale import behind."""
    wrong = []
    for part in (*PARTS, "tests"):
        for path in _modules(part):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                    continue
                if not _part_of(node.module):
                    continue
                target = _file_of(node.module)
                if target is None:
                    wrong.append(f"{path.relative_to(ROOT)}: no module {node.module}")
                    continue
                defined = _top_level_names(target)
                for alias in node.names:
                    if alias.name not in defined and not _file_of(f"{node.module}.{alias.name}"):
                        wrong.append(f"{path.relative_to(ROOT)}: {node.module} has no {alias.name}")
    assert not wrong, "\n".join(wrong)
