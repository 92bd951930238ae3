"""Dynamics evaluation on held-out levels: rollouts from real context with the real actions, decoded
and compared with the real frames, beside the copy-last-frame baseline; controllability (ΔtPSNR);
reward and termination classification, from real frames and after dreamed ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from genie_env.data.dataset import WindowDataset, episode_bounds
from genie_env.data.format import load_shard, schema_of
from genie_env.data.manifest import DatasetError, read_manifest
from genie_env.metrics import FrameErrors, expected_calibration_error, roc_auc
from genie_env.models.dynamics import DynamicsModel
from genie_env.models.tokenizer import Tokenizer
from genie_env.viz import save_gif

HORIZONS = (1, 4, 8, 16)
DREAMED_LEADS = (4, 8)  # dreamed frames before the transitions whose events `dreamed_events` scores


def rollout_tokens(model: DynamicsModel, context: torch.Tensor, context_actions: torch.Tensor, actions: torch.Tensor,
                   steps: int = 1, temperature: float = 0.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """The frames `DynamicsModel.rollout` dreams: tokens int64 (B, H, S)."""
    outputs = model.rollout(context, context_actions, actions, steps, temperature, generator)
    return torch.stack([o.tokens for o in outputs], 1)


def _classification(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    pred = probs >= 0.5
    tp = float((pred & labels).sum())
    return {
        "positives": int(labels.sum()),
        "transitions": len(labels),
        "auc": round(roc_auc(probs, labels), 4),
        "precision": round(tp / max(1.0, float(pred.sum())), 4),
        "recall": round(tp / max(1.0, float(labels.sum())), 4),
        "mean_prob": round(float(probs.mean()), 5),
        "base_rate": round(float(labels.mean()), 5),
        "ece": round(expected_calibration_error(probs, labels), 5),
    }


def _episodes(tokens_root: str | Path, split: str) -> list[dict[str, np.ndarray]]:
    """Every episode of a token dataset's split: tokens, actions, rewards, terminations."""
    manifest = read_manifest(tokens_root, kind="tokens")
    episodes = []
    for info in manifest.shards_of(split):
        arrays = load_shard(tokens_root, info, schema_of(manifest))
        for a, b in zip(*episode_bounds(arrays["episode_ids"])):
            episodes.append({k: np.asarray(arrays[k][a:b]) for k in ("tokens", "actions", "rewards", "terminations")})
    return episodes


def reward_values_report(dist: np.ndarray, values: np.ndarray, rewards: np.ndarray) -> dict[str, Any]:
    """How well the reward distributions dist float (N, R) over `values` predict the real `rewards` (N,):
    on the rewarded transitions, how often the likeliest non-zero value is the real reward (per value too),
    and the mean absolute error of the expected reward there and over every transition."""
    expected = dist @ values
    rewarded = rewards != 0
    nonzero = values != 0
    out: dict[str, Any] = {"rewarded_transitions": int(rewarded.sum()),
                           "expected_reward_mae": round(float(np.abs(expected - rewards).mean()), 5)}  # fmt: skip
    if rewarded.any() and nonzero.any():
        likeliest = values[nonzero][dist[rewarded][:, nonzero].argmax(1)]
        hit = np.isclose(likeliest, rewards[rewarded])
        out["value_accuracy"] = round(float(hit.mean()), 4)
        out["expected_reward_mae_rewarded"] = round(float(np.abs(expected - rewards)[rewarded].mean()), 5)
        real = rewards[rewarded]
        out["per_value"] = {}
        for v in np.unique(real):
            sel = real == v
            out["per_value"][f"{v:g}"] = {
                "transitions": int(sel.sum()),
                "value_accuracy": round(float(hit[sel].mean()), 4),
            }
    return out


@torch.no_grad()
def observed_events(model: DynamicsModel, tokens_root: str | Path, split: str = "val", batch: int = 32,
                    progress: bool = True) -> dict[str, np.ndarray]:  # fmt: skip
    """The predicted events of every transition of every episode of `split`, generated as in a dream (real
    frames in, next frame masked, KV cache): `reward_dist` float64 (N, R) over the model's `reward_values`,
    `termination_p` (N,), and the real `rewards` (N,) and `terminations` (N,)."""
    episodes = _episodes(tokens_root, split)
    out: dict[str, list] = {"reward_dist": [], "termination_p": [], "rewards": [], "terminations": []}
    for i in tqdm(range(0, len(episodes), batch), desc="events", unit="batch", disable=not progress):
        group = episodes[i : i + batch]
        length = max(len(e["actions"]) for e in group)
        toks = torch.zeros(len(group), length, model.cfg.tokens, dtype=torch.long)
        acts = torch.zeros(len(group), length, dtype=torch.long)
        for j, e in enumerate(group):
            toks[j, : len(e["actions"])] = torch.from_numpy(e["tokens"].astype(np.int64)).flatten(1)
            acts[j, : len(e["actions"])] = torch.from_numpy(np.array(e["actions"], np.int64))
        cache = model.new_cache(len(group))
        steps = [model.observe_events(cache, toks[:, t], acts[:, t]) for t in range(length)]
        dist = torch.stack([d for d, _ in steps], 1).numpy()
        term = torch.stack([t for _, t in steps], 1).numpy()
        for j, e in enumerate(group):
            n = len(e["actions"])
            out["reward_dist"].append(dist[j, :n].astype(np.float64))
            out["termination_p"].append(term[j, :n])
            out["rewards"].append(np.asarray(e["rewards"], np.float64))
            out["terminations"].append(np.asarray(e["terminations"], bool))
    return {k: np.concatenate(v) for k, v in out.items()}


