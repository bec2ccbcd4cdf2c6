"""`archbench estimate`, `inspect` and `diff` through main(): output, JSON and exit codes."""

import json

import pytest

from archbench.cli.main import main
from ppo_core.config import NetworkConfig
from ppo_core.presets import PRESETS
from ppo_core.sizing import estimate


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_estimate_table_lists_every_preset_with_exact_counts(capsys):
    code, out, err = _run(capsys, "estimate")
    assert code == 0
    assert err == ""
    for name, dims in PRESETS.items():
        sizing = estimate(NetworkConfig(hidden_dims=dims))
        assert name in out
        assert f"{sizing.params:,}" in out
        assert f"{sizing.checkpoint_bytes / 1e6:.1f}" in out
    # With the account state (position, unrealised return, bars held) and one zero input that
    # pads 5,303 to 5,304: 4 x the first width more than the market window alone.
    assert "53 x 100 + 3 account + 1 zero = 5304" in out
    for exact in ("1,407,812", "2,897,156", "6,121,604", "13,652,100"):
        assert exact in out
    code, out, _ = _run(capsys, "estimate", "--no-account-state")
    assert "53 x 100 + 4 zero = 5304" in out
    for exact in ("1,407,812", "2,897,156", "6,121,604", "13,652,100"):
        assert exact in out
    # Unpadded: DESIGN.md's counts (the market window alone) and the 5,303-wide ones.
    code, out, _ = _run(capsys, "estimate", "--no-account-state", "--input-multiple", "1")
    assert "53 x 100 = 5300" in out
    for exact in ("1,406,788", "2,895,108", "6,117,508", "13,643,908"):
        assert exact in out
    code, out, _ = _run(capsys, "estimate", "--input-multiple", "1")
    for exact in ("1,407,556", "2,896,644", "6,120,580", "13,650,052"):
        assert exact in out
    assert "widely copied" in out
    assert "CUDA context" in out


def test_estimate_json_is_a_list_of_estimates(capsys):
    code, out, _ = _run(capsys, "estimate", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [row["config"]["hidden_dims"] for row in rows] == [list(d) for d in PRESETS.values()]
    assert rows[3]["params"] == 13_652_100
    assert rows[3]["config"]["input_multiple"] == 8
    assert rows[0]["train_bytes"] == sum(rows[0]["memory_components"].values())


def test_estimate_one_custom_size_with_setup(capsys):
    code, out, _ = _run(
        capsys,
        "estimate",
        "--hidden-dims",
        "768,384,192",
        "--features",
        "20",
        "--lookback",
        "50",
        "--trunk",
        "separate",
        "--n-envs",
        "64",
        "--n-steps",
        "128",
        "--minibatch",
        "1024",
        "--bars",
        "10000",
        "--json",
    )
    assert code == 0
    (row,) = json.loads(out)
    config = NetworkConfig(
        n_features=20, lookback=50, hidden_dims=(768, 384, 192), trunk="separate"
    )
    expected = estimate(config, n_envs=64, n_steps=128, minibatch=1024, n_bars=10_000)
    assert row == json.loads(json.dumps(expected.to_dict()))
    assert row["data_bytes"] == 10_000 * 20 * 4


def test_estimate_one_preset_table(capsys):
    code, out, _ = _run(capsys, "estimate", "--preset", "large")
    assert code == 0
    assert "13,652,100" in out
    assert "6,121,604" not in out


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--hidden-dims", "512,abc"], "'abc' is neither a preset"),
        (["--hidden-dims", "0"], "width 0 is outside"),
        (["--input-multiple", "0"], "--input-multiple 0: must be in [1, 64]"),
        (["--input-multiple", "65"], "--input-multiple 65: must be in [1, 64]"),
        (["--features", "0"], "--features 0: must be in (0, 65,536]"),
        (["--minibatch", "-5"], "--minibatch -5: must be in (0,"),
    ],
)
def test_estimate_bad_input_is_one_line_and_exit_2(capsys, argv, phrase):
    code, out, err = _run(capsys, "estimate", *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("archbench estimate: error: ")
    assert phrase in err


@pytest.mark.parametrize("command", ["estimate", "inspect", "diff"])
def test_help(capsys, command):
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    assert "usage: archbench" in capsys.readouterr().out


def test_inspect_a_real_checkpoint(capsys, make_checkpoint, small_config):
    path = make_checkpoint(small_config, optimizer=True)
    code, out, _ = _run(capsys, "inspect", str(path))
    assert code == 0
    params = estimate(small_config).params
    assert f"{params:,}" in out
    assert "32,16" in out
    assert "40 (4 features x 8 bars + 3 account inputs at gain 5.7 + 5 zeros)" in out
    assert f"{path.stat().st_size:,} B" in out
    assert "optimizer state" in out
    code, out, _ = _run(capsys, "inspect", str(path), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["params"] == params
    assert info["has_optimizer_state"] is True
    assert info["hidden_dims"] == [32, 16]


def test_inspect_a_corrupt_file_exits_2_naming_it(capsys, tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"PK\x03\x04 this is not a whole zip")
    code, out, err = _run(capsys, "inspect", str(path))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert str(path) in err


def test_diff_same_architecture_exits_0(capsys, make_checkpoint, small_config):
    a = make_checkpoint(small_config, "a.pt")
    b = make_checkpoint(small_config, "b.pt", optimizer=True)
    code, out, _ = _run(capsys, "diff", str(a), str(b))
    assert code == 0
    assert out.startswith("same architecture")


def test_diff_different_architectures_exits_1(capsys, make_checkpoint, small_config):
    other = NetworkConfig(n_features=4, lookback=8, hidden_dims=(64, 32), activation="tanh")
    a, b = make_checkpoint(small_config, "a.pt"), make_checkpoint(other, "b.pt")
    code, out, _ = _run(capsys, "diff", str(a), str(b))
    assert code == 1
    assert out.startswith("different architecture")
    assert "hidden_dims" in out
    assert "activation" in out
    assert f"{estimate(other).params:,}" in out
    code, out, _ = _run(capsys, "diff", str(a), str(b), "--json")
    assert code == 1
    assert json.loads(out)["differences"] == [
        ["activation", "relu", "tanh"],
        ["hidden_dims", [32, 16], [64, 32]],
    ]


def test_diff_with_a_missing_file_exits_2(capsys, make_checkpoint, small_config, tmp_path):
    missing = tmp_path / "missing.pt"
    code, _, err = _run(capsys, "diff", str(make_checkpoint(small_config)), str(missing))
    assert code == 2
    assert f"checkpoint {missing} does not exist" in err
