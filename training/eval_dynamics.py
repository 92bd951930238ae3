"""Evaluate a dynamics model on the validation split (`genie eval-dynamics --dynamics RUN --tokens DIR`).

Conditions on C real frames, rolls out H frames with the real actions, decodes and compares with the
real frames: PSNR (from the mean MSE) and SSIM at horizons 1, 4, 8, 16 beside the copy-last-frame
baseline; ΔtPSNR against random actions at t = 4, 8; reward and termination precision, recall, AUC,
on transitions from real frames and on transitions reached after dreaming 4 and 8 frames (`dreamed_events`).
Writes eval_dynamics.json, rollout.gif (real | dream | difference) and psnr_vs_horizon.png.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from genie_env._io import atomic_write_json
from genie_env.checkpoint import resolve_checkpoint
from genie_env.data.manifest import read_manifest
from genie_env.evaluate.dynamics import evaluate_dynamics
from genie_env.models import check_trained_on, load_dynamics, load_tokenizer, tokenizer_identity

from .common import cli_errors, print_json, setup_logging


@dataclass(frozen=True)
class EvalDynamicsArgs:
    """Arguments of `genie eval-dynamics`."""

    dynamics: str
    """dynamics run or checkpoint directory"""
    tokens: str
    """token dataset directory (its manifest names the frame dataset and tokenizer)"""
    data: str | None = None
    """frame dataset the tokens came from (default: the one the token manifest names)"""
    tokenizer: str | None = None
    """tokenizer run or checkpoint (default: the one the token manifest names)"""
    context: int = 4
    """real frames to condition on"""
    horizon: int = 16
    """frames to roll out"""
    windows: int = 64
    """held-out windows to roll out"""
    steps: int = 1
    """MaskGIT refinement steps per frame (1 = single pass)"""
    temperature: float = 0.0
    """sampling temperature (0 = most likely token)"""
    seed: int = 0
    """seed of sampling and of the random-action rollouts"""
    dreamed_leads: tuple[int, ...] = (4, 8)
    """also classify events after dreaming this many frames from the real context (what a dream agent meets)"""
    out_dir: str = "outputs/eval_dynamics"
    """where eval_dynamics.json, rollout.gif and psnr_vs_horizon.png go"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    args = tyro.cli(EvalDynamicsArgs, args=argv, prog="genie eval-dynamics", description=__doc__)
    with cli_errors():
        manifest = read_manifest(args.tokens, kind="tokens")
        tokenizer_path = resolve_checkpoint(args.tokenizer or manifest.tokenizer["path"])
        dyn_path = resolve_checkpoint(args.dynamics)
        check_trained_on(dyn_path, tokenizer_identity(tokenizer_path), str(tokenizer_path), dynamics_name=args.dynamics)
        result = evaluate_dynamics(
            load_dynamics(dyn_path), load_tokenizer(tokenizer_path), args.tokens,
            args.data or manifest.source["path"], args.context, args.horizon, args.windows, args.steps,
            args.temperature, args.seed, out_dir=args.out_dir, dreamed_leads=args.dreamed_leads,
        )  # fmt: skip
    result = {"dynamics": args.dynamics, "tokens": args.tokens, **result}
    atomic_write_json(Path(args.out_dir) / "eval_dynamics.json", result)
    print_json(result)


if __name__ == "__main__":
    main()
