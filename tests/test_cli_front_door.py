"""Commands behave alike (issue 25): every numeric flag is range-checked by one table, every
command that writes makes its missing folders, and a closed stdout ends a command quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from archbench.cli._common import FLAG_RANGES
from archbench.cli.main import build_parser, main

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run-cpu-quick.json"
SMALL = ["--hidden-dims", "16", "--n-envs", "2", "--n-steps", "16", "--device", "cpu"]


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_every_numeric_flag_of_every_command_has_a_range():
    subcommands = next(a for a in build_parser()._actions if a.dest == "command")
    unlisted = [
        f"{name} {action.option_strings[0]}"
        for name, parser in subcommands.choices.items()
        for action in parser._actions
        if action.type in (int, float) and action.dest not in FLAG_RANGES
    ]
    assert not unlisted, f"add these to archbench.cli._common.FLAG_RANGES: {unlisted}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--seed", str(2**64)], f"--seed {2**64}: must be in [0, 9,223,372,036,"),
        (["evaluate", "m.pt", "--seed", str(2**63)], f"--seed {2**63}: must be in [0,"),
        (["export", "m.pt", "--onnx", "x.onnx", "--seed", "-1"], "--seed -1: must be in [0,"),
        (["train", "--lr", "0"], "--lr 0: must be in (0, 1]"),
        (["train", "--clip-coef", "0"], "--clip-coef 0: must be in (0, 10]"),
        (["train", "--checkpoint-every", "-1"], "--checkpoint-every -1: must be in [0,"),
        (["train", "--timesteps", "0"], "--timesteps 0: must be in (0,"),
        (["train", "--gamma", "1.5"], "--gamma 1.5: must be in [0, 1]"),
        (["estimate", "--lookback", "0"], "--lookback 0: must be in (0, 65,536]"),
        (["estimate", "--minibatch", "100000"], "--minibatch 100000 exceeds the rollout"),
        (["sweep", "--shards", "0"], "--shards 0: must be in (0,"),
        (["compare", str(RUN), str(RUN), "--alpha", "1"], "--alpha 1: must be in (0, 1)"),
        (["compare", str(RUN), str(RUN), "--min-effect", "1"], "--min-effect 1: must be in [0,"),
        (["pick", "--gpu", "T4", "--safety-margin", "1"], "--safety-margin 1: must be in [0, 1)"),
        (["train", "--timestamp-format", "dayfirst"], "--timestamp-format reads the times of"),
        (["train", "--data", "synthetic", "--timestamp-column", "t"], "--data synthetic is not"),
        (["evaluate", "m.pt", "--timestamp-format", "epoch_s"], "given with --data FILE; no --"),
        (["train", "--data", "sp500", "--signal-strength", "1"], "shapes synthetic data, not"),
    ],
)
def test_out_of_range_flags_are_one_line_before_any_work(
    capsys, tmp_path, monkeypatch, argv, message
):
    monkeypatch.chdir(tmp_path)
    assert message in _one_line_error(capsys, argv)
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def test_the_largest_seed_is_accepted(capsys):
    assert main(["estimate", "--preset", "tiny", "--json"]) == 0  # control: estimate runs
    capsys.readouterr()
    # 2^63 - 1 passes the range check; the command then fails only on the missing checkpoint.
    err = _one_line_error(capsys, ["evaluate", "missing.pt", "--seed", str(2**63 - 1)])
    assert "--seed" not in err


def _closed_stdout(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run `archbench argv` with its stdout's reader gone before it writes (what `| head -1`
    does to a longer output): (exit status, stderr)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "archbench.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    child.stdout.close()
    err = child.stderr.read().decode()
    return child.wait(timeout=240), err


def test_json_commands_end_quietly_when_stdout_closes(tmp_path, make_checkpoint):
    from ppo_core.config import NetworkConfig

    model = make_checkpoint(NetworkConfig(lookback=8, hidden_dims=(16,)))
    for argv in (
        ["estimate", "--json"],
        ["pick", "--gpu", "T4", "--json"],
        ["evaluate", str(model), "--data", "synthetic", "--bars", "600", "--device", "cpu"],
    ):
        argv = [*argv, "--json"] if argv[0] == "evaluate" else argv
        code, err = _closed_stdout(argv, tmp_path)
        assert (code, err) == (141, ""), (argv, code, err)


def test_every_writer_creates_its_missing_folders(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "missing" / "dir" / "r.html"
    assert main(["report", str(RUN), "-o", str(report), "--plotlyjs", "cdn"]) == 0
    assert report.is_file()
    html = tmp_path / "other" / "c.html"
    assert main(["compare", str(RUN), str(RUN), "--html", str(html)]) == 0
    assert html.is_file()
    model = tmp_path / "missing" / "t.pt"
    argv = ["train", *SMALL, "--data", "synthetic", "--bars", "600", "--lookback", "8"]
    assert main([*argv, "--timesteps", "32", "--out", str(model)]) == 0
    assert model.is_file()
    capsys.readouterr()


def test_a_file_where_a_folder_should_be_is_one_line(capsys, tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file")
    err = _one_line_error(capsys, ["sweep", "--out", str(blocker)])
    assert f"--out {blocker}: is a file; give a folder" in err
    err = _one_line_error(capsys, ["report", str(RUN), "-o", str(blocker / "r.html")])
    assert "is a file, not a folder" in err
    assert blocker.read_text() == "a file"


def test_a_refused_command_makes_no_folder(capsys, tmp_path):
    new = tmp_path / "new" / "deeper"
    err = _one_line_error(
        capsys, ["report", str(tmp_path / "none.json"), "-o", str(new / "r.html")]
    )
    assert "none.json" in err
    assert not (tmp_path / "new").exists()
    assert main(["sweep", "--data", str(tmp_path / "none.csv"), "--out", str(new)]) == 2
    assert not (tmp_path / "new").exists()
    capsys.readouterr()


def test_sweep_cost_and_lookback_reach_the_overfitting_record(tmp_path, capsys, monkeypatch):
    import json

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # seconds of tiny work; see test_bench_smoke
    argv = ["sweep", "--device", "cpu", "--presets", "tiny", "--out", str(tmp_path)]
    argv += ["--cost-bps", "5", "--lookback", "20", "--no-report"]
    assert main([*argv, "--", "-k", "overfit", "--benchmark-disable"]) == 0
    capsys.readouterr()
    (records,) = tmp_path.glob("*.records.jsonl")
    events = [json.loads(line) for line in records.read_text().splitlines()]
    (record,) = [e["record"] for e in events if e["event"] == "case"]
    assert record["suite"] == "overfit"
    assert record["case"]["cost_bps"] == 5.0
    assert record["obs_dim"] == 53 * 20 + 3 + 1  # the window follows --lookback (+ pad to 8)


def test_sweep_help_states_the_seeds_the_full_profile_runs(capsys):
    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    try:
        from _cases import BUDGETS
    finally:
        sys.path.pop(0)
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"full: every preset, {len(BUDGETS['full'].overfit_seeds)} overfitting seeds" in text
    assert f"all presets, {len(BUDGETS['full'].overfit_seeds)} overfitting seeds" in text


def test_help_names_every_dataset_and_no_file_outside_the_repository(capsys):
    from ppo_core.loaders import DATASETS

    for command in ("train", "evaluate", "estimate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "DESIGN.md" not in text
        if command != "estimate":
            assert all(name in text for name in DATASETS), text
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "DESIGN.md" not in readme


def test_the_lookback_help_states_what_min_bars_computes():
    from archbench.cli._common import LOOKBACK_HELP
    from ppo_core.data import min_bars
    from ppo_core.features import FEATURE_WARMUP

    assert f"on top of the {FEATURE_WARMUP}-bar feature warm-up" in LOOKBACK_HELP
    assert "3 bars per bar of lookback" in LOOKBACK_HELP
    assert min_bars(51) - min_bars(50) == 3


def test_shards_run_the_sweep_with_its_cost_and_lookback(tmp_path):
    from archbench.instrument.sweep.multisweep import shard_command
    from archbench.instrument.sweep.options import SweepOptions
    from ppo_core.errors import ConfigError

    options = SweepOptions.from_text(data="sp500", cost_bps="2", lookback="30")
    command = shard_command(options, "cuda:0", tmp_path, 0, 2)
    text = " ".join(command)
    assert "--cost-bps 2.0 --lookback 30 --" in text
    assert "--cost-bps" not in " ".join(shard_command(SweepOptions(), "cpu", tmp_path, 0, 1))
    with pytest.raises(ConfigError, match="--lookback 0: must be in"):
        SweepOptions.from_text(lookback="0")


def test_a_shard_runs_the_runner_module_and_reads_its_options_back(tmp_path, capsys):
    """Shards start the instrument's runner, never the command line, and its parser reads
    SweepOptions.argv() back to the same options (issue 26)."""
    import dataclasses

    from archbench.instrument.sweep import runner
    from archbench.instrument.sweep.multisweep import shard_command
    from archbench.instrument.sweep.options import SweepOptions

    options = SweepOptions.from_text(
        ("-k", "env"), presets="tiny,small", hidden_dims=["64,32"], cost_bps="2.5", lookback="30"
    )
    command = shard_command(options, "cpu", tmp_path, 1, 2, case_timeout=5.0)
    assert command[1:3] == ["-m", "archbench.instrument.sweep.runner"]
    args = runner._parser().parse_args(command[3:])
    again = SweepOptions.parse(vars(args).__getitem__, args.pytest_args)
    split = ("-k", "env", "--archbench-split", "1/2")
    assert again == dataclasses.replace(options, device="cpu", pytest_args=split)
    assert (args.out, args.case_timeout) == (str(tmp_path), 5.0)
    # A bad option is the command line's one line and exit status 2, before pytest starts.
    assert runner.main(["--profile", "nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == "archbench sweep: error: --profile 'nope': choose quick or full\n"
    assert not (tmp_path / "o").exists()


def test_times_in_messages_are_not_padded_to_nanoseconds(capsys, tmp_path):
    import re

    model = tmp_path / "m.pt"
    argv = ["train", *SMALL, "--data", "synthetic", "--bars", "600", "--lookback", "8"]
    assert main([*argv, "--timesteps", "32", "--out", str(model)]) == 0
    capsys.readouterr()
    err = _one_line_error(capsys, ["evaluate", str(model), "--split", "train", "--device", "cpu"])
    assert "overlaps the bars" in err
    times = re.findall(r"\d{4}-\d\d-\d\d[^ );]*", err)
    assert len(times) == 4, err
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", t) for t in times), times
