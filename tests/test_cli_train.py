"""`archbench train` and `archbench evaluate` end to end through main(), on a small budget."""

import json

import pytest

from ppo_core import checkpoint
from ppo_core.cli import main

SMALL = ["--hidden-dims", "32,16", "--timesteps", "256", "--n-envs", "4", "--n-steps", "32"]
DATA = ["--data", "synthetic", "--bars", "2000"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "model.pt"
    assert main(["train", *SMALL, *DATA, "--device", "cpu", "--out", str(out), "--json"]) == 0
    return out


def test_train_writes_a_checkpoint_with_the_run_config(trained):
    ckpt = checkpoint.load(trained)
    assert ckpt.config.hidden_dims == (32, 16)
    assert ckpt.config.obs_dim == 5303  # 53 x 100 plus the account state
    assert ckpt.ppo_config.n_envs == 4
    assert ckpt.ppo_config.total_timesteps == 256
    assert ckpt.meta["iteration"] == ckpt.ppo_config.n_iterations == 2
    assert ckpt.obs_norm is not None


def test_evaluate_prints_policy_and_baselines(trained, capsys):
    capsys.readouterr()
    code = main(["evaluate", str(trained), *DATA, "--split", "test", "--device", "cpu", "--json"])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results) == {"policy", "flat", "buy_and_hold", "random", "oracle"}
    assert results["flat"]["total_log_return"] == 0.0
    assert results["policy"]["n_bars"] == results["oracle"]["n_bars"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--hidden-dims", "32,zero"], "neither a preset"),
        (["train", *SMALL, "--data", "no/such/file.csv"], "no/such/file.csv"),
        (["evaluate", "missing.pt"], "missing.pt"),
        (["train", *SMALL, "--minibatch", "4096", *DATA], "minibatch_size"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_resume_keeps_the_checkpoints_feature_scaling(trained, tmp_path):
    out = tmp_path / "resumed.pt"
    more = [a if a != "256" else "512" for a in SMALL]  # two more iterations
    other_data = ["--data", "synthetic", "--bars", "2500"]  # would fit another normaliser
    resume = ["--resume", str(trained), "--out", str(out), "--json"]
    assert main(["train", *more, *other_data, *resume]) == 0
    before, after = checkpoint.load(trained), checkpoint.load(out)
    assert after.meta["iteration"] == 4
    for key, value in before.obs_norm.items():
        assert after.obs_norm[key] == value
