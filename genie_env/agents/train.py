"""RL agents for a Procgen game (CoinRun by default), real or dreamed: SB3 on-policy algorithms on our
batched vector envs.

    cfg = AgentConfig(env="dream", world_model="runs/world_model", steps=500_000)
    model_path = train_agent(cfg, "runs/agent_dream")     # RUN/agent.zip, loadable with stable_baselines3.PPO.load

The agent only ever sees frames uint8 (N, 64, 64, 3) and acts in `Discrete(15)`, so one trained in
`GenieProcgen-v0` plays `Procgen-v0` of the same game unchanged. Hyperparameters default to the Procgen
baselines' PPO (Cobbe et al. 2020: 64 envs, gamma 0.999, lambda 0.95, 3 epochs, lr 5e-4, entropy 0.01,
clip 0.2) with a shorter rollout (128 steps instead of 256), since our budgets are 1-2% of theirs.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from genie_env._compat import import_gym_quietly
from genie_env._io import DirLock, atomic_path, atomic_write_json
from genie_env.agents.curriculum import PLRCallback, PrioritizedContexts
from genie_env.agents.evaluate import DEFAULT_EVAL_NUM_LEVELS, DEFAULT_EVAL_START_LEVEL
from genie_env.agents.networks import (
    Features,
    TrainPrecision,
    autocast_features,
    policy_kwargs,
    resolve_train_precision,
)
from genie_env.agents.policies import load_agent, sb3_class
from genie_env.checkpoint import config_from_dict, resume_mismatches
from genie_env.data.context import ResetFrom
from genie_env.envs.dream import Events, GenieProcgenVectorEnv, GenieVectorEnv
from genie_env.envs.sb3 import ConcatVecEnv, SB3VecEnv
from genie_env.envs.user import real_vector_env
from genie_env.games import DEFAULT_GAME, DistributionMode, LevelConfig, check_any_game, is_user_game
from genie_env.user_game import parse_env_kwargs
from genie_env.world_model import AGENT_CONTEXTS, DEFAULT_MODEL_DIR, Precision, resolve_precision, shipped_model_dir

import_gym_quietly()
from stable_baselines3.common.base_class import BaseAlgorithm  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback  # noqa: E402
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm  # noqa: E402
from stable_baselines3.common.vec_env import VecEnv, VecMonitor  # noqa: E402

logger = logging.getLogger(__name__)

TrainEnv = Literal["dream", "real"]
StartCurriculum = Literal["uniform", "plr"]
Algo = Literal["ppo", "a2c"]
AGENT_FORMAT_VERSION = 1
PLR_STATE = "plr.json"  # RUN/checkpoints/: the start curriculum's scores (`PrioritizedContexts.state`)
# fields a resumed run may change: they say how long, how watched and on what hardware, not what is learned
RESUMABLE_CHANGES = {
    "steps",
    "max_minutes",
    "checkpoint_every",
    "eval_every",
    "eval_episodes",
    "precision",
    "train_precision",
    "device",
    "compile",
}


@dataclass(frozen=True)
class AgentConfig:
    """What an agent trains in and how (`genie train-agent`)."""

    env: TrainEnv = "dream"
    """where the agent trains: dream (GenieProcgen-v0, the world model's) or real (Procgen-v0)"""
    algo: Algo = "ppo"
    """any Stable-Baselines3 on-policy algorithm by name: ppo or a2c"""
    features: Features = "nature"
    """CNN features extractor: nature (SB3's CnnPolicy) or impala (IMPALA-CNN, as in the Procgen paper)"""
    steps: int = 500_000
    """environment steps to train for (all envs together)"""
    num_envs: int = 64
    """envs stepped together (one batched call)"""
    seed: int = 0
    """seed of the policy's initialisation, the envs and every sampled action"""
    distribution_mode: DistributionMode = "easy"
    """difficulty of the real game (training with --env real, and evaluation)"""
    game: str = DEFAULT_GAME
    """the game: of --env real, of the dream (its world model must be of it) and of the evaluations; a Procgen
    game, or the Gymnasium env id of your own (as `genie collect --env-id` recorded it)"""
    env_kwargs: str = "{}"
    """with --game the env id of your own game: its gymnasium.make kwargs, as a JSON object"""
    world_model: str | None = None
    """world-model directory for --env dream (default: the model shipped with the package for --game)"""
    context: tuple[str, ...] = ()
    """where dreams start: frame dataset directories (several for several collection rounds) or one contexts
    .npz (default: the model's contexts)"""
    reset_from: ResetFrom = "any"
    """with a dataset --context: start dreams at level starts (start) or anywhere in episodes (any)"""
    dream_dropout: bool = False
    """keep the world model's dropout on while it dreams (Dropout's Dream Land): each dreamed step drops other
    units, so every dream episode is a slightly different simulator (needs a world model trained with
    --model.dropout > 0)"""
    context_frames: int = 1
    """real frames each dream starts from: the world model conditions on all of them, the agent's first
    observation is the last (> 1 needs a dataset --context: a contexts .npz holds single frames)"""
    horizon: int = 20
    """dream episodes are truncated (value bootstrapped) after this many steps, as IRIS (20) and DIAMOND (15)"""
    events: Events = "expected"
    """dream rewards and ends: expected (the mean of the predicted reward distribution, for CoinRun 10 x the
    coin probability; end at probability >= 0.5), threshold (the likeliest reward and the end where their
    probability is >= 0.5) or sample (draws)"""
    precision: Precision = "auto"
    """dream inference precision: auto (bf16 where bf16 is fast, fp32 elsewhere: what the dream envs default to),
    fp32, bf16 (faster on CPUs with AVX512-BF16 or AMX, slow without) or int8 (the dynamics' Linear layers in
    int8: CPUs with VNNI or AMX, compiled at the first step)"""
    compile: bool = False
    """torch.compile the world model (`WorldModel.compile`): its first dreamed step compiles (about 40 s for the
    shipped model), later ones run faster (the README's "`torch.compile`"); needs a C++ compiler"""
    train_precision: TrainPrecision = "auto"
    """the agent's CNN while it trains (rollouts and updates): bf16 autocast (weights, heads and losses stay
    fp32; 2.2x faster PPO minibatches on AVX512-BF16 cores), fp32, or auto (bf16 where bf16 is fast)"""
    temperature: float = 0.0
    """dream sampling temperature of the predicted tokens: 0 takes the likeliest (one deterministic future per
    start and actions); > 0 draws each dream's future, so every episode is a slightly different simulator"""
    maskgit_steps: int = 1
    """MaskGIT refinement steps per dreamed frame (1 = one pass)"""
    uncertainty_penalty: float = 0.0
    """dream rewards lowered by this times the model's mean per-token entropy (nats) of each dreamed frame, so
    the agent gains nothing from states the model is unsure of (0 = no penalty)"""
    entropy_limit: float = 0.0
    """dreams are truncated (value bootstrapped) at the first frame dreamed with a mean per-token entropy above
    this many nats: they stop where the model stops knowing (0 = only --horizon truncates)"""
    real_envs: int = 0
    """Dyna: of --num-envs, this many step the real game (training levels) beside the dreams, so every update
    mixes real and dreamed steps; their frames count as real frames (0 = dreams only)"""
    start_curriculum: StartCurriculum = "uniform"
    """where dreams start among the contexts: uniform, or plr (prioritised level replay: contexts whose last
    dream had large advantages start more often, genie_env/agents/curriculum.py)"""
    plr_temperature: float = 0.1
    """with --start-curriculum plr: the rank-prioritisation temperature (lower: the top contexts dominate)"""
    plr_staleness: float = 0.1
    """with --start-curriculum plr: the share of the draw given to contexts by how long ago they last started"""
    device: str = "cpu"
    """device of the policy network and of the world model"""
    n_steps: int = 128
    """rollout length per env between updates"""
    batch_size: int = 2048
    """PPO minibatch size"""
    n_epochs: int = 3
    """PPO epochs per rollout"""
    lr: float = 5e-4
    """learning rate"""
    gamma: float = 0.999
    """discount"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    ent_coef: float = 0.01
    """entropy bonus"""
    clip_range: float = 0.2
    """PPO clip range"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    checkpoint_every: int = 50_000
    """steps between checkpoints (RUN/checkpoints/latest.zip, written atomically)"""
    eval_every: int = 0
    """steps between evaluations on held-out real levels (0 = never during training)"""
    eval_episodes: int = 64
    """episodes per evaluation during training"""
    max_minutes: float = 0.0
    """stop training after this many minutes and save the agent as it is (0 = no limit)"""

    def __post_init__(self) -> None:
        # one path (as configs were written before several were allowed), None or a list: a tuple of paths
        context = (self.context,) if isinstance(self.context, str) else tuple(self.context or ())
        object.__setattr__(self, "context", context)
        for flag, value, kind in (("env", self.env, TrainEnv), ("features", self.features, Features),
                                  ("reset-from", self.reset_from, ResetFrom), ("events", self.events, Events),
                                  ("precision", self.precision, Precision),
                                  ("train-precision", self.train_precision, TrainPrecision),
                                  ("start-curriculum", self.start_curriculum, StartCurriculum)):  # fmt: skip
            if value not in get_args(kind):
                raise ValueError(f"unknown --{flag} {value!r}: use one of {get_args(kind)}")
        algorithm_class(self.algo)
        check_any_game(self.game)
        if is_user_game(self.game):
            parse_env_kwargs(self.env_kwargs)
        elif self.env_kwargs != "{}":
            raise ValueError(f"--env-kwargs are for a game of your own: {self.game} is a Procgen game")
        if self.steps < 1 or self.num_envs < 1 or self.n_steps < 1:
            raise ValueError("--steps, --num-envs and --n-steps must be >= 1")
        if min(self.temperature, self.uncertainty_penalty, self.entropy_limit) < 0 or self.maskgit_steps < 1:
            raise ValueError("--temperature, --uncertainty-penalty and --entropy-limit must be >= 0, "
                             "--maskgit-steps >= 1")  # fmt: skip
        if self.context_frames < 1:
            raise ValueError(f"--context-frames must be >= 1, got {self.context_frames}")
        if self.context_frames > 1 and (self.env != "dream" or not self.context
                                        or any(str(c).endswith(".npz") for c in self.context)):  # fmt: skip
            raise ValueError(f"--context-frames {self.context_frames} needs --env dream and a dataset --context "
                             "(frame dataset directories): a contexts .npz holds single frames")  # fmt: skip
        if self.dream_dropout and self.env != "dream":
            raise ValueError("--dream-dropout is for dreams (--env dream)")
        if self.start_curriculum != "uniform" and self.env != "dream":
            raise ValueError(f"--start-curriculum {self.start_curriculum} is for dreams (--env dream)")
        if not self.plr_temperature > 0 or not 0.0 <= self.plr_staleness <= 1.0:
            raise ValueError("--plr-temperature must be > 0 and --plr-staleness in [0, 1]")
        if self.real_envs and (self.env != "dream" or not 0 < self.real_envs < self.num_envs):
            raise ValueError(f"--real-envs {self.real_envs} needs --env dream and 0 < --real-envs < --num-envs "
                             f"({self.num_envs}): the other envs dream")  # fmt: skip
        if self.algo == "ppo" and self.batch_size > self.n_steps * self.num_envs:
            raise ValueError(
                f"--batch-size {self.batch_size} exceeds one rollout of {self.n_steps * self.num_envs} steps "
                "(--n-steps x --num-envs)"
            )


def with_fields(base: AgentConfig, change: dict[str, Any], what: str) -> AgentConfig:
    """`base` with the AgentConfig fields in `change` replaced (a lever, e.g. {"entropy_limit": 2.5});
    ValueError naming `what` (the flag or variant the fields came from) for unknown fields or bad values."""
    if not isinstance(change, dict):
        raise ValueError(f"{what}: needs a JSON object of AgentConfig fields, got {change!r}")
    unknown = sorted(set(change) - {f.name for f in fields(AgentConfig)})
    if unknown:
        raise ValueError(f"{what}: unknown AgentConfig fields {unknown}")
    try:
        return replace(base, **change)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: {err}") from None


def trained_steps(cfg: AgentConfig) -> int:
    """The steps `cfg` trains for in fact: SB3 collects whole rollouts (--n-steps x --num-envs) until it has
    at least --steps."""
    rollout = cfg.n_steps * cfg.num_envs
    return -(-cfg.steps // rollout) * rollout


def real_steps(cfg: AgentConfig, steps_done: int) -> int:
    """Of `steps_done`, the steps taken on the real game: all with --env real, Dyna's share in a dream."""
    return steps_done if cfg.env == "real" else steps_done * cfg.real_envs // cfg.num_envs


def steps_within(budget: int, num_envs: int, n_steps: int) -> int:
    """The most steps of whole rollouts (`n_steps` x `num_envs`) that stay within `budget` real frames, so
    a real-game agent given a budget never takes more (ValueError if not even one rollout fits)."""
    rollout = n_steps * num_envs
    if budget < rollout:
        raise ValueError(f"a budget of {budget:,} real frames is less than one rollout ({n_steps} x {num_envs} envs)")
    return budget // rollout * rollout


def algorithm_class(name: str) -> type[OnPolicyAlgorithm]:
    """The SB3 on-policy algorithm class named `name` (ppo, a2c); ValueError otherwise."""
    if name not in get_args(Algo):
        raise ValueError(f"unknown on-policy algorithm {name!r}: use one of {get_args(Algo)} (--algo)")
    return sb3_class(name)


def make_vec_env(cfg: AgentConfig) -> VecEnv:
    """The batched training env as an SB3 VecEnv: N dreams or N real levels (unbounded level seeds), or
    with --real-envs K the K real levels first and N - K dreams after them (`ConcatVecEnv`), with SB3's
    `VecMonitor` keeping the episode statistics. Its `context_sampler` is the curriculum the dreams start
    from with --start-curriculum plr (`PrioritizedContexts`), else None."""
    real = cfg.num_envs if cfg.env == "real" else cfg.real_envs
    parts, sampler = [], None
    if real:
        parts.append(SB3VecEnv(real_vector_env(cfg.game, real, LevelConfig(cfg.distribution_mode), cfg.env_kwargs)))
    if cfg.env == "dream":
        dream = GenieVectorEnv if is_user_game(cfg.game) else GenieProcgenVectorEnv
        dreams = dream(
            cfg.num_envs - real, world_model=cfg.world_model, device=cfg.device, precision=cfg.precision,
            sampling={"steps": cfg.maskgit_steps, "temperature": cfg.temperature}, context=dream_context(cfg),
            context_frames=cfg.context_frames, reset_from=cfg.reset_from, max_episode_steps=cfg.horizon,
            events=cfg.events, game=cfg.game, uncertainty_penalty=cfg.uncertainty_penalty,
            entropy_limit=cfg.entropy_limit, compile=cfg.compile,
        )  # fmt: skip
        if cfg.dream_dropout:
            dreams.dream.wm.set_dropout(True)
        if cfg.start_curriculum == "plr":
            sampler = PrioritizedContexts(len(dreams.dream.source), cfg.plr_temperature, cfg.plr_staleness)
            dreams.set_context_sampler(sampler)
        parts.append(SB3VecEnv(dreams))
    env = parts[0] if len(parts) == 1 else ConcatVecEnv(parts)
    env.seed(cfg.seed)
    monitored = VecMonitor(env)
    monitored.context_sampler = sampler  # what PLRCallback scores
    return monitored


def dream_context(cfg: AgentConfig) -> str | list[str] | None:
    """The dream env's `context` kwarg: the config's --context paths, or without them the world model's
    `agent_contexts.npz` (frames from anywhere in its training episodes). A world model packaged before
    it had one falls back on its level starts, with a warning: from there few short dreams reach a reward."""
    if cfg.context:
        return cfg.context[0] if len(cfg.context) == 1 else list(cfg.context)
    model_dir = Path(cfg.world_model) if cfg.world_model else shipped_model_dir(cfg.game)
    if (model_dir / AGENT_CONTEXTS).exists():
        return str(model_dir / AGENT_CONTEXTS)
    logger.warning("%s has no %s: dreams start at its level starts (contexts.npz), and few %d-step dreams from "
                   "there reach a reward; pass --context DATASET (its training data)", model_dir, AGENT_CONTEXTS,
                   cfg.horizon)  # fmt: skip
    return None


def make_eval_env(cfg: AgentConfig, num_envs: int = 16) -> VecEnv:
    """The real game on the held-out evaluation levels (see `genie_env.agents.evaluate`)."""
    levels = LevelConfig(cfg.distribution_mode, DEFAULT_EVAL_START_LEVEL, DEFAULT_EVAL_NUM_LEVELS)
    venv = real_vector_env(cfg.game, num_envs, levels, cfg.env_kwargs)
    env = SB3VecEnv(venv)
    env.seed(cfg.seed + 10_000)
    return VecMonitor(env)


def build_algorithm(cfg: AgentConfig, env: VecEnv, tensorboard_log: str | None = None) -> OnPolicyAlgorithm:
    """A fresh SB3 algorithm for `cfg` on `env`; options the algorithm does not take (e.g. PPO's
    clip range for A2C) are left out."""
    cls = algorithm_class(cfg.algo)
    options: dict[str, Any] = dict(
        n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, learning_rate=cfg.lr,
        gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef, clip_range=cfg.clip_range,
        vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
    )  # fmt: skip
    accepted = inspect.signature(cls.__init__).parameters
    options = {k: v for k, v in options.items() if k in accepted}
    return cls(
        "CnnPolicy", env, policy_kwargs=policy_kwargs(cfg.features), seed=cfg.seed, device=cfg.device,
        tensorboard_log=tensorboard_log, verbose=0, **options,
    )  # fmt: skip


def save_agent_atomic(model: BaseAlgorithm, path: Path) -> Path:
    """Save an SB3 model as `path` (.zip) atomically, so a kill never leaves half a file."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


class _Progress(BaseCallback):
    """tqdm progress over environment steps, with the mean return of the last 100 episodes."""

    def __init__(self, total: int, initial: int) -> None:
        super().__init__()
        self.total, self.initial = total, initial
        self.bar = None

    def _on_training_start(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, initial=self.initial, desc="train agent", unit="step", dynamic_ncols=True)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        if self.model.ep_info_buffer and self.n_calls % 50 == 0:
            self.bar.set_postfix(ep_return=f"{np.mean([e['r'] for e in self.model.ep_info_buffer]):.2f}")
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


class _TimeLimit(BaseCallback):
    """Ends training (cleanly: the agent is still saved) once `minutes` have passed."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.deadline = time.time() + 60 * minutes

    def _on_step(self) -> bool:
        if time.time() < self.deadline:
            return True
        logger.info("--max-minutes reached at %d steps: stopping", self.num_timesteps)
        return False


class _RealReturns(BaseCallback):
    """With Dyna's real envs (the first `num` of the batch): their episodes' mean return and length in
    TensorBoard (`dyna/real_ep_rew_mean`, `dyna/real_ep_len_mean`) beside the dreams' and real ones' mixed
    `rollout/ep_rew_mean`."""

    def __init__(self, num: int) -> None:
        super().__init__()
        self.num = num

    def _on_step(self) -> bool:
        for info in self.locals["infos"][: self.num]:
            if "episode" in info:
                self.logger.record_mean("dyna/real_ep_rew_mean", info["episode"]["r"])
                self.logger.record_mean("dyna/real_ep_len_mean", info["episode"]["l"])
        return True


class _Bookkeeping(BaseCallback):
    """The real level seeds seen, and atomic checkpoints (episode statistics come from `VecMonitor`)."""

    def __init__(self, run: Path, every: int, levels: set[int], sampler: PrioritizedContexts | None = None) -> None:
        super().__init__()
        self.run, self.every, self.levels, self.sampler = run, every, levels, sampler
        self.last_save = 0

    def _on_training_start(self) -> None:
        self.last_save = self.num_timesteps

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "level_seed" in info:
                self.levels.add(int(info["level_seed"]))
        if self.every and self.num_timesteps - self.last_save >= self.every:
            self.save()
        return True

    def save(self) -> None:
        if self.sampler is not None:  # the curriculum's scores, taken up again by --resume
            atomic_write_json(self.run / "checkpoints" / PLR_STATE, self.sampler.state())
        save_agent_atomic(self.model, self.run / "checkpoints" / "latest.zip")
        write_levels(self.run, self.levels)
        self.last_save = self.num_timesteps
        logger.info("checkpoint at %d steps: %s", self.num_timesteps, self.run / "checkpoints" / "latest.zip")


def write_levels(run: Path, levels: set[int]) -> None:
    """RUN/levels.json: every real level seed the agent trained on (evaluation checks it is disjoint)."""
    atomic_write_json(run / "levels.json", {"level_seeds": sorted(levels)})


def world_model_record(world_model: str | None) -> dict[str, Any]:
    """What a world-model directory records of its real training data (`levels.json`: `level_seeds`,
    `frames`), or {} when it records nothing."""
    path = Path(world_model or DEFAULT_MODEL_DIR) / "levels.json"
    if not path.exists():
        logger.warning("%s does not exist: the real levels and frames behind the dream are not recorded", path)
        return {}
    return json.loads(path.read_text())


def train_agent(cfg: AgentConfig, run: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train an agent in the dream or the real game, with RUN locked meanwhile; returns RUN/agent.zip.

    RUN holds `agent.zip` (SB3's format), `config.json` (this config, the steps done, the real and
    dreamed frames spent, wall time), `levels.json` (real level seeds behind the training),
    `checkpoints/latest.zip` and TensorBoard logs in `tb/`. `resume=True` continues from the latest
    checkpoint with the same config (ValueError naming the differing fields otherwise)."""
    with DirLock(run):
        return _train_agent(cfg, Path(run), resume, progress)


def train_or_resume(cfg: AgentConfig, run: str | Path) -> Path:
    """RUN/agent.zip of an agent trained with `cfg`: kept if RUN already holds a finished run of the same
    config (one trained before a pipeline or study recorded it, say), resumed from its checkpoint if one was
    killed, trained from scratch otherwise. What `genie pipeline` and `genie study` run for each agent."""
    run = Path(run)
    record = run / "config.json"
    if (run / "agent.zip").exists() and record.exists():
        meta = json.loads(record.read_text())
        saved = asdict(config_from_dict(AgentConfig, meta["config"], str(record)))
        if not resume_mismatches(saved, asdict(cfg), RESUMABLE_CHANGES) and meta["steps_done"] >= cfg.steps:
            logger.info("%s already holds this agent, trained for %d steps", run, meta["steps_done"])
            return run / "agent.zip"
    return train_agent(cfg, run, resume=(run / "checkpoints" / "latest.zip").exists())


def _train_agent(cfg: AgentConfig, run: Path, resume: bool, progress: bool) -> Path:
    config_path, latest = run / "config.json", run / "checkpoints" / "latest.zip"
    env = make_vec_env(cfg)
    previous = 0.0  # wall time of the run before a resume
    behind = world_model_record(cfg.world_model) if cfg.env == "dream" else {}
    levels = set(behind.get("level_seeds", []))
    if resume:
        if not latest.exists():
            raise FileNotFoundError(f"nothing to resume: {latest} does not exist")
        record = json.loads(config_path.read_text())
        saved = asdict(config_from_dict(AgentConfig, record["config"], str(config_path)))
        previous = record.get("wall_s", 0.0)
        diff = resume_mismatches(saved, asdict(cfg), RESUMABLE_CHANGES)
        if diff:
            raise ValueError(f"config differs from the run's in {'; '.join(diff)}: resume with the same settings")
        model = load_agent(latest, cfg.algo, env, cfg.device)
        model.tensorboard_log = str(run / "tb")
        levels |= set(json.loads((run / "levels.json").read_text())["level_seeds"])
    elif latest.exists():
        raise FileExistsError(f"{run} already holds a run: pass --resume to continue it, or another --out")
    else:
        run.mkdir(parents=True, exist_ok=True)
        model = build_algorithm(cfg, env, str(run / "tb"))
    resolved = {
        "train_precision": resolve_train_precision(cfg.train_precision, cfg.device),
        "dream_precision": resolve_precision(cfg.precision, cfg.device) if cfg.env == "dream" else None,
    }
    autocast_features(model.policy, resolved["train_precision"])
    done_before = model.num_timesteps
    sampler, plr_state = env.context_sampler, run / "checkpoints" / PLR_STATE
    if resume and sampler is not None and plr_state.exists():
        sampler.load(json.loads(plr_state.read_text()), str(plr_state))
    book = _Bookkeeping(run, cfg.checkpoint_every, levels, sampler)
    callbacks: list[BaseCallback] = [book]
    if progress:
        callbacks.append(_Progress(cfg.steps, done_before))
    if cfg.real_envs:
        callbacks.append(_RealReturns(cfg.real_envs))
    if sampler is not None:
        callbacks.append(PLRCallback(sampler))
    if cfg.max_minutes:
        callbacks.append(_TimeLimit(cfg.max_minutes))
    if cfg.eval_every:
        callbacks.append(EvalCallback(
            make_eval_env(cfg), n_eval_episodes=cfg.eval_episodes, eval_freq=max(cfg.eval_every // cfg.num_envs, 1),
            log_path=str(run / "eval"), deterministic=False, verbose=0,
        ))  # fmt: skip
    start = time.time()
    _write_config(run, cfg, model.num_timesteps, previous, behind.get("frames"), resolved)
    model.learn(max(cfg.steps - done_before, 0), callback=CallbackList(callbacks), reset_num_timesteps=not resume,
                tb_log_name="agent")  # fmt: skip
    book.save()
    path = save_agent_atomic(model, run / "agent.zip")
    _write_config(run, cfg, model.num_timesteps, previous + time.time() - start, behind.get("frames"), resolved)
    env.close()
    return path


def _write_config(run: Path, cfg: AgentConfig, steps_done: int, wall_s: float, world_model_frames: int | None,
                  resolved: dict[str, str | None]) -> None:  # fmt: skip
    """RUN/config.json: the config, progress, the real and dreamed frames the agent cost, and the `resolved`
    precisions that ran ("auto" made concrete): `train_precision` (the CNN) and `dream_precision` (None for
    the real game)."""
    real = real_steps(cfg, steps_done)  # all of them, or Dyna's real envs
    real_frames = real if cfg.env == "real" else None if world_model_frames is None else world_model_frames + real
    atomic_write_json(run / "config.json", {
        "format_version": AGENT_FORMAT_VERSION, "kind": "agent", "config": asdict(cfg), "steps_done": steps_done,
        "real_frames": real_frames, "dream_frames": steps_done - real, "wall_s": wall_s,
        **resolved,
    })  # fmt: skip
