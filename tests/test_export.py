"""`archbench export model.pt --onnx out.onnx`: a real round trip, the agreement it prints,
an atomic write, and the one-line error when the onnx extra is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archbench.cli.main import main
from archbench.instrument import backends
from ppo_core.network import ActorCritic


def test_export_round_trip_matches_eager(tmp_path, capsys, small_config, make_checkpoint):
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    ckpt = make_checkpoint(small_config)
    out = tmp_path / "policy.onnx"
    assert main(["export", str(ckpt), "--onnx", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert (
        "input 'obs': 40 (4 features x 8 bars + 3 account inputs at gain 5.7 + 5 zeros)" in printed
    )
    assert "onnxruntime agrees with eager: 100.0% of " in printed
    assert "(100.0% of all 256)" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt", "policy.onnx"]  # no temp left

    from ppo_core import checkpoint

    policy = ActorCritic(small_config).eval()
    policy.load_state_dict(checkpoint.load(ckpt).policy_state_dict)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 7):  # the batch axis is dynamic
        obs = (
            np.random.default_rng(batch)
            .standard_normal((batch, small_config.obs_dim))
            .astype(np.float32)
        )
        logits, value = session.run(["logits", "value"], {"obs": obs})
        ref_logits, ref_value = policy(torch.from_numpy(obs))
        np.testing.assert_allclose(logits, ref_logits.detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(value, ref_value.detach().numpy(), atol=1e-5)


def test_missing_extra_is_one_line_naming_the_fix(
    tmp_path, capsys, small_config, make_checkpoint, monkeypatch
):
    monkeypatch.setattr(backends, "onnx_missing", lambda: ["onnxruntime", "onnxscript"])
    out = tmp_path / "policy.onnx"
    assert main(["export", str(make_checkpoint(small_config)), "--onnx", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "archbench export: error: archbench export needs the onnx extra: onnxruntime, "
        "onnxscript not installed (pip install 'ppo-archbench[onnx]')"
    )
    assert not out.exists()


def test_failed_export_keeps_the_old_file(tmp_path, small_config, monkeypatch):
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    out = tmp_path / "policy.onnx"
    out.write_bytes(b"previous export")

    def broken_export(*args, **kwargs):
        raise RuntimeError("exporter crashed half way")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(RuntimeError, match="half way"):
        backends.export_onnx(ActorCritic(small_config), out, torch.zeros(1, small_config.obs_dim))
    assert out.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["policy.onnx"]


def test_export_into_a_missing_directory_creates_it_like_every_command(
    tmp_path, capsys, small_config, make_checkpoint
):
    # One output-path policy (archbench.cli._common.output_file): missing folders are made.
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    out = tmp_path / "nowhere" / "policy.onnx"
    assert main(["export", str(make_checkpoint(small_config)), "--onnx", str(out)]) == 0
    assert out.is_file()
    assert f"wrote {out}" in capsys.readouterr().out


def test_a_checkpoint_with_nan_weights_is_refused_before_anything_is_written(
    tmp_path, capsys, small_config, make_checkpoint, monkeypatch
):
    # Refused whether or not the onnx extra is here: the weights are read before any export.
    monkeypatch.setattr(backends, "onnx_missing", lambda: [])
    path = make_checkpoint(small_config)
    payload = torch.load(path, weights_only=True)
    for tensor in payload["policy_state_dict"].values():
        tensor.fill_(float("nan"))
    torch.save(payload, path)
    out = tmp_path / "policy.onnx"
    assert main(["export", str(path), "--onnx", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "NaN or inf weights" in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
