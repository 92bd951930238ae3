"""Are bf16 dreams as faithful as fp32 ones? The same held-out windows dreamed in both precisions.

    python benchmarks/precision_fidelity.py --data DIR [--world-model DIR] [--windows 64] [--horizon 16] [--int8] \
        [--compile]

From `--windows` windows of the val split of frame dataset `--data` (drawn with `--seed` from the
non-overlapping windows of its episodes), the world model dreams `--horizon` frames after one real
context frame under the real actions, greedily, once in fp32 and once under bf16 autocast (with
--int8 once in int8, and with --compile once in bf16 compiled: `WorldModel.compile`, its wall time
including the compiling). Prints JSON: PSNR against the real frames at every horizon for each precision and
for copy-last-frame (each from the MSE over all windows), the PSNR of the bf16 (and int8) dream against
the fp32 one, the share of frames they dream identically, and the wall time of each (bf16 is emulated,
so slow, on CPUs without AVX512-BF16 or AMX: compare speeds with dream_env.py).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from genie_env.data.dataset import episode_bounds
from genie_env.data.format import load_shard
from genie_env.data.manifest import read_manifest
from genie_env.metrics import FrameErrors
from genie_env.world_model import load_world_model


def windows(data: str, count: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """frames uint8 (count, length, 64, 64, 3) and actions int64 (count, length - 1) from the val split."""
    rng = np.random.default_rng(seed)
    frames, actions = [], []
    for info in read_manifest(data).shards_of("val"):
        arrays = load_shard(data, info)
        for a, b in zip(*episode_bounds(arrays["episode_ids"])):
            for start in range(a, b - length + 1, length):  # non-overlapping windows of the episode
                frames.append(np.asarray(arrays["frames"][start : start + length]))
                actions.append(np.asarray(arrays["actions"][start : start + length - 1], np.int64))
    if len(frames) < count:
        raise SystemExit(f"{data}: the val split holds only {len(frames)} windows of {length} frames, need {count}")
    pick = rng.choice(len(frames), count, replace=False)
    return np.stack([frames[i] for i in pick]), np.stack([actions[i] for i in pick])


def window_tokens(wm, frames: np.ndarray) -> torch.Tensor:
    """The tokens int64 (N, T, S) of windows of frames uint8 (N, T, 64, 64, 3), encoded 16 windows at a time."""
    return torch.cat([wm.encode(frames[i : i + 16]).flatten(2) for i in range(0, len(frames), 16)])


def window_parser(doc: str, horizon: int) -> argparse.ArgumentParser:
    """The flags of a benchmark that dreams held-out windows: --data, --world-model, --windows, --horizon, --seed."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="frame dataset whose val split gives the windows")
    parser.add_argument("--world-model", default=None, help="world-model directory (default: the shipped one)")
    parser.add_argument("--windows", type=int, default=64, help="windows dreamed")
    parser.add_argument("--horizon", type=int, default=horizon, help="frames dreamed after the context frame")
    parser.add_argument("--seed", type=int, default=0, help="seed of the window draw")
    return parser


def main() -> None:
    parser = window_parser(__doc__, horizon=16)
    parser.add_argument("--int8", action="store_true", help="also dream in int8 (models.int8; CPUs with VNNI or AMX)")
    parser.add_argument("--compile", action="store_true", help="also dream in bf16 compiled (WorldModel.compile)")
    args = parser.parse_args()
    frames, actions = windows(args.data, args.windows, args.horizon + 1, args.seed)
    real = torch.from_numpy(frames[:, 1:])
    dreams, result = {}, {"windows": args.windows, "horizon": args.horizon, "data": args.data, "psnr": {}}
    precisions = ("fp32", "bf16", *(("int8",) if args.int8 else ()), *(("bf16+compile",) if args.compile else ()))
    for precision in precisions:
        wm = load_world_model(args.world_model, "cpu", precision.removesuffix("+compile"))
        start = time.perf_counter()
        if precision.endswith("+compile"):
            wm.compile()
        out = wm.rollout(frames[:, :1], actions)
        result[f"{precision}_wall_s"] = round(time.perf_counter() - start, 2)
        dreams[precision] = out.frames
    copy = np.repeat(frames[:, :1], args.horizon, 1)
    for name, pred in (*dreams.items(), ("copy_last_frame", copy)):
        errs = [FrameErrors() for _ in range(args.horizon)]
        for h in range(args.horizon):
            errs[h].update(torch.from_numpy(pred[:, h]), real[:, h])
        result["psnr"][name] = {h + 1: round(errs[h].psnr, 3) for h in range(args.horizon)}
    for precision in precisions[1:]:
        between = [FrameErrors() for _ in range(args.horizon)]
        for h in range(args.horizon):
            between[h].update(torch.from_numpy(dreams[precision][:, h]), torch.from_numpy(dreams["fp32"][:, h]))
        result[f"{precision}_vs_fp32_psnr"] = {h + 1: round(between[h].psnr, 3) for h in range(args.horizon)}
        same = (dreams["fp32"] == dreams[precision]).all(axis=(2, 3, 4))
        key = "identical_frames" if precision == "bf16" else f"{precision}_identical_frames"
        result[key] = {h + 1: round(float(same[:, h].mean()), 4) for h in range(args.horizon)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
