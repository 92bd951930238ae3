"""The world model as an environment: `GenieProcgen-v0` (the dream of any Procgen game, `game=NAME`) and
`GenieCoinRun-v0` (CoinRun's shipped dream), single and natively batched.

A dream starts from a real context (one or more real frames), then every `step(action)` runs one
dynamics step with the KV cache, decodes the predicted frame and returns the predicted reward and
termination. Spaces are those of `Procgen-v0`, so one policy runs in both unchanged.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from genie_env.data.context import ContextSource
from genie_env.envs.real import vector_seeds
from genie_env.games import (
    ACTION_MEANINGS,
    DEFAULT_GAME,
    ENDS_ON_REWARD,
    FRAME_SHAPE,
    NUM_ACTIONS,
    PROCGEN_GAMES,
    action_space,
    check_action,
    check_actions,
    check_game,
    observation_space,
)
from genie_env.models.dynamics import StepOutput
from genie_env.models.rewards import REWARD_MODES, RewardMode, dream_rewards
from genie_env.world_model import WorldModel, load_world_model, shipped_model_dir

Events = RewardMode
EVENT_MODES: tuple[str, ...] = REWARD_MODES
CPU_CHUNK = 64
"""most dreams a CPU steps in one model call: a bigger batch is stepped as chunks of this many, whose
activations stay in the caches and under glibc's 32 MB mmap ceiling (at 256 envs the MLP's hidden layer
alone is 34 MB, page-faulted in anew at every step). On 2 AVX512-BF16 cores, in bf16, 128 envs stepped in
chunks of 64 ran 18% faster than in one call and 256 envs 16% faster, with steadier step times; chunks of
32 did no better, and at 64 envs gained nothing measurable (the README's dream-env speed). Rows do not
interact, so a chunked step is the same step."""


def _resolve(world_model, game: str | None, procgen: bool, device, precision: str, context, context_frames: int,
             reset_from: str, compile: bool = False):  # fmt: skip
    """(WorldModel, ContextSource) from the env kwargs: `world_model` (a directory, a WorldModel, or for a
    Procgen dream None: the model shipped for `game`) must be of `game` when both are given. A Procgen
    dream (`procgen`) also needs a world model of a Procgen game and its 15 real actions. `compile`:
    `WorldModel.compile` it (in place)."""
    if game is not None and procgen:
        check_game(game)
    if isinstance(world_model, WorldModel):
        wm = world_model
        model_dir = None
    else:
        if world_model is None and not procgen:
            raise ValueError("GenieEnv-v0 needs world_model=DIR (a world model directory, e.g. a pipeline's "
                             "world_model_r2) or a WorldModel")  # fmt: skip
        model_dir = Path(world_model) if world_model is not None else shipped_model_dir(game or DEFAULT_GAME)
        wm = load_world_model(model_dir, device, precision)
    if game is not None and wm.game != game:
        raise ValueError(f"world model {model_dir or '(given)'} is of {wm.game}, not {game}: pass a world model "
                         f"of {game}, or game={wm.game!r}")  # fmt: skip
    if isinstance(context, ContextSource):
        source = context
    elif context is None:
        if model_dir is None:
            raise ValueError("pass context= (a dataset directory, a .npz of contexts or a ContextSource) "
                             "with a WorldModel object")  # fmt: skip
        source = ContextSource.from_file(model_dir / "contexts.npz")
    elif isinstance(context, np.ndarray):
        source = ContextSource(context)
    elif isinstance(context, (list, tuple)):  # several frame datasets (e.g. one per collection round)
        source = ContextSource.from_dataset(list(context), context_frames, reset_from)
    elif Path(context).suffix == ".npz":
        source = ContextSource.from_file(context)
    else:
        source = ContextSource.from_dataset(context, context_frames, reset_from)
    if procgen and wm.game not in PROCGEN_GAMES:
        raise ValueError(f"world model {model_dir or '(given)'} is of {wm.game}, not of a Procgen game: play it "
                         "with GenieEnv-v0")  # fmt: skip
    if procgen and wm.num_actions != NUM_ACTIONS and wm.action_map is None:
        raise ValueError(f"world model {model_dir or '(given)'} is conditioned on {wm.num_actions} latent actions, "
                         f"not Procgen's {NUM_ACTIONS}: GenieProcgen-v0 and GenieCoinRun-v0 play world models "
                         "trained on the real actions (this one was trained with --actions latent; GenieEnv-v0 "
                         "plays it, and `genie map-actions` maps the real actions onto its latent ones)")  # fmt: skip
    if procgen and wm.action_map is not None and len(wm.action_map) != NUM_ACTIONS:
        raise ValueError(f"the action map of world model {model_dir or '(given)'} maps {len(wm.action_map)} real "
                         f"actions, not Procgen's {NUM_ACTIONS}")  # fmt: skip
    if source.context_frames > wm.context_frames:
        raise ValueError(f"contexts of {source.context_frames} frames exceed the model's window of {wm.context_frames}")
    return (wm.compile() if compile else wm), source


def real_action_map(wm: WorldModel, procgen: bool) -> np.ndarray | None:
    """The real -> latent action map a Procgen dream of a latent world model steps through, or None where
    the actions go to the model as they are (a model of real actions, or `GenieEnv-v0`'s latent keys)."""
    return wm.action_map if procgen and wm.num_actions != NUM_ACTIONS else None


def action_meanings(wm: WorldModel, procgen: bool = False) -> tuple[str, ...]:
    """Names of a dream's actions: Procgen's button combos, or numbers for another game's or latent actions."""
    if wm.game in PROCGEN_GAMES and (wm.num_actions == NUM_ACTIONS or real_action_map(wm, procgen) is not None):
        return ACTION_MEANINGS
    return tuple(f"action {i}" for i in range(wm.num_actions))


def _warn_if_too_big(need: int, num: int) -> None:
    """Warn before N dreams' KV cache is allocated if it exceeds the memory this machine has free."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: nothing to compare with
        return
    if need > free:
        warnings.warn(
            f"{num} dreams need {need / 2**30:.1f} GiB of KV cache ({need / num / 2**20:.1f} MiB each) but "
            f"{free / 2**30:.1f} GiB is free: use fewer envs",
            ResourceWarning,
            stacklevel=3,
        )


def _check_entropy_limit(limit: float) -> float:
    if not limit >= 0:
        raise ValueError(f"entropy_limit must be >= 0 (0 = no limit), got {limit}")
    return float(limit)


def _truncated(info: dict[str, np.ndarray], max_steps: int, entropy_limit: float) -> np.ndarray:
    """bool (N,): dreams at their step limit, or (with an entropy limit) whose last frame was dreamed unsure."""
    out = info["dream_step"] >= max_steps
    return out | (info["token_entropy"] > entropy_limit) if entropy_limit > 0 else out


class DreamBatch:
    """N dreams stepped in one batched model call: per-env KV-cache rows, tokens, counters, generators."""

    def __init__(self, wm: WorldModel, source: ContextSource, num: int, steps: int = 1, temperature: float = 0.0,
                 events: str = "threshold", uncertainty_penalty: float = 0.0,
                 action_map: np.ndarray | None = None, track_entropy: bool = False,
                 chunk: int | None = None) -> None:  # fmt: skip
        """`chunk`: most dreams in one model call (default `CPU_CHUNK` on CPU, all of them elsewhere)."""
        if events not in EVENT_MODES:
            raise ValueError(f"unknown events mode {events!r}: use one of {EVENT_MODES}")
        if not uncertainty_penalty >= 0:
            raise ValueError(f"uncertainty_penalty must be >= 0, got {uncertainty_penalty}")
        self.wm, self.source, self.num, self.events = wm, source, num, events
        self.context_sampler: Any = None  # where dreams start: uniform, or a curriculum's (`set_context_sampler`)
        self.context_index = np.zeros(num, np.int64)
        self.uncertainty_penalty = float(uncertainty_penalty)
        self.track_entropy = track_entropy or self.uncertainty_penalty > 0  # info["token_entropy"] every step
        # real -> latent actions, for a latent world model played with the real actions (contexts hold real ones)
        self.action_map = None if action_map is None else torch.as_tensor(action_map, dtype=torch.long)
        self.set_sampling(steps, temperature)
        dyn = wm.dynamics
        _warn_if_too_big(dyn.cache_bytes(num, wm.device, wm.compute_dtype), num)
        self.chunk = chunk or (CPU_CHUNK if wm.device.type == "cpu" else num)
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")
        self.chunks = [slice(a, min(a + self.chunk, num)) for a in range(0, num, self.chunk)]
        self.caches = [dyn.new_cache(c.stop - c.start) for c in self.chunks]  # one per chunk of dreams
        self.prev = torch.zeros(num, dyn.cfg.tokens, dtype=torch.long, device=wm.device)
        self.frames = np.zeros((num, *FRAME_SHAPE), np.uint8)
        self.dream_step = np.zeros(num, np.int64)
        self.generators = [torch.Generator(device=wm.device) for _ in range(num)]
        self.reward_values = dyn.reward_values.cpu().numpy().astype(np.float64)
        # in a game whose only reward is its goal (CoinRun's coin), a predicted reward ends the dream
        self.ends_on_reward = wm.game in ENDS_ON_REWARD

    def set_context_sampler(self, sampler: Any) -> None:
        """Dreams start from the context `sampler.sample(rng)` picks (an index; e.g.
        `genie_env.agents.curriculum.PrioritizedContexts`), or uniformly with None."""
        size = getattr(sampler, "size", len(self.source))
        if sampler is not None and size != len(self.source):
            raise ValueError(f"the context sampler covers {size} contexts, the env has {len(self.source)}")
        self.context_sampler = sampler

    def set_sampling(self, steps: int, temperature: float) -> None:
        """MaskGIT steps per frame and sampling temperature (0 = greedy) of every later step."""
        if isinstance(steps, bool) or int(steps) != steps or steps < 1 or not temperature >= 0:
            raise ValueError(f"sampling needs steps >= 1 and temperature >= 0, got {steps}, {temperature}")
        self.steps, self.temperature = int(steps), float(temperature)

    @torch.no_grad()
    def start(self, i: int, rng: np.random.Generator) -> None:
        """Start dream i from a context drawn with `rng` (by the context sampler, if one is set); its
        sampling generator is seeded from `rng` too."""
        sampler = self.context_sampler
        self.context_index[i] = sampler.sample(rng) if sampler is not None else self.source.sample_index(rng)
        frames, actions = self.source[self.context_index[i]]
        if self.action_map is not None:
            actions = self.action_map[torch.as_tensor(actions, dtype=torch.long)].numpy()
        self.generators[i].manual_seed(int(rng.integers(2**63 - 1)))
        wm, dyn = self.wm, self.wm.dynamics
        tokens = wm.encode(frames[None]).flatten(2)[0]  # (C, S)
        sub = dyn.new_cache(1)
        with wm.autocast():
            dyn.prime(sub, tokens[None], torch.tensor(actions[None], device=wm.device))
        self.caches[i // self.chunk].assign(torch.tensor([i % self.chunk]), sub)
        self.prev[i] = tokens[-1]
        grid = wm.tokenizer.cfg.grid
        self.frames[i] = wm.decode(tokens[-1].view(1, 1, grid, grid))[0, 0]
        self.dream_step[i] = 0

    @torch.no_grad()
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Advance every dream: actions int (N,) -> frames uint8 (N, 64, 64, 3), rewards float32 (N,),
        terminated bool (N,), and the probabilities of a reward and of termination."""
        wm = self.wm
        act = torch.as_tensor(actions, dtype=torch.long)
        act = (self.action_map[act] if self.action_map is not None else act).to(wm.device)
        grid, outs, frames = wm.tokenizer.cfg.grid, [], []
        for c, cache in zip(self.chunks, self.caches):
            gens = self.generators[c] if self.temperature > 0 else None
            with wm.autocast():
                outs.append(wm.dynamics.step(cache, self.prev[c], act[c], self.steps, self.temperature, gens,
                                             entropy=self.track_entropy))  # fmt: skip
                # generated tokens need no range check; the frames stay on the device until all are made
                frames.append(wm.tokenizer.decode_uint8(outs[-1].tokens.view(-1, 1, grid, grid), False)[:, 0])
        out = StepOutput(*(None if parts[0] is None else torch.cat(parts) for parts in zip(*outs)))
        self.prev = out.tokens
        # nothing is read back inside the step: the frames and then every event output come over in one copy each
        self.frames = torch.cat(frames).cpu().numpy()
        parts = [out.reward_prob[:, None], out.termination_prob[:, None], out.reward_probs]
        if self.track_entropy:
            parts.append(out.token_entropy[:, None])
        events = torch.cat([p.float() for p in parts], 1).cpu().numpy()
        reward_p, term_p = events[:, 0].copy(), events[:, 1].copy()
        probs = events[:, 2 : 2 + out.reward_probs.shape[1]].astype(np.float64)
        if self.events == "sample":
            draws = np.array([torch.rand(2, generator=g).numpy() for g in self.generators])
            rewards, terminated = dream_rewards(probs, self.reward_values, "sample", draws[:, 0]), draws[:, 1] < term_p
        else:
            # "expected": the model's expected reward (what world-model agents such as DreamerV3 learn from),
            # a signal wherever a reward is likely, not only where the model is sure of it
            rewards, terminated = dream_rewards(probs, self.reward_values, self.events), term_p >= 0.5
        if self.ends_on_reward:
            rewarded = reward_p >= 0.5 if self.events == "expected" else rewards != 0
            terminated = terminated | rewarded
        self.dream_step += 1
        info = {"termination_prob": term_p, "reward_prob": reward_p, "dream_step": self.dream_step.copy(),
                "context_index": self.context_index.copy()}  # of the episode each step belongs to  # fmt: skip
        if self.track_entropy:
            info["token_entropy"] = events[:, -1].copy()
            # the model's doubt about the frame costs reward (as MOPO's penalty)
            rewards = rewards - self.uncertainty_penalty * info["token_entropy"]
        return self.frames.copy(), rewards.astype(np.float32), terminated, info


class GenieEnv(gym.Env):
    """Any world model's dream, one episode at a time (`GenieEnv-v0`, `world_model=DIR`): of a user's game
    (`genie collect --env-id`), of a Procgen game, or of latent actions. `GenieProcgenEnv` is its Procgen
    form; spaces, rewards and kwargs are the same, with `Discrete(N)` for the model's N actions and no
    shipped default model.

    ## Action space
    `Discrete(15)` for a Procgen world model, as in `Procgen-v0`: procgen's button combos, names in
    `ACTION_MEANINGS`; `Discrete(N)` for a model of a user's game or of N latent actions. `GenieProcgenEnv`
    also plays a model of latent actions with the real 15 when its directory maps them (`action_map.json`,
    `genie map-actions`): each real action steps the latent action it was seen as most often.

    ## Observation space
    `Box(0, 255, (64, 64, 3), uint8)`, channels-last RGB: the decoded dreamed frame.

    ## Rewards
    From the model's reward distribution (over the reward values of its training data), per `events`:
    `"threshold"` gives the likeliest non-zero reward where a reward has probability >= 0.5, else 0;
    `"sample"` draws one; `"expected"` gives its mean (a signal wherever a reward is likely). For CoinRun:
    10 where the coin has probability >= 0.5, 10 on a Bernoulli draw of it, 10 x that probability.

    With `uncertainty_penalty=c > 0`, every reward is lowered by c times the model's mean per-token
    entropy (nats) of the frame it dreamed, so a policy gains nothing from steering into states the model
    is unsure of (MOPO's penalised model, with the predictive entropy standing in for an ensemble's spread).
    Where dying ends the episode (CoinRun), a large penalty also makes dying early pay.

    ## Episode end
    Terminated when the model predicts termination (probability >= 0.5, or a Bernoulli draw with
    `events="sample"`) or, in a game whose only reward ends it (`games.ENDS_ON_REWARD`: CoinRun's coin,
    Maze's cheese, ...), a reward; truncated after `max_episode_steps` (1000 as in Procgen; dream-RL uses
    15-20 steps from real contexts, so the value is bootstrapped), and with `entropy_limit=H > 0` at the
    first frame the model dreamed with a mean per-token entropy above H nats: the dream stops where the
    model stops knowing, and the value is bootstrapped there, with no incentive to end the episode.

    ## Seeding
    `reset(seed=s)` draws a real context (from the model's shipped contexts, a dataset directory or a
    list of them, a `.npz` or an array) and seeds all sampling, so the same seed and actions give the
    same dream.

    ## Info
    `termination_prob`, `reward_prob` (the probability of a non-zero reward: CoinRun's coin), `dream_step`,
    `context_index` (the context the step's episode started from: `set_context_sampler` takes a curriculum
    over them), and with an uncertainty penalty or an entropy limit `token_entropy`.

    ## Kwargs
    `game` (keyword-only: the Procgen game; by default the world model's, CoinRun's with no world model),
    `world_model` (a directory, a `WorldModel`, or None for the model shipped for `game` in
    `genie_env/assets/<game>/`; a world model of another game is refused), `device`, `precision` ("auto",
    the default: bf16 on CPUs with AVX512-BF16 or AMX and on CUDA, fp32 elsewhere; or "fp32", "bf16"),
    `sampling` (`{"steps": K, "temperature": T}`), `context`, `context_frames` and
    `reset_from` ("start" or "any", for a dataset context), `max_episode_steps`, `events`, `render_mode`,
    `uncertainty_penalty` and `entropy_limit` (keyword-only, default 0: off), and `compile` (keyword-only,
    default False: `WorldModel.compile`, which compiles the world model in place at the first step of each
    batch size, about 40 s, and then dreams faster; the README's "`torch.compile`").
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 15}
    procgen = False  # GenieProcgenEnv: a Procgen game's world model, its 15 actions, a shipped default

    def __init__(self, world_model: str | WorldModel | None = None, device: str | None = None, precision: str = "auto",
                 sampling: dict[str, Any] | None = None, context: Any = None, context_frames: int = 1,
                 reset_from: str = "start", max_episode_steps: int = 1000, events: str = "threshold",
                 render_mode: str | None = None, *, game: str | None = None,
                 uncertainty_penalty: float = 0.0, entropy_limit: float = 0.0,
                 compile: bool = False) -> None:  # fmt: skip
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode {render_mode!r}: use one of {self.metadata['render_modes']}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        wm, source = _resolve(world_model, game, self.procgen, device, precision, context, context_frames, reset_from,
                              compile)  # fmt: skip
        self.world_model, self.game = wm, wm.game
        real_map = real_action_map(wm, self.procgen)
        self.entropy_limit = _check_entropy_limit(entropy_limit)
        self.dream = DreamBatch(wm, source, 1, events=events, uncertainty_penalty=uncertainty_penalty,
                                action_map=real_map, track_entropy=entropy_limit > 0, **(sampling or {}))  # fmt: skip
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = action_space(wm.num_actions if real_map is None else len(real_map))
        self.action_meanings = action_meanings(wm, self.procgen)
        self._started = False
        self._window = None

    def set_context(self, source: ContextSource) -> None:
        """Draw the contexts of later resets from `source` (uniformly: a context sampler is dropped)."""
        self.dream.source = source
        self.dream.set_context_sampler(None)

    def set_context_sampler(self, sampler: Any) -> None:
        """Later dreams start from the context `sampler.sample(rng)` picks (see `DreamBatch.set_context_sampler`)."""
        self.dream.set_context_sampler(sampler)

    def set_sampling(self, steps: int, temperature: float) -> None:
        """MaskGIT steps per frame and sampling temperature (0 = greedy) from the next step on."""
        self.dream.set_sampling(steps, temperature)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.dream.start(0, self.np_random)
        self._started = True
        if self.render_mode == "human":
            self.render()
        return self.dream.frames[0].copy(), {"dream_step": 0}

    def step(self, action):
        if not self._started:
            raise RuntimeError("step() called before reset() or after the episode ended: call reset() first")
        frames, rewards, terminated, info = self.dream.step(np.array([check_action(action, self.action_space.n)]))
        truncated = bool(_truncated(info, self.max_episode_steps, self.entropy_limit)[0]) and not terminated[0]
        if terminated[0] or truncated:
            self._started = False
        if self.render_mode == "human":
            self.render()
        step_info = {k: v[0].item() for k, v in info.items()}
        return frames[0], float(rewards[0]), bool(terminated[0]), truncated, step_info

    def render(self):
        if self.render_mode == "rgb_array":
            return self.dream.frames[0].copy()
        if self.render_mode == "human":
            from genie_env.envs.viewer import show_frame

            self._window = show_frame(
                self._window, self.dream.frames[0], f"Genie dream of {self.game}", self.metadata["render_fps"]
            )
        return None

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None


class GenieVectorEnv(VectorEnv):
    """N dreams of any world model stepped in one batched model call (`gymnasium.make_vec("GenieEnv-v0",
    num_envs=N, world_model=DIR)`); `GenieProcgenVectorEnv` is its Procgen form.

    Per env as `GenieEnv`; finished dreams restart from a new context within the same step
    (`AutoresetMode.SAME_STEP`, last frame in `info["final_obs"]`). Seeded with s, env i dreams exactly
    what a single env seeded with s + i dreams for the same actions.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15, "autoreset_mode": AutoresetMode.SAME_STEP}
    procgen = False

    def __init__(self, num_envs: int, world_model: str | WorldModel | None = None, device: str | None = None,
                 precision: str = "auto", sampling: dict[str, Any] | None = None, context: Any = None,
                 context_frames: int = 1, reset_from: str = "start", max_episode_steps: int = 1000,
                 events: str = "threshold", render_mode: str | None = None, *, game: str | None = None,
                 uncertainty_penalty: float = 0.0, entropy_limit: float = 0.0,
                 compile: bool = False) -> None:  # fmt: skip
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unknown render_mode {render_mode!r} for the batched env: use 'rgb_array'")
        wm, source = _resolve(world_model, game, self.procgen, device, precision, context, context_frames, reset_from,
                              compile)  # fmt: skip
        self.world_model, self.game = wm, wm.game
        real_map = real_action_map(wm, self.procgen)
        self.entropy_limit = _check_entropy_limit(entropy_limit)
        self.dream = DreamBatch(wm, source, num_envs, events=events, uncertainty_penalty=uncertainty_penalty,
                                action_map=real_map, track_entropy=entropy_limit > 0, **(sampling or {}))  # fmt: skip
        self.num_envs, self.max_episode_steps, self.render_mode = num_envs, max_episode_steps, render_mode
        self.single_observation_space = observation_space()
        self.single_action_space = action_space(wm.num_actions if real_map is None else len(real_map))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.action_meanings = action_meanings(wm, self.procgen)
        self._rngs: list[np.random.Generator] | None = None

    def set_context_sampler(self, sampler: Any) -> None:
        """Later dreams start from the context `sampler.sample(rng)` picks (see `DreamBatch.set_context_sampler`)."""
        self.dream.set_context_sampler(sampler)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        self._rngs = [seeding.np_random(s)[0] for s in vector_seeds(seed, self.num_envs)]
        for i, rng in enumerate(self._rngs):
            self.dream.start(i, rng)
        return self.dream.frames.copy(), {"dream_step": self.dream.dream_step.copy()}

    def step(self, actions):
        if self._rngs is None:
            raise RuntimeError("step() called before reset(): call reset() first")
        frames, rewards, terminated, info = self.dream.step(
            check_actions(actions, self.num_envs, self.single_action_space.n)
        )
        truncated = _truncated(info, self.max_episode_steps, self.entropy_limit) & ~terminated
        done = terminated | truncated
        if done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = frames[i].copy()
                self.dream.start(i, self._rngs[i])
            info["final_obs"], info["_final_obs"] = final_obs, done.copy()
            frames = self.dream.frames.copy()
        return frames, rewards, terminated, truncated, info

    def render(self):
        return tuple(self.dream.frames.copy()) if self.render_mode == "rgb_array" else None


class GenieProcgenEnv(GenieEnv):
    """A Procgen game dreamed by a world model of it (`GenieProcgen-v0`): `GenieEnv` that needs a world
    model of a Procgen game and its 15 real actions, and by default loads the one shipped for `game`."""

    procgen = True


class GenieProcgenVectorEnv(GenieVectorEnv):
    """N dreams of a Procgen game in one batched call (`gymnasium.make_vec("GenieProcgen-v0", num_envs=N,
    game=NAME)`): `GenieVectorEnv` with the checks and default of `GenieProcgenEnv`."""

    procgen = True


class GenieCoinRunEnv(GenieProcgenEnv):
    """CoinRun dreamed by the world model (`GenieCoinRun-v0`): `GenieProcgenEnv` with the game fixed to
    CoinRun, loading the shipped CoinRun model by default (see `GenieProcgenEnv` for spaces, rewards and kwargs)."""

    def __init__(self, world_model: str | WorldModel | None = None, device: str | None = None, precision: str = "auto",
                 sampling: dict[str, Any] | None = None, context: Any = None, context_frames: int = 1,
                 reset_from: str = "start", max_episode_steps: int = 1000, events: str = "threshold",
                 render_mode: str | None = None, *, uncertainty_penalty: float = 0.0,
                 entropy_limit: float = 0.0, compile: bool = False) -> None:  # fmt: skip
        super().__init__(world_model, device, precision, sampling, context, context_frames, reset_from,
                         max_episode_steps, events, render_mode, game="coinrun",
                         uncertainty_penalty=uncertainty_penalty, entropy_limit=entropy_limit,
                         compile=compile)  # fmt: skip


class GenieCoinRunVectorEnv(GenieProcgenVectorEnv):
    """N CoinRun dreams in one batched call (`gymnasium.make_vec("GenieCoinRun-v0", num_envs=N)`):
    `GenieProcgenVectorEnv` with the game fixed to CoinRun."""

    def __init__(self, num_envs: int, world_model: str | WorldModel | None = None, device: str | None = None,
                 precision: str = "auto", sampling: dict[str, Any] | None = None, context: Any = None,
                 context_frames: int = 1, reset_from: str = "start", max_episode_steps: int = 1000,
                 events: str = "threshold", render_mode: str | None = None, *,
                 uncertainty_penalty: float = 0.0, entropy_limit: float = 0.0,
                 compile: bool = False) -> None:  # fmt: skip
        super().__init__(num_envs, world_model, device, precision, sampling, context, context_frames, reset_from,
                         max_episode_steps, events, render_mode, game="coinrun",
                         uncertainty_penalty=uncertainty_penalty, entropy_limit=entropy_limit,
                         compile=compile)  # fmt: skip
