"""The world model: a tokenizer and the dynamics model trained on its tokens, behind one API.

wm = genie_env.load_world_model()                 # the model shipped with the package
tokens = wm.encode(frames)                        # uint8 (B, T, 64, 64, 3) -> int64 (B, T, h, w)
frames = wm.decode(tokens)                        # -> uint8 (B, T, 64, 64, 3)
out = wm.rollout(context_frames, actions)         # -> Rollout(frames, rewards, terminations)
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import numpy as np
import torch

from genie_env._compat import fast_bf16, fast_int8
from genie_env._io import atomic_write_json, read_json
from genie_env.checkpoint import CheckpointError, export_checkpoint, read_config, resolve_checkpoint
from genie_env.data.context import ContextSource
from genie_env.data.format import dataset_level_seeds
from genie_env.data.manifest import read_manifest
from genie_env.games import DEFAULT_GAME
from genie_env.models import check_trained_on, load_dynamics, load_tokenizer, tokenizer_identity
from genie_env.models.dynamics import DynamicsModel
from genie_env.models.inductor import require_inductor
from genie_env.models.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "int8", "auto"]
"""the precision dreams run in: fp32, bf16 autocast (faster on CPUs with AVX512-BF16 or AMX, and on GPUs;
emulated and several times slower on other CPUs), int8 (CPU only: the dynamics model's Linear layers in
int8, `models.int8`, compiled at the first step; fast on CPUs with VNNI or AMX, the rest as auto), or auto
(bf16 where it is fast, fp32 elsewhere)"""


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """fp32, bf16 or int8 for `precision` on `device` ("auto": bf16 where bf16 is fast, `_compat.fast_bf16`).
    ValueError for int8 off the CPU; a warning for int8 on a CPU without int8 dot products, where it is slow."""
    if precision not in get_args(Precision):
        raise ValueError(f"unknown precision {precision!r}: use one of {get_args(Precision)}")
    kind = str(torch.device(device).type)
    if precision == "auto":
        return "bf16" if fast_bf16(kind) else "fp32"
    if precision == "int8":
        if kind != "cpu":
            raise ValueError(f"precision 'int8' is for CPUs (int8 matmuls through torch._int_mm); on {kind} use bf16")
        if not fast_int8(kind):
            warnings.warn("precision 'int8' on a CPU without VNNI or AMX: int8 matmuls are slower than fp32 here",
                          RuntimeWarning, stacklevel=3)  # fmt: skip
    return precision


AGENT_CONTEXTS = "agent_contexts.npz"
"""the file in a world-model directory of real frames from anywhere inside its own training episodes,
where dream agents start (`genie train-agent --env dream` without --context): their dreams are short
(--horizon 20), and from level starts alone a 20-step dream of CoinRun never reaches the coin"""

ACTION_MAP = "action_map.json"
"""the file in a world-model directory of latent actions that maps the game's real actions onto them
(`genie map-actions`), so `GenieProcgen-v0` can play it with the real action space"""

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL_DIR = ASSETS / DEFAULT_GAME
# the PPO agent trained in the shipped model's dream (SB3's format: stable_baselines3.PPO.load)
DEFAULT_AGENT = DEFAULT_MODEL_DIR / "agent.zip"


class Rollout(NamedTuple):
    """frames uint8 (B, H, 64, 64, 3); rewards float32 (B, H); terminations bool (B, H)."""

    frames: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray


def _as_tensor(x) -> torch.Tensor:
    """A tensor of `x` (shared with a writable numpy array; a read-only one, e.g. a memory-mapped shard, is copied)."""
    if isinstance(x, torch.Tensor):
        return x
    arr = np.asarray(x)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def _frames_tensor(frames, what: str) -> torch.Tensor:
    arr = _as_tensor(frames)
    if arr.dtype != torch.uint8:
        raise TypeError(f"{what} must be uint8, got {arr.dtype}")
    if arr.ndim != 5 or tuple(arr.shape[2:]) != (64, 64, 3):
        raise ValueError(f"{what} must be uint8 (B, T, 64, 64, 3), got shape {tuple(arr.shape)}")
    return arr


def _actions_tensor(actions, shape: tuple[int, ...], num_actions: int, what: str) -> torch.Tensor:
    arr = _as_tensor(actions)
    if arr.is_floating_point() or arr.dtype == torch.bool:
        raise TypeError(f"{what} must be integers, got {arr.dtype}")
    if tuple(arr.shape) != shape:
        raise ValueError(f"{what} must have shape {shape}, got {tuple(arr.shape)}")
    if arr.numel() and (int(arr.min()) < 0 or int(arr.max()) >= num_actions):
        bad = int(arr.max()) if int(arr.max()) >= num_actions else int(arr.min())
        raise ValueError(f"action {bad} out of range: the world model has {num_actions} actions (0..{num_actions - 1})")
    return arr.long()


def shipped_model_dir(game: str) -> Path:
    """The world model shipped for `game` (`genie_env/assets/<game>/`); CheckpointError naming the command that
    trains one where none is shipped."""
    root = ASSETS / game
    if not (root / "dynamics" / "config.json").exists():
        shipped = sorted(p.name for p in ASSETS.iterdir() if (p / "dynamics" / "config.json").exists())
        raise CheckpointError(
            f"no world model of {game} is shipped (shipped: {', '.join(shipped) or 'none'}): train one with "
            f"`genie pipeline --game {game} --out runs/{game}` and pass its last round's world model "
            f"(world_model='runs/{game}/world_model_r2' with the cpu preset's two rounds)"
        )
    return root


class WorldModel:
    """A tokenizer and a dynamics model that belong together (same token grid and vocabulary), of `game`.

    `precision="bf16"` runs both under bf16 autocast (faster on CPUs with AVX512-BF16 and on GPUs); "auto"
    (the default) picks bf16 where it is fast and fp32 elsewhere (`resolve_precision`); "int8" runs a copy
    of `dynamics` with int8 Linear layers (`models.int8.quantize_linears`), everything else as "auto".
    """

    def __init__(self, tokenizer: Tokenizer, dynamics: DynamicsModel, device: str | torch.device = "cpu",
                 precision: str = "auto", game: str = DEFAULT_GAME) -> None:  # fmt: skip
        t, d = tokenizer.cfg, dynamics.cfg
        if (t.grid, t.codebook_size) != (d.grid, d.codebook_size):
            raise CheckpointError(
                f"tokenizer ({t.grid}x{t.grid} tokens, {t.codebook_size} codes) and dynamics model "
                f"({d.grid}x{d.grid}, {d.codebook_size}) do not fit together"
            )
        self.device = torch.device(device)
        precision = resolve_precision(precision, self.device)
        self.tokenizer = tokenizer.to(self.device).eval()
        self.dynamics = dynamics.to(self.device).eval()
        if precision == "int8":
            from genie_env.models.int8 import quantize_linears

            self.dynamics = copy.deepcopy(self.dynamics)  # the caller's model stays as it was
            quantize_linears(self.dynamics)
        self.precision = precision
        # the dtype everything but int8 matmuls computes in
        floating = resolve_precision("auto", self.device) if precision == "int8" else precision
        self.compute_dtype = torch.bfloat16 if floating == "bf16" else torch.float32
        self.game = game
        self.action_map: np.ndarray | None = None  # real action -> latent action (`read_action_map`)
        self.compiled = False  # `compile`

    @property
    def num_actions(self) -> int:
        return self.dynamics.cfg.num_actions

    @property
    def context_frames(self) -> int:
        """The longest context the dynamics model attends to."""
        return self.dynamics.cfg.context_frames

    def set_dropout(self, active: bool) -> None:
        """Keep the dynamics model's dropout on while it dreams (Dropout's Dream Land: every dreamed step drops
        other units, so each dream episode is a slightly different simulator), or turn it off again. The
        rest of the model stays in eval mode. ValueError for a model trained without dropout, where it
        would change nothing."""
        if active and not self.dynamics.cfg.dropout:
            raise ValueError("this world model's dynamics was trained without dropout (dropout 0): dream dropout "
                             "would change nothing; fine-tune one with genie train-dynamics --init-from MODEL "
                             "--model.dropout 0.1")  # fmt: skip
        for module in self.dynamics.modules():
            if isinstance(module, torch.nn.Dropout):
                module.train(active)

    def compile(self) -> WorldModel:
        """torch.compile (inductor) the dynamics model and the tokenizer's decoder in place, for inference, and
        return self. The weights are folded into the compiled code as constants (inductor's `freezing`), so
        bf16 autocast no longer casts them at every step, and the small ops between the matmuls are fused;
        weights changed afterwards are not seen. The first step of each new batch size compiles (about
        40 s for the shipped model at 64 envs on 2 cores); the README's "`torch.compile`" gives what it
        gains. On CPU it needs a C++ compiler (g++ or clang): without one it raises a RuntimeError saying so
        before compiling anything. Compiled dreams equal eager ones to rounding
        (fp32 frames bit-identical on the shipped model; bf16 ones closer to eager bf16 than eager bf16 is to
        fp32), so what holds exactly between batch sizes eagerly holds to rounding only."""
        if self.compiled:
            return self
        require_inductor("WorldModel.compile() (compile=True, --compile)", "leave compile off")
        options = {"freezing": True}
        self.dynamics.compile(dynamic=False, options=options)
        self.tokenizer.decoder.compile(dynamic=False, options=options)
        self.compiled = True
        return self

    def autocast(self):
        """The autocast context inference runs under."""
        if self.compute_dtype == torch.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    @torch.no_grad()
    def encode(self, frames) -> torch.Tensor:
        """frames uint8 (B, T, 64, 64, 3) (numpy or torch) -> tokens int64 (B, T, h, w)."""
        with self.autocast():
            return self.tokenizer.encode(_frames_tensor(frames, "frames").to(self.device))

    @torch.no_grad()
    def decode(self, tokens, check_range: bool = True) -> np.ndarray:
        """tokens int64 (B, T, h, w) -> frames uint8 (B, T, 64, 64, 3) as numpy (`check_range=False`: tokens the
        dynamics model just generated, whose range needs no check)."""
        tokens = _as_tensor(tokens)
        with self.autocast():
            return self.tokenizer.decode_uint8(tokens.to(self.device), check_range).cpu().numpy()

    @torch.no_grad()
    def rollout(self, context_frames, actions, context_actions=None, steps: int = 1, temperature: float = 0.0,
                seed: int | None = None) -> Rollout:  # fmt: skip
        """Dream H frames after a real context.

        context_frames uint8 (B, T, 64, 64, 3); actions int (B, H), actions[:, 0] taken on the last
        context frame; context_actions int (B, T-1), the actions between the context frames, when known
        (without them only the last context frame conditions the rollout). Sampling: `steps` MaskGIT
        refinement steps, `temperature` (0 = most likely tokens), `seed`. Rewards are the expected
        reward (the mean of the predicted reward distribution; for CoinRun 10 x the coin probability);
        terminations are the termination probability >= 0.5.
        """
        context = _frames_tensor(context_frames, "context_frames")
        b, t = context.shape[:2]
        if t > self.context_frames:
            raise ValueError(f"context of {t} frames is longer than the model's window of {self.context_frames}")
        acts = _as_tensor(actions)
        if acts.ndim != 2 or acts.shape[0] != b:
            raise ValueError(f"actions must have shape (B, H) with B = {b}, got {tuple(acts.shape)}")
        if acts.shape[1] == 0:
            raise ValueError("actions must hold at least one step: shape (B, H) with H >= 1")
        if temperature < 0 or steps < 1:
            raise ValueError(
                f"sampling needs steps >= 1 and temperature >= 0, got steps={steps}, temperature={temperature}"
            )
        acts = _actions_tensor(acts, (b, acts.shape[1]), self.num_actions, "actions")
        if context_actions is None:
            context, ctx_acts = context[:, -1:], torch.zeros(b, 0, dtype=torch.long)
        else:
            ctx_acts = _actions_tensor(context_actions, (b, t - 1), self.num_actions, "context_actions")
        gen = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        tokens = self.encode(context).flatten(2)
        with self.autocast():
            outputs = self.dynamics.rollout(tokens, ctx_acts.to(self.device), acts.to(self.device), steps, temperature,
                                            gen)  # fmt: skip
        grid = self.tokenizer.cfg.grid
        decoded = self.decode(torch.stack([o.tokens for o in outputs], 1).view(b, -1, grid, grid))
        rewards = torch.stack([o.reward.float() for o in outputs], 1).cpu().numpy().astype(np.float32)
        terms = torch.stack([o.termination_prob.float() >= 0.5 for o in outputs], 1).cpu().numpy()
        return Rollout(decoded, rewards, terms)


def load_world_model(path: str | Path | None = None, device: str | torch.device | None = None,
                     precision: str = "auto") -> WorldModel:  # fmt: skip
    """Load a tokenizer + dynamics pair from `path` (a directory holding `tokenizer/` and `dynamics/`
    checkpoints or runs); None loads the model shipped with the package. `device` defaults to CUDA when
    present. Its game is the one the dynamics model was trained on (CoinRun for models from before games
    were recorded). Raises CheckpointError for a missing, corrupt or mismatched pair."""
    root = Path(path) if path is not None else DEFAULT_MODEL_DIR
    if path is None and not (root / "dynamics" / "config.json").exists():
        raise CheckpointError(
            f"the shipped world model is missing from this installation ({root / 'dynamics'}): reinstall genie-env, "
            "or train one (genie pipeline) and pass load_world_model(path=DIR) with DIR/tokenizer and DIR/dynamics"
        )
    for part in ("tokenizer", "dynamics"):
        if not (root / part).exists():
            raise CheckpointError(f"no world model at {root}: {root / part} does not exist")
    tok_path, dyn_path = resolve_checkpoint(root / "tokenizer"), resolve_checkpoint(root / "dynamics")
    check_trained_on(dyn_path, tokenizer_identity(tok_path), str(tok_path))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    meta = read_config(dyn_path, kind="dynamics")
    game = meta.get("game", DEFAULT_GAME)
    wm = WorldModel(load_tokenizer(tok_path), load_dynamics(dyn_path), device, precision, game)
    if (root / ACTION_MAP).exists():
        wm.action_map = read_action_map(root / ACTION_MAP, meta.get("actions"), wm.num_actions)
    return wm


def read_action_map(path: Path, actions: dict | None, num_latent: int) -> np.ndarray:
    """The real -> latent action map int64 (N real,) of `path` (`genie map-actions`), checked against the
    latent actions the dynamics model was trained on (`actions`, its record of the LAM): CheckpointError
    naming the file for a corrupt map, one of another LAM, or one of a model of real actions."""
    record = read_json(path, "action map", CheckpointError)
    if actions is None or actions.get("kind") != "latent":
        raise CheckpointError(f"{path} maps real actions onto latent ones, but this world model was trained on "
                              "the real actions: remove it")  # fmt: skip
    table = record.get("real_to_latent") if isinstance(record, dict) else None
    if not isinstance(table, list) or not table or not all(isinstance(a, int) and 0 <= a < num_latent for a in table):
        raise CheckpointError(f"corrupt action map {path}: real_to_latent must list latent actions 0..{num_latent - 1}")
    lam = record.get("lam") if isinstance(record.get("lam"), dict) else {}
    if lam.get("sha256") != actions["lam"]["sha256"]:
        raise CheckpointError(f"{path} maps onto the latent actions of another LAM ({lam.get('path')}) than this "
                              f"world model's ({actions['lam']['path']}): map them again")  # fmt: skip
    return np.array(table, np.int64)


def package_world_model(tokenizer: str | Path, dynamics: str | Path, frames: str | Path | Sequence[str | Path],
                        out: str | Path, context_frames: int = 1, num_contexts: int = 256,
                        fp16: bool = True) -> Path:  # fmt: skip
    """Assemble a world-model directory that `load_world_model(out)` and `GenieCoinRun-v0` take:
    `out/tokenizer`, `out/dynamics` (inference checkpoints, float16 by default), `out/contexts.npz`
    (`num_contexts` real level starts of `context_frames` frames from the train split of the frame
    dataset, or of several: every round of collected data the model was trained on: where the env's
    episodes start), `out/agent_contexts.npz` (4,096 contexts from anywhere inside those episodes:
    where dream agents' short dreams start, `AGENT_CONTEXTS`) and
    `out/levels.json` (the real level seeds and frame count of those datasets, so evaluation can show
    its levels are held out and the real-frame budget counts every round)."""
    out = Path(out)
    datasets = [frames] if isinstance(frames, (str, Path)) else list(frames)
    manifests = [read_manifest(d, kind="frames") for d in datasets]
    games = {str(d): m.game for d, m in zip(datasets, manifests)}
    if len(set(games.values())) > 1:
        raise ValueError("the frame datasets are of different games: "
                         + ", ".join(f"{d} is {g}" for d, g in games.items()))  # fmt: skip
    modes = {m.env.get("distribution_mode") for m in manifests}  # None: a user's game (no difficulty)
    if len(modes) > 1:
        raise ValueError(f"the frame datasets mix distribution modes {sorted(modes)}")
    dtype = torch.float16 if fp16 else None
    # force: a world model directory's exports are its own (a killed packaging runs again over them)
    export_checkpoint(resolve_checkpoint(tokenizer), out / "tokenizer", dtype, force=True)
    export_checkpoint(resolve_checkpoint(dynamics), out / "dynamics", dtype, force=True)
    ContextSource.from_dataset(datasets, context_frames, "start", limit=num_contexts).save(out / "contexts.npz")
    ContextSource.from_dataset(datasets, context_frames, "any").save(out / AGENT_CONTEXTS)
    atomic_write_json(out / "levels.json", {
        "level_seeds": sorted(set().union(*(dataset_level_seeds(d) for d in datasets))),
        "frames": sum(m.counts["frames"] for m in manifests), "distribution_mode": modes.pop(),
        "game": manifests[0].game,
        "datasets": [str(d) for d in datasets],
    })  # fmt: skip
    load_world_model(out)  # the pair must load and fit together
    return out
