"""Does the dream's KV cache see what training saw, once a dream outgrows the attention window?

    python benchmarks/window_consistency.py --data DIR [--world-model DIR] [--windows 32] [--horizon 40]

The dynamics model trains on windows of `context_frames` (16) real frames, each window's first frame
with no history. A dream steps with a sliding-window KV cache instead: every layer attends to the last
16 frames of the layer below, so after 16 frames a deep layer's receptive field reaches further back
than any training window did (the cache equals the whole sequence run under the sliding-window mask,
not a re-encoding of the last 16 frames). This measures whether that matters, apart from compounding
error: on `--windows` real windows of `--horizon` + 1 frames (val split of frame dataset `--data`),
each next frame is predicted teacher-forced two ways, by the streaming cache (as the dream env does) and
by re-encoding the last 16 real frames from scratch (as training sees them). Prints JSON per step: each
way's greedy token accuracy against the real frame and mean per-token entropy, and the share of
tokens where the two agree. Steps up to 16 agree exactly by construction.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from precision_fidelity import window_parser, window_tokens, windows  # noqa: E402

from genie_env.world_model import load_world_model  # noqa: E402


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean per-token entropy (nats) of logits (N, S, K) -> (N,)."""
    logp = torch.log_softmax(logits.float(), -1)
    return -(logp.exp() * logp).sum(-1).mean(-1)


@torch.no_grad()
def main(argv: list[str] | None = None) -> dict:
    p = window_parser(__doc__, horizon=40)
    p.add_argument("--precision", default="fp32", help="inference precision: fp32, bf16 or auto")
    args = p.parse_args(argv)
    wm = load_world_model(args.world_model, "cpu", args.precision)
    frames, actions = windows(args.data, args.windows, args.horizon + 1, args.seed)
    tokens = window_tokens(wm, frames)  # (N, H+1, S)
    acts = torch.from_numpy(actions)
    dyn, n = wm.dynamics, len(frames)
    width, mask_id = dyn.cfg.context_frames, dyn.cfg.mask_id
    cache, rows = dyn.new_cache(n), []
    with wm.autocast():
        for h in range(args.horizon):
            prev, act = tokens[:, h][:, None], acts[:, h][:, None]
            streamed = dyn(prev, torch.full_like(prev, mask_id), act, cache=cache).logits[:, 0]
            start = max(0, h + 1 - width)
            past, past_acts = tokens[:, start : h + 1], acts[:, start : h + 1]
            fresh = dyn(past, torch.full_like(past, mask_id), past_acts).logits[:, -1]
            real = tokens[:, h + 1]
            a, b = streamed.argmax(-1), fresh.argmax(-1)
            rows.append({
                "step": h + 1, "frames_seen": h + 1,
                "token_accuracy_streamed": round(float((a == real).float().mean()), 4),
                "token_accuracy_reencoded": round(float((b == real).float().mean()), 4),
                "agreement": round(float((a == b).float().mean()), 4),
                "entropy_streamed": round(float(entropy(streamed).mean()), 4),
                "entropy_reencoded": round(float(entropy(fresh).mean()), 4),
            })  # fmt: skip
    late = [r for r in rows if r["step"] > width]

    def mean(key: str) -> float | None:
        return round(sum(r[key] for r in late) / len(late), 4) if late else None

    result = {
        "benchmark": "window_consistency", "world_model": args.world_model or "shipped", "data": args.data,
        "windows": n, "horizon": args.horizon, "context_frames": width, "precision": wm.precision,
        "after_the_window": {k: mean(k) for k in ("token_accuracy_streamed", "token_accuracy_reencoded",
                                                   "agreement", "entropy_streamed", "entropy_reencoded")},
        "per_step": rows,
        "command": "python benchmarks/window_consistency.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }  # fmt: skip
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
