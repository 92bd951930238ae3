"""Behaviour cloning from expert videos, with real action labels or without them (Genie's CoinRun experiment).

    cfg = BCConfig(data=("runs/expert_videos",), labels="latent", lam="runs/lam", labelled=200)
    train_bc(cfg, "runs/lam_bc")        # RUN/agent.zip: an SB3 PPO file, played by `genie evaluate`

- `labels="real"` (oracle BC): the policy learns every transition's real action.
- `labels="latent"` (LAM BC): the videos' actions are hidden. The latent action model labels every
  transition with a latent action; `labelled` transitions (drawn with the seed) keep their real action,
  and each latent action maps to the real action it co-occurs with most often among them (one no
  labelled transition shows maps to the commonest labelled action). The policy then learns the mapped
  latent labels: the latent policy and the map in one network, so the agent is an ordinary SB3 file.

Both train the same network as `genie train-agent` (the IMPALA CNN by default) by cross-entropy on the
train split's transitions (an episode's last row, whose next frame is not in the video, is left out),
and report accuracy against the real actions on the validation split. Why not `imitation`'s `bc`: its
last release (1.0.1) pins gymnasium~=0.29 and stable-baselines3~=2.2.1, and this project runs
gymnasium 1.x; cross-entropy on an SB3 policy's action logits is what its BC does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from tqdm import tqdm

from genie_env._io import DirLock, atomic_write_json
from genie_env.agents.networks import Features, TrainPrecision, autocast_features, resolve_train_precision
from genie_env.agents.train import AGENT_FORMAT_VERSION, AgentConfig, build_algorithm, save_agent_atomic
from genie_env.checkpoint import read_config, resolve_checkpoint, weights_sha256
from genie_env.data.dataset import episode_bounds
from genie_env.data.format import load_shard, schema_of
from genie_env.data.manifest import read_manifest
from genie_env.games import FRAME_SHAPE, NUM_ACTIONS
from genie_env.models import load_lam
from genie_env.models.lam import label_transitions, latent_to_real

logger = logging.getLogger(__name__)

Labels = Literal["real", "latent"]


@dataclass(frozen=True)
class BCConfig:
    """What behaviour cloning learns from and how (`genie train-bc`)."""

    data: tuple[str, ...] = ()
    """expert video datasets (`genie collect --policy sb3:EXPERT`), all of one game"""
    labels: Labels = "latent"
    """real (oracle BC: every real action) or latent (the LAM's latent actions, grounded by --labelled)"""
    lam: str | None = None
    """with --labels latent: the latent action model run (or checkpoint) that labels the videos"""
    labelled: int = 200
    """with --labels latent: transitions whose real action is known, to map latent actions to real ones"""
    features: Features = "impala"
    """policy network: impala (the IMPALA CNN, as the shipped agents) or nature"""
    steps: int = 3000
    """optimisation steps"""
    batch_size: int = 256
    """transitions per step"""
    lr: float = 5e-4
    """Adam learning rate"""
    seed: int = 0
    """seed of the labelled draw, the batches and the network"""
    device: str = "cpu"
    """torch device"""
    train_precision: TrainPrecision = "auto"
    """the policy's CNN while it learns: bf16 autocast (weights and loss stay fp32), fp32, or auto (bf16 where
    bf16 is fast)"""

    def __post_init__(self) -> None:
        resolve_train_precision(self.train_precision, self.device)  # an unknown name fails now
        if isinstance(self.data, str):
            object.__setattr__(self, "data", (self.data,))
        if not self.data:
            raise ValueError("--data: give at least one expert video dataset")
        if self.labels not in ("real", "latent"):
            raise ValueError(f"unknown --labels {self.labels!r}: use real or latent")
        if (self.labels == "latent") != (self.lam is not None):
            raise ValueError("--labels latent needs --lam RUN (the LAM that labels the videos), and only it")
        if self.labels == "latent" and self.labelled < 1:
            raise ValueError(f"--labelled must be >= 1 (transitions with a known real action), got {self.labelled}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("--steps and --batch-size must be >= 1")


def video_transitions(roots: tuple[str, ...], split: str) -> dict[str, Any]:
    """Every transition of a split: frame arrays (memory-mapped, one per shard), with each row's shard,
    row, real action and episode id; rows that end an episode are marked (`last`)."""
    shards, shard_of, row, actions, episodes, last = [], [], [], [], [], []
    games = set()
    for root in roots:
        manifest = read_manifest(root, kind="frames")
        games.add(manifest.game)
        for info in manifest.shards_of(split):
            arrays = load_shard(root, info, schema_of(manifest))
            n = len(arrays["actions"])
            ends = np.zeros(n, bool)
            ends[episode_bounds(arrays["episode_ids"])[1] - 1] = True
            shard_of.append(np.full(n, len(shards)))
            row.append(np.arange(n))
            actions.append(np.asarray(arrays["actions"], np.int64))
            episodes.append(np.asarray(arrays["episode_ids"]))
            last.append(ends)
            shards.append(arrays)
    if len(games) > 1:
        raise ValueError(f"--data mixes games {sorted(games)}: clone one game's videos")
    if not shards:
        raise ValueError(f"--data {', '.join(roots)} holds no {split} transitions")
    cat = np.concatenate
    return {"shards": shards, "shard": cat(shard_of), "row": cat(row), "actions": cat(actions),
            "episodes": cat(episodes), "last": cat(last), "game": games.pop()}  # fmt: skip


def latent_labels(lam_path: str, data: dict[str, Any], device: str) -> np.ndarray:
    """The LAM's latent action of every transition (int64, aligned with `data`'s rows)."""
    lam = load_lam(lam_path, device)
    out = []
    for arrays in data["shards"]:
        out.append(label_transitions(lam, arrays["frames"], np.asarray(arrays["episode_ids"]), device=device))
    return np.concatenate(out)


def _targets(cfg: BCConfig, train: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """What the policy learns for every usable train transition, and what the run records about it."""
    usable = np.flatnonzero(~train["last"])
    if cfg.labels == "real":
        return train["actions"][usable], {"usable": usable}
    if cfg.labelled > len(usable):
        raise ValueError(f"--labelled {cfg.labelled} exceeds the {len(usable)} train transitions of --data")
    lam_ckpt = resolve_checkpoint(cfg.lam)
    lam_meta = read_config(lam_ckpt, kind="lam")
    lam_game = lam_meta.get("game", train["game"])
    if lam_game != train["game"]:
        raise ValueError(f"--lam {cfg.lam} learned {lam_game}, the videos are {train['game']}")
    latent = latent_labels(cfg.lam, train, cfg.device)
    picked = rng.choice(usable, cfg.labelled, replace=False)
    mapping = latent_to_real(latent[picked], train["actions"][picked], lam_meta["config"]["num_actions"], NUM_ACTIONS)
    targets = mapping[latent[usable]]
    agree = float((targets == train["actions"][usable]).mean())  # the hidden labels, for the record only
    logger.info("latent -> real map %s from %d labelled transitions; it matches %.1f%% of the hidden actions",
                mapping.tolist(), cfg.labelled, 100 * agree)  # fmt: skip
    record = {"usable": usable, "latent_to_real": mapping.tolist(), "map_agreement": round(agree, 4),
              "lam": {"path": str(lam_ckpt), "sha256": weights_sha256(lam_ckpt)}}  # fmt: skip
    return targets, record


def map_actions(world_model: str | Path, data: tuple[str, ...], labelled: int = 200, seed: int = 0,
                lam: str | None = None, device: str = "cpu") -> dict[str, Any]:  # fmt: skip
    """Map the real actions onto the latent ones of a world model trained on latent actions (Genie's
    grounding, the other way round): `labelled` transitions of `data` (frame datasets of the model's game,
    drawn from their train split with `seed`) keep their real action, the model's own LAM (or `lam`, which
    must be that one) labels them, and each real action maps to its commonest latent action. Writes
    WORLD_MODEL/action_map.json atomically (so `GenieProcgen-v0` plays the model with the real actions) and
    returns what it holds: the map, the labelled counts table, and how often the map agrees with the LAM
    over every train transition (the hidden labels, for the record only)."""
    from genie_env.models.lam import real_to_latent
    from genie_env.world_model import ACTION_MAP, read_action_map

    root = Path(world_model)
    meta = read_config(resolve_checkpoint(root / "dynamics"), kind="dynamics")
    actions = meta.get("actions")
    if not actions or actions.get("kind") != "latent":
        raise ValueError(f"{root} was trained on the real actions: only a world model of latent actions needs a map")
    lam_path = resolve_checkpoint(lam or actions["lam"]["path"])
    if weights_sha256(lam_path) != actions["lam"]["sha256"]:
        raise ValueError(f"--lam {lam_path} is not the LAM whose latent actions {root} was trained on "
                         f"({actions['lam']['path']})")  # fmt: skip
    train = video_transitions(data, "train")
    game = meta.get("game", train["game"])
    if train["game"] != game:
        raise ValueError(f"--data is {train['game']}, the world model {root} is of {game}")
    usable = np.flatnonzero(~train["last"])
    if not 1 <= labelled <= len(usable):
        raise ValueError(f"--labelled {labelled} must be between 1 and the {len(usable)} train transitions of --data")
    latent = latent_labels(str(lam_path), train, device)
    picked = np.random.default_rng(seed).choice(usable, labelled, replace=False)
    num_latent, real = actions["num_actions"], train["actions"]
    mapping = real_to_latent(latent[picked], real[picked], num_latent, NUM_ACTIONS)
    counts = np.zeros((NUM_ACTIONS, num_latent), np.int64)
    np.add.at(counts, (real[picked], latent[picked]), 1)
    record = {
        "real_to_latent": mapping.tolist(), "labelled": labelled, "seed": seed, "game": game,
        "counts": counts.tolist(), "agreement": round(float((mapping[real[usable]] == latent[usable]).mean()), 4),
        "lam": {"path": str(lam_path), "sha256": actions["lam"]["sha256"]}, "data": [str(d) for d in data],
    }  # fmt: skip
    atomic_write_json(root / ACTION_MAP, record)
    read_action_map(root / ACTION_MAP, actions, num_latent)  # what loading will check
    logger.info("real -> latent map %s from %d labelled transitions; it agrees with the LAM on %.1f%% of them all",
                mapping.tolist(), labelled, 100 * record["agreement"])  # fmt: skip
    return record


def _frames(data: dict[str, Any], rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(data["shards"][data["shard"][r]]["frames"][data["row"][r]])
                                      for r in rows]))  # fmt: skip


def train_bc(cfg: BCConfig, run: str | Path, progress: bool = True) -> Path:
    """Clone the expert videos into RUN/agent.zip (SB3 PPO), with RUN/config.json recording the config, the
    frames and labels it cost, the map (latent labels) and the validation accuracy; RUN locked meanwhile."""
    run = Path(run)
    with DirLock(run):
        return _train_bc(cfg, run, progress)


def _train_bc(cfg: BCConfig, run: Path, progress: bool) -> Path:
    start = time.time()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    train, val = video_transitions(cfg.data, "train"), video_transitions(cfg.data, "val")
    targets, record = _targets(cfg, train, rng)
    usable = record.pop("usable")
    agent_cfg = AgentConfig(env="real", game=train["game"], features=cfg.features, num_envs=1, n_steps=cfg.batch_size,
                            batch_size=cfg.batch_size, seed=cfg.seed, device=cfg.device)  # fmt: skip
    model = build_algorithm(agent_cfg, _SpacesOnly(), tensorboard_log=None)
    policy = model.policy
    precision = resolve_train_precision(cfg.train_precision, cfg.device)
    autocast_features(policy, precision)
    optim = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    bar = tqdm(range(cfg.steps), desc="behaviour cloning", unit="step", disable=not progress)
    policy.set_training_mode(True)
    for _ in bar:
        pick = rng.integers(0, len(usable), cfg.batch_size)
        obs = _frames(train, usable[pick]).to(cfg.device)
        logits = policy.get_distribution(policy.obs_to_tensor(obs.numpy())[0]).distribution.logits
        loss = F.cross_entropy(logits, torch.from_numpy(targets[pick]).to(cfg.device))
        optim.zero_grad()
        loss.backward()
        optim.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    policy.set_training_mode(False)
    accuracy = validation_accuracy(policy, val)
    path = save_agent_atomic(model, run / "agent.zip")
    frames = int(len(train["actions"]) + len(val["actions"]))  # the videos it cost: validation included
    atomic_write_json(run / "config.json", {
        "format_version": AGENT_FORMAT_VERSION, "kind": "agent", "method": "bc", "config": asdict(agent_cfg),
        "bc": asdict(cfg),
        "steps_done": cfg.steps, "real_frames": frames, "dream_frames": 0,
        "real_action_labels": frames if cfg.labels == "real" else cfg.labelled, **record,
        "val_accuracy": accuracy, "wall_s": round(time.time() - start, 1),
        "train_precision": precision,
    })  # fmt: skip
    logger.info("BC (%s labels): validation accuracy %.3f against the real actions", cfg.labels, accuracy)
    return path


@torch.no_grad()
def validation_accuracy(policy, val: dict[str, Any], batch: int = 256) -> float:
    """How often the policy's likeliest action is the expert's real one, over the validation transitions."""
    rows = np.flatnonzero(~val["last"])
    hits = 0
    for i in range(0, len(rows), batch):
        obs = policy.obs_to_tensor(_frames(val, rows[i : i + batch]).numpy())[0]
        hits += int((policy.get_distribution(obs).distribution.logits.argmax(-1).cpu().numpy()
                     == val["actions"][rows[i : i + batch]]).sum())  # fmt: skip
    return round(hits / max(len(rows), 1), 4)


class _SpacesOnly(gym.Env):
    """The spaces an SB3 algorithm is built on, without a game behind them (BC never steps an env)."""

    observation_space = spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
    action_space = spaces.Discrete(NUM_ACTIONS)

    def reset(self, *, seed=None, options=None):
        raise RuntimeError("behaviour cloning never steps an env")

    def step(self, action):
        raise RuntimeError("behaviour cloning never steps an env")
