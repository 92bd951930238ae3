"""How unsure is the world model along a dream, and how much of that is its own compounding error?

    python benchmarks/dream_uncertainty.py --data DIR [--world-model DIR] [--windows 64] [--horizon 20]

From `--windows` windows of the val split of frame dataset `--data` (real frames under the real
actions, as in precision_fidelity.py), the dynamics model predicts each of `--horizon` next frames twice:
teacher-forced (every past frame real: the model's uncertainty on real inputs) and dreamed (one real
context frame, then its own greedy frames: what an agent in the dream sees). Prints JSON: per horizon
step, the mean per-token entropy (nats) of the predicted distributions both ways (the quantity the dream
env's `uncertainty_penalty` and `entropy_limit` use), the dreamed tokens' agreement with the real ones,
and the teacher-forced one for comparison. An entropy that grows along the dream but not under teacher
forcing is compounding error: the dream drifts to inputs unlike any real frame. With `--agent`, a third
dream from the same first frames follows that SB3 agent's (sampled) actions on the dreamed frames, as in
dream training: an entropy above the data's own actions' says the agent steers where the model is unsure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from precision_fidelity import window_parser, window_tokens, windows  # noqa: E402

from genie_env.world_model import load_world_model  # noqa: E402


@torch.no_grad()
def main(argv: list[str] | None = None) -> dict:
    p = window_parser(__doc__, horizon=20)
    p.add_argument("--precision", default="fp32", help="inference precision: fp32, bf16 or auto")
    p.add_argument("--agent", default=None, help="an SB3 agent file whose actions drive a third dream")
    args = p.parse_args(argv)
    wm = load_world_model(args.world_model, "cpu", args.precision)
    frames, actions = windows(args.data, args.windows, args.horizon + 1, args.seed)
    tokens = window_tokens(wm, frames)  # (W, H+1, S)
    acts = torch.from_numpy(actions)
    dyn, n = wm.dynamics, len(frames)
    forced, dreamed, steered = dyn.new_cache(n), dyn.new_cache(n), dyn.new_cache(n)
    prev = steered_prev = tokens[:, 0]
    agent = None
    if args.agent:
        from genie_env.agents.policies import load_agent

        agent = load_agent(args.agent)
        agent.set_random_seed(args.seed)
        grid = wm.tokenizer.cfg.grid
    rows = []
    with wm.autocast():
        for h in range(args.horizon):
            tf = dyn.step(forced, tokens[:, h], acts[:, h], entropy=True)
            dr = dyn.step(dreamed, prev, acts[:, h], entropy=True)
            prev = dr.tokens
            real = tokens[:, h + 1]
            if agent is not None:
                seen = wm.decode(steered_prev.view(n, 1, grid, grid))[:, 0]
                act, _ = agent.predict(seen, deterministic=False)
                ag = dyn.step(steered, steered_prev, torch.as_tensor(act, dtype=torch.long), entropy=True)
                steered_prev = ag.tokens
            rows.append({
                "step": h + 1,
                "entropy_teacher_forced": round(float(tf.token_entropy.float().mean()), 4),
                "entropy_dreamed": round(float(dr.token_entropy.float().mean()), 4),
                "token_accuracy_teacher_forced": round(float((tf.tokens == real).float().mean()), 4),
                "token_accuracy_dreamed": round(float((dr.tokens == real).float().mean()), 4),
                **({"entropy_agent": round(float(ag.token_entropy.float().mean()), 4)} if agent else {}),
            })  # fmt: skip
    result = {
        "benchmark": "dream_uncertainty", "world_model": args.world_model or "shipped", "data": args.data,
        "windows": n, "horizon": args.horizon, "agent": args.agent, "precision": wm.precision,
        "max_entropy_nats": round(float(np.log(dyn.cfg.codebook_size)), 4), "per_step": rows,
        "command": "python benchmarks/dream_uncertainty.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }  # fmt: skip
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
