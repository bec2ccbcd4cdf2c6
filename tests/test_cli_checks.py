"""Bad command-line values and output paths are refused in one line before any work starts, and
`archbench train` keeps what it trained when it is stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archbench.cli.main import main
from ppo_core import checkpoint
from ppo_core.atomic import check_output
from ppo_core.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run-cpu-quick.json"
SMALL = ["--hidden-dims", "32,16", "--n-envs", "4", "--n-steps", "32", "--device", "cpu"]
DATA = ["--data", "synthetic", "--bars", "2000"]


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pick", "--gpu", "T4", "--vram-gb", "inf"], "--vram-gb inf: not a finite number"),
        (["pick", "--gpu", "T4", "--vram-gb", "1e300"], "--vram-gb 1e+300: must be in (0, 16384]"),
        (["pick", "--gpu", "T4", "--vram-gb", "nan"], "--vram-gb nan: not a finite number"),
        (["pick", "--gpu", "T4", "--vram-gb", "-1"], "--vram-gb -1: must be in (0"),
        (["pick", "--gpu", "T4", "--n-envs", "0"], "--n-envs 0: must be in (0, 2,147,483,647]"),
        (
            ["pick", "--gpu", "T4", "--minibatch", str(10**30)],
            f"--minibatch {10**30}: must be in (0,",
        ),
        (["pick", "--gpu", "T4", "--data-bars", "-5"], "--data-bars -5"),
        (["pick", "--gpu", "T4", "--latency-budget-ms=-inf"], "--latency-budget-ms -inf"),
        (["pick", "--gpu", "T4", "--safety-margin", "nan"], "--safety-margin nan"),
        (["report", str(RUN), "--latency-budget-ms", "0"], "--latency-budget-ms 0"),
        (["report", str(RUN), "--memory-budget-gb", "1e300"], "--memory-budget-gb 1e+300"),
        (["report", str(RUN), "--min-throughput-fraction", "inf"], "--min-throughput-fraction inf"),
        (["compare", str(RUN), str(RUN), "--tolerance", "-0.1"], "--tolerance -0.1"),
        (["compare", str(RUN), str(RUN), "--alpha", "nan"], "--alpha nan"),
        (["estimate", "--features", "53", "--bars", "10"], None),  # ints pass untouched
        (["train", *SMALL, "--lr", "inf"], "--lr inf: not a finite number"),
        (["train", *SMALL, "--signal-strength", "nan"], "--signal-strength nan"),
        (["train", *SMALL, "--bars", str(10**12)], f"--bars {10**12}: must be in (1, 100,000,000]"),
        (["evaluate", "model.pt", "--seed", "-1"], None),  # the missing checkpoint comes first
    ],
)
def test_numbers_are_checked_in_one_line(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    if message is None:
        main(argv)  # any outcome but a traceback
        return
    assert message in _one_line_error(capsys, argv)
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def test_bf16_on_a_cpu_is_refused(capsys, tmp_path):
    out = tmp_path / "model.pt"
    argv = ["train", *SMALL, *DATA, "--precision", "bf16", "--out", str(out)]
    err = _one_line_error(capsys, argv)
    assert "precision bf16 needs a CUDA GPU" in err
    assert not out.exists()


def test_report_refuses_to_overwrite_its_input_or_write_a_folder(capsys, tmp_path):
    run = tmp_path / "run.json"
    shutil.copy(RUN, run)
    before = run.read_bytes()
    for output, message in (
        (run, "is also an input"),
        (tmp_path / "." / "run.json", "is also an input"),
        (f"{tmp_path}/", "is a directory; give a file name, e.g."),
        (tmp_path, "is a directory"),
        (run / "report.html", "is a file, not a folder"),
    ):
        assert message in _one_line_error(capsys, ["report", str(run), "-o", str(output)])
    assert run.read_bytes() == before
    compare = ["compare", str(run), str(RUN), "--html", str(run)]
    assert "is also an input" in _one_line_error(capsys, compare)
    assert run.read_bytes() == before


def test_export_refuses_to_overwrite_its_checkpoint_or_write_a_folder(
    capsys, tmp_path, small_config, make_checkpoint
):
    model = make_checkpoint(small_config, "m.pt")
    before = model.read_bytes()
    for output, message in (
        (model, "--onnx"),
        (f"{tmp_path}/", "is a directory"),
        (tmp_path, "is a directory"),
    ):
        err = _one_line_error(capsys, ["export", str(model), "--onnx", str(output)])
        assert message in err
    assert "is also an input" in _one_line_error(
        capsys, ["export", str(model), "--onnx", str(model)]
    )
    assert model.read_bytes() == before


def test_train_refuses_a_folder_or_its_data_as_out_before_training(capsys, tmp_path):
    csv = tmp_path / "bars.csv"
    csv.write_text("Date,Open,High,Low,Close,Volume\n")
    started = time.monotonic()
    err = _one_line_error(capsys, ["train", *SMALL, *DATA, "--out", str(tmp_path)])
    assert "--out" in err
    assert "is a directory; give a file name, e.g." in err
    err = _one_line_error(capsys, ["train", *SMALL, "--data", str(csv), "--out", str(csv)])
    assert "is also an input" in err
    assert time.monotonic() - started < 60  # refused up front, not after training


def test_check_output_accepts_new_files_and_resolves_links(tmp_path):
    assert check_output(tmp_path / "new" / "deeper" / "out.html") == (
        tmp_path / "new" / "deeper" / "out.html"
    )
    source = tmp_path / "a.json"
    source.write_text("{}")
    link = tmp_path / "b.json"
    link.symlink_to(source)
    with pytest.raises(ConfigError, match="is also an input"):
        check_output(link, [source])
    assert check_output(tmp_path / "c.json", [source]) == tmp_path / "c.json"


def test_evaluate_on_data_with_another_feature_count_is_an_architecture_mismatch(capsys, tmp_path):
    from ppo_core.config import NetworkConfig
    from ppo_core.network import ActorCritic

    config = NetworkConfig(n_features=10, lookback=20, hidden_dims=(16,))
    path = checkpoint.save(tmp_path / "ten.pt", config, ActorCritic(config))
    err = _one_line_error(capsys, ["evaluate", str(path), *DATA, "--device", "cpu"])
    assert "has n_features 10 (208 inputs with lookback 20)" in err  # + 3 account + 5 zeros
    assert "the data gives 53 features per bar" in err
    assert "mat1" not in err


def _ohlcv_csv(path: Path, n_rows: int) -> Path:
    import numpy as np

    days = np.datetime64("2000-01-01") + np.arange(n_rows)
    rows = [
        f"{day},{100 + i % 7},{108 + i % 7},{95 + i % 7},{101 + i % 7},5"
        for i, day in enumerate(days)
    ]
    path.write_text("Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n")
    return path


def test_too_few_rows_states_the_real_minimum(capsys, tmp_path):
    from ppo_core.data import min_bars

    path = _ohlcv_csv(tmp_path / "three.csv", 3)
    err = _one_line_error(capsys, ["train", *SMALL, "--data", str(path), "--out", "x.pt"])
    assert f"has 3 data rows; no lookback fits: even --lookback 1 needs {min_bars(1)} rows" in err
    assert f"the reference lookback of 100 needs {min_bars(100)}" in err


def test_a_short_file_like_btcusd_monthly_is_pointed_at_lookback(capsys, tmp_path):
    # 156 monthly bars (BTCUSD 2010-2023) cannot feed the 199-bar feature warm-up at any
    # lookback; 300 bars can, with --lookback 31 or less, and the message says so.
    monthly = _ohlcv_csv(tmp_path / "btcusd.csv", 156)
    err = _one_line_error(capsys, ["train", *SMALL, "--data", str(monthly), "--out", "x.pt"])
    assert "has 156 data rows; no lookback fits" in err
    assert "min_bars" not in err
    assert "default lookback" not in err
    longer = _ohlcv_csv(tmp_path / "longer.csv", 300)
    err = _one_line_error(capsys, ["train", *SMALL, "--data", str(longer), "--out", "x.pt"])
    assert "has 300 bars; lookback 100 needs at least 505" in err
    assert "--lookback 31 or less fits these bars" in err
    out = tmp_path / "short.pt"
    argv = ["train", *SMALL, "--data", str(longer), "--lookback", "31", "--timesteps", "256"]
    assert main([*argv, "--out", str(out)]) == 0
    assert checkpoint.load(out).config.lookback == 31
    capsys.readouterr()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_train_writes_its_checkpoint(tmp_path, signum):
    out = tmp_path / "model.pt"
    # Far more iterations than run before the signal lands: the stop, not the end, writes it.
    argv = [*SMALL, *DATA, "--timesteps", "1000000", "--out", str(out)]
    code = f"import sys; from archbench.cli.main import main; sys.exit(main(['train', *{argv!r}]))"
    err = tmp_path / "train.err"
    with err.open("w") as handle:
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    deadline = time.monotonic() + 120
    # The line is printed after the handlers are installed, just before the first iteration.
    while "training hidden_dims" not in err.read_text():
        assert child.poll() is None, err.read_text()
        assert time.monotonic() < deadline, err.read_text()
        time.sleep(0.05)
    child.send_signal(signum)
    assert child.wait(timeout=120) == 128 + signum, err.read_text()
    text = err.read_text()
    assert f"interrupted by {signal.Signals(signum).name} after iteration" in text
    ckpt = checkpoint.load(out)
    assert 1 <= ckpt.meta["iteration"] < ckpt.ppo_config.n_iterations
    assert ckpt.optimizer_state_dict is not None
    assert not list(tmp_path.glob(".*.tmp"))