def event_probabilities(model: DynamicsModel, tokens_root: str | Path, split: str = "val", batch: int = 32,
                        progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Reward (any non-zero reward: CoinRun's coin) and termination probabilities for every transition of
    `split` (see `observed_events`); returns (reward_p, term_p, labels (N, 2))."""
    return _event_arrays(model, observed_events(model, tokens_root, split, batch, progress))


def _event_arrays(model: DynamicsModel, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    reward_p = model.rewarded_probability(torch.from_numpy(obs["reward_dist"]).float()).numpy()
    return reward_p, obs["termination_p"], np.stack([obs["rewards"] != 0, obs["terminations"]], 1)


@torch.no_grad()
def dreamed_event_probabilities(model: DynamicsModel, tokens_root: str | Path, lead: int, context: int = 4,
                                split: str = "val", seed: int = 0,
                                batch: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Coin and termination probabilities of transitions the model reaches by dreaming, as a dream-trained
    agent meets them: the frame the action is taken on is the `lead`-th frame dreamed (with the real
    actions) after `context` real frames. Scored: every episode's last transition (where CoinRun's coins
    and deaths are) and one earlier transition per episode drawn with `seed`; episodes too short for
    `context + lead` frames are skipped. Returns (reward_p, term_p, labels (N, 2)) like `event_probabilities`."""
    rng = np.random.default_rng(seed)
    span = context + lead  # frames from the first context frame to the scored transition's frame
    windows = []
    for e in _episodes(tokens_root, split):
        n = len(e["actions"])
        if n < span + 1:  # + 1: the drawn earlier transition must differ from the last
            continue
        for t in (n - 1, int(rng.integers(span - 1, n - 1))):
            window = slice(t - span + 1, t + 1)
            labels = (e["rewards"][t] != 0, bool(e["terminations"][t]))
            windows.append((e["tokens"][window].reshape(span, -1), e["actions"][window], labels))
    if not windows:
        raise ValueError(
            f"no {split} episode of {tokens_root} has {span + 1} steps for a lead of {lead} frames: lower the lead"
        )
    reward_p, term = [], []
    for i in range(0, len(windows), batch):
        group = windows[i : i + batch]
        tokens = torch.from_numpy(np.stack([w[0] for w in group]).astype(np.int64))
        actions = torch.from_numpy(np.stack([w[1] for w in group]).astype(np.int64))
        # lead dreamed frames, then the scored transition
        out = model.rollout(tokens[:, :context], actions[:, : context - 1], actions[:, context - 1 :])[-1]
        reward_p.append(out.reward_prob.float().numpy())
        term.append(out.termination_prob.float().numpy())
    labels = np.array([w[2] for w in windows], bool)
    return np.concatenate(reward_p), np.concatenate(term), labels


@torch.no_grad()
def evaluate_dynamics(model: DynamicsModel, tokenizer: Tokenizer, tokens_root: str | Path, frames_root: str | Path,
                      context: int = 4, horizon: int = 16, windows: int = 64, steps: int = 1, temperature: float = 0.0,
                      seed: int = 0, batch: int = 16, out_dir: str | Path | None = None,
                      dreamed_leads: tuple[int, ...] = DREAMED_LEADS,
                      progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Roll out `windows` held-out windows and measure them (see the module docstring).

    PSNR at each horizon is computed from the MSE over all windows at that horizon, in [0, 1]; the
    copy-last-frame baseline and the tokenizer's own reconstruction of the real frames (an upper
    bound for any dynamics model) are measured on the same frames. Events are classified twice: on
    every transition from real frames ("reward", "termination") and after `dreamed_leads` dreamed
    frames ("dreamed_events", see `dreamed_event_probabilities`), which is what a dream agent meets.
    Writes eval_dynamics.json, a GIF (real | dream | difference) and a PSNR-vs-horizon plot to `out_dir`
    when given.
    """
    tokens_manifest = read_manifest(tokens_root, kind="tokens")
    if read_manifest(frames_root, kind="frames").counts != tokens_manifest.source["counts"]:
        raise DatasetError(f"{tokens_root} was not tokenized from {frames_root}")
    ds = WindowDataset(tokens_root, "val", window=context + horizon)
    frames_ds = WindowDataset(frames_root, "val", window=context + horizon)
    pick = np.linspace(0, len(ds) - 1, min(windows, len(ds))).astype(int)
    gen = torch.Generator().manual_seed(seed)
    errs = {name: [FrameErrors() for _ in range(horizon)] for name in ("dream", "random_actions", "copy", "tokenizer")}
    gif = None
    for i in tqdm(range(0, len(pick), batch), desc="rollouts", unit="batch", disable=not progress):
        items = [ds[j] for j in pick[i : i + batch]]
        tokens = torch.stack([it["tokens"] for it in items]).flatten(2)  # (B, C+H, S)
        actions = torch.stack([it["actions"] for it in items])
        real = torch.stack([frames_ds[j]["frames"] for j in pick[i : i + batch]])  # (B, C+H, 64, 64, 3)
        model.check_inputs(tokens, actions)
        ctx, ctx_act, fut_act = tokens[:, :context], actions[:, : context - 1], actions[:, context - 1 : -1]
        random_act = torch.randint(0, model.cfg.num_actions, fut_act.shape, generator=gen)
        grid = (tokens.shape[0], horizon, tokenizer.cfg.grid, tokenizer.cfg.grid)
        outputs = {
            "dream": rollout_tokens(model, ctx, ctx_act, fut_act, steps, temperature, gen),
            "random_actions": rollout_tokens(model, ctx, ctx_act, random_act, steps, temperature, gen),
            "tokenizer": tokens[:, context:],
        }
        decoded = {k: tokenizer.decode_uint8(v.reshape(grid)) for k, v in outputs.items()}
        decoded["copy"] = real[:, context - 1 : context].expand(-1, horizon, -1, -1, -1)
        target = real[:, context:]
        for name, frames in decoded.items():
            for h in range(horizon):
                errs[name][h].update(frames[:, h], target[:, h])
        if gif is None:
            gif = (target[0].numpy(), decoded["dream"][0].numpy())
    horizons = [h for h in HORIZONS if h <= horizon]
    psnr = {name: {h: round(e[h - 1].psnr, 3) for h in horizons} for name, e in errs.items()}
    observed = observed_events(model, tokens_root, progress=progress)
    reward_p, term_p, labels = _event_arrays(model, observed)
    result: dict[str, Any] = {
        "windows": len(pick),
        "context": context,
        "horizon": horizon,
        "sampling": {"steps": steps, "temperature": temperature, "seed": seed},
        # the actions the dreams are driven by: the real ones, or those a LAM inferred from the real frames
        # (then random_actions draws random latent actions, and delta_t_psnr is Genie's ΔtPSNR)
        "actions": tokens_manifest.actions or {"kind": "real"},
        "psnr": psnr["dream"],
        "ssim": {h: round(errs["dream"][h - 1].ssim, 4) for h in horizons},
        "copy_last_frame_psnr": psnr["copy"],
        "random_actions_psnr": psnr["random_actions"],
        "tokenizer_psnr": psnr["tokenizer"],
        "delta_t_psnr": {t: round(psnr["dream"][t] - psnr["random_actions"][t], 3) for t in (4, 8) if t <= horizon},
        "beats_copy_baseline": {h: psnr["dream"][h] > psnr["copy"][h] for h in horizons},
        # "reward": P(a non-zero reward) against whether one came (for CoinRun: the coin)
        "reward_values": list(model.cfg.reward_values),
        # which reward: the likeliest non-zero value against the real one, and the expected reward's error
        "reward_value": reward_values_report(
            observed["reward_dist"], np.asarray(model.cfg.reward_values), observed["rewards"]
        ),
        "reward": _classification(reward_p, labels[:, 0]),
        "termination": _classification(term_p, labels[:, 1]),
        "dreamed_events": {},
    }
    for lead in dreamed_leads:
        reward_p, term_p, labels = dreamed_event_probabilities(model, tokens_root, lead, context, seed=seed)
        result["dreamed_events"][lead] = {"reward": _classification(reward_p, labels[:, 0]),
                                          "termination": _classification(term_p, labels[:, 1])}  # fmt: skip
    if out_dir is not None:
        out = Path(out_dir)
        real_f, dream_f = gif
        diff = np.abs(real_f.astype(np.int16) - dream_f.astype(np.int16)).astype(np.uint8)
        side = np.concatenate([real_f, dream_f, diff], axis=2)  # real | dream | difference
        result["gif"] = str(save_gif(side, out / "rollout.gif", fps=5))
        result["plot"] = str(_plot(errs, horizon, out / "psnr_vs_horizon.png"))
    return result


def _plot(errs: dict[str, list[FrameErrors]], horizon: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = np.arange(1, horizon + 1)
    labels = {"dream": "dream (real actions)", "random_actions": "dream (random actions)",
              "copy": "copy last frame", "tokenizer": "tokenizer reconstruction"}  # fmt: skip
    for name, label in labels.items():
        ax.plot(steps, [e.psnr for e in errs[name]], marker="o", ms=3, label=label)
    ax.set_xlabel("horizon (frames)")
    ax.set_ylabel("PSNR (dB, from mean MSE)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
