"""`archbench export`: a checkpoint to TorchScript or ONNX, checked against eager torch."""

from __future__ import annotations

import argparse

from archbench.cli._common import make_parent, output_file
from archbench.cli.tables import observation_words
from ppo_core.errors import ArchbenchError

__all__ = ["add_commands"]

_EXPORT_CHECK_BATCH = 256


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    export = subcommands.add_parser(
        "export",
        help="write a checkpoint's policy as ONNX and check it against eager torch",
        description="Export a checkpoint's ActorCritic to ONNX (inputs 'obs' (batch, obs_dim) "
        "float32; outputs 'logits' and 'value'; dynamic batch axis), written atomically, then "
        "run it with onnxruntime on a random batch and print its agreement with eager torch. "
        "Needs the onnx extra: pip install 'ppo-archbench[onnx]'.",
    )
    export.add_argument("checkpoint", help="a checkpoint written by archbench train (model.pt)")
    export.add_argument(
        "--onnx", required=True, metavar="OUT", help="where to write the .onnx file"
    )
    export.add_argument(
        "--seed", type=int, default=0, help="seed of the random check batch (default: 0)"
    )
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from archbench.instrument import backends

    missing = backends.onnx_missing()
    if missing:
        raise ArchbenchError(
            f"archbench export needs the onnx extra: {', '.join(missing)} not installed "
            "(pip install 'ppo-archbench[onnx]')"
        )
    import torch

    from ppo_core import checkpoint
    from ppo_core.network import ActorCritic

    out = output_file(args.onnx, [args.checkpoint], flag="--onnx", example="policy.onnx")
    ckpt = checkpoint.load(args.checkpoint)
    policy = ActorCritic(ckpt.config)
    policy.load_state_dict(ckpt.policy_state_dict)
    policy.eval()
    generator = torch.Generator().manual_seed(args.seed)
    # Normalised features are clipped z-scores, so a standard normal batch is in range.
    obs = torch.randn(_EXPORT_CHECK_BATCH, ckpt.config.obs_dim, generator=generator)
    backends.export_onnx(policy, make_parent(out), obs)
    check = backends.onnx_agreement(out, policy, obs)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    # A deployment must build this exact input; TradingEnv.observe is the reference.
    print(f"input 'obs': {observation_words(ckpt.config)}, as ppo_core.env.TradingEnv builds it")
    print(f"onnxruntime {check.describe()}")
    return 0 if check.ok else 1
