"""One player's dream: the world model stepped under a human's (or an agent's) actions, with the real
level it started from stepped beside it under the same actions.

Both front ends drive this class: `genie play` (a pygame window) and `genie serve` (a web page).

    session = PlaySession(load_world_model())          # the shipped model
    report = session.step(action_from_keys({"right"}))  # one dream step and one real step
    report.coin_prob, report.psnr                        # the model's coin probability, dream-to-real PSNR

A dream starts from the first frame of real level L, and the real game plays level L beside it, so the
PSNR between the two frames says how far the dream has drifted from the game under the same actions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from genie_env.data.context import ContextSource
from genie_env.envs.dream import DreamBatch, GenieCoinRunEnv
from genie_env.envs.real import ACTION_MEANINGS, ProcgenCoinRunEnv
from genie_env.games import DistributionMode, check_action
from genie_env.metrics import psnr_from_mse
from genie_env.world_model import WorldModel

KEYS = ("left", "right", "up", "down", "w", "a", "s", "d", "q", "e")
"""the key names a player may hold: arrows (combinations such as left+up jump sideways) and CoinRun's
other action keys"""
MAX_LEVEL = 2**31 - 1
"""the largest real level seed"""
MAX_RECORDED = 1000
"""frames kept for the episode GIF (CoinRun's longest episode); later ones are dropped"""
MAX_MASKGIT_STEPS = 32
"""the most MaskGIT steps per frame a player may ask for"""
MAX_TEMPERATURE = 2.0
"""the highest sampling temperature a player may ask for"""


def action_from_keys(pressed: set[str] | list[str] | tuple[str, ...]) -> int:
    """The CoinRun action for a set of held key names (see `KEYS`); ValueError naming an unknown key."""
    pressed = set(pressed)
    if unknown := sorted(pressed - set(KEYS)):
        raise ValueError(f"unknown key {unknown[0]!r}: use {', '.join(KEYS)}")
    for key in ("d", "a", "w", "s", "q", "e"):
        if key in pressed:
            return ACTION_MEANINGS.index(key.upper())
    horizontal = "LEFT" if "left" in pressed else "RIGHT" if "right" in pressed else ""
    vertical = "UP" if "up" in pressed else "DOWN" if "down" in pressed else ""
    return ACTION_MEANINGS.index("+".join(p for p in (horizontal, vertical) if p) or "NOOP")


class AgentPlayer:
    """A saved SB3 agent choosing actions from dream frames, sampled from its policy with the session's
    own generator (so sessions sharing one loaded agent do not share randomness)."""

    def __init__(self, model, name: str = "agent") -> None:
        self.model, self.name = model, name

    def probs(self, frame: np.ndarray) -> np.ndarray:
        import torch

        policy = self.model.policy
        with torch.no_grad():
            obs = policy.obs_to_tensor(frame[None])[0]
            return policy.get_distribution(obs).distribution.probs[0].double().cpu().numpy()

    def act(self, frame: np.ndarray, rng: np.random.Generator) -> int:
        p = self.probs(frame)
        return int(rng.choice(len(p), p=p / p.sum()))


@dataclass(frozen=True)
class StepReport:
    """What one step did: the action and who chose it, the model's event probabilities, the dream's
    reward and end, the real game's, and the PSNR (dB) of the dream frame against the real one."""

    step: int
    level: int
    action: int
    action_name: str
    by: str
    """"human" or "agent" """
    coin_prob: float
    termination_prob: float
    reward: float
    dream_return: float
    dream_ended: bool
    real_reward: float
    real_return: float
    real_ended: bool
    psnr: float | None
    """dream frame against the real frame (None once the real episode has ended)"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PlaySession:
    """A dream and the real level it started from, stepped together; records the episode for a GIF.

    When the dream ends (coin or predicted termination) the session waits on its last frame: the next
    `step` starts the next level. When the real episode ends first, the real game stays on its last
    frame (and the PSNR readout stops) while the dream goes on.
    """

    def __init__(self, world_model: WorldModel, distribution_mode: DistributionMode = "easy", level: int = 0,
                 seed: int = 0, steps: int | None = None, temperature: float | None = None) -> None:  # fmt: skip
        self.real = ProcgenCoinRunEnv(distribution_mode=distribution_mode)
        frame, _ = self.real.reset(seed=check_level(level))
        sampling = {"steps": steps or 1, "temperature": temperature or 0.0}
        self.dream = GenieCoinRunEnv(world_model, context=ContextSource(frame[None, None]), sampling=sampling)
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.agent: AgentPlayer | None = None
        self._start(level, frame)

    # ------------------------------------------------------------------ state
    @property
    def sampling(self) -> dict[str, float]:
        return {"maskgit_steps": self.dream.dream.steps, "temperature": self.dream.dream.temperature}

    def set_sampling(self, maskgit_steps: int | None = None, temperature: float | None = None) -> None:
        """Change MaskGIT steps (1..32) and temperature (0..2) from the next step on; ValueError if out of range."""
        steps = self.dream.dream.steps if maskgit_steps is None else maskgit_steps
        temp = self.dream.dream.temperature if temperature is None else temperature
        if not 1 <= steps <= MAX_MASKGIT_STEPS or not 0 <= temp <= MAX_TEMPERATURE:
            raise ValueError(f"need 1 <= maskgit_steps <= {MAX_MASKGIT_STEPS} and 0 <= temperature <= "
                             f"{MAX_TEMPERATURE}, got {steps}, {temp}")  # fmt: skip
        self.dream.set_sampling(steps, temp)

    def restart(self, level: int | None = None) -> None:
        """Start a new dream from the first frame of real level `level` (default: the next level)."""
        level = self.level + 1 if level is None else check_level(level)
        frame, _ = self.real.reset(seed=level)
        self.dream.set_context(ContextSource(frame[None, None]))
        self._start(level, frame)

    def _start(self, level: int, real_frame: np.ndarray) -> None:
        self.level = level
        self.dream_frame, _ = self.dream.reset(seed=int(self.rng.integers(MAX_LEVEL)))
        self.real_frame = real_frame
        self.step_count, self.dream_return, self.real_return = 0, 0.0, 0.0
        self.dream_ended = self.real_ended = False
        self.recorded: list[tuple[np.ndarray, np.ndarray]] = [(self.dream_frame, self.real_frame)]
        self.last: StepReport | None = None

    # ------------------------------------------------------------------ stepping
    def step(self, action: int | None = None) -> StepReport:
        """One step of the dream and of the real game: `action` (0..14), or None for the agent's choice
        (NOOP when no agent plays). After the dream has ended, starts the next level first."""
        if self.dream_ended:
            self.restart()
        by = "human"
        if action is None and self.agent is not None:
            action, by = self.agent.act(self.dream_frame, self.rng), "agent"
        action = 0 if action is None else check_action(action)
        self.dream_frame, reward, terminated, truncated, info = self.dream.step(action)
        self.dream_return += reward
        self.dream_ended = terminated or truncated
        real_reward = 0.0
        if not self.real_ended:
            self.real_frame, real_reward, done, cut, _ = self.real.step(action)
            self.real_return += real_reward
            self.real_ended = done or cut
        self.step_count += 1
        if len(self.recorded) < MAX_RECORDED:
            self.recorded.append((self.dream_frame, self.real_frame))
        self.last = StepReport(
            step=self.step_count, level=self.level, action=action, action_name=ACTION_MEANINGS[action], by=by,
            coin_prob=float(info["reward_prob"]), termination_prob=float(info["termination_prob"]),
            reward=float(reward), dream_return=self.dream_return, dream_ended=self.dream_ended,
            real_reward=float(real_reward), real_return=self.real_return, real_ended=self.real_ended,
            psnr=None if self.real_ended else frame_psnr(self.dream_frame, self.real_frame),
        )  # fmt: skip
        return self.last

    def picture(self, side_by_side: bool) -> np.ndarray:
        """The dream frame, with the real one to its right when `side_by_side`."""
        return np.concatenate([self.dream_frame] + ([self.real_frame] if side_by_side else []), axis=1)

    def episode(self, side_by_side: bool) -> np.ndarray:
        """The episode so far (from its first frame, at most `MAX_RECORDED`) as frames uint8 (T, 64, W, 3)."""
        return np.stack([np.concatenate([d] + ([r] if side_by_side else []), axis=1) for d, r in self.recorded])

    def close(self) -> None:
        self.real.close()
        self.dream.close()


class LatentPlaySession:
    """A dream of a world model conditioned on latent actions (`genie train-dynamics --actions latent`),
    played one latent action at a time (keys 1..K in `genie play --latent`). There is no real game beside
    it: the real game takes real actions. A dream starts from one of `contexts`; when it ends, the next
    step starts another."""

    def __init__(self, world_model: WorldModel, contexts: ContextSource, seed: int = 0) -> None:
        self.num_actions = world_model.dynamics.cfg.num_actions
        self.dream = DreamBatch(world_model, contexts, 1)
        self.rng = np.random.default_rng(seed)
        self.restart()

    def restart(self) -> None:
        self.dream.start(0, self.rng)
        self.frame = self.dream.frames[0].copy()
        self.step_count, self.ended = 0, False

    def step(self, action: int) -> dict[str, Any]:
        """One dream step under latent action `action` (0..K-1); ValueError naming K otherwise."""
        k = self.num_actions
        if isinstance(action, bool) or not isinstance(action, (int, np.integer)) or not 0 <= action < k:
            raise ValueError(f"latent action {action!r} out of range: this world model has {k} (0..{k - 1})")
        if self.ended:
            self.restart()
        frames, _, terminated, info = self.dream.step(np.array([action]))
        self.frame, self.ended = frames[0], bool(terminated[0])
        self.step_count += 1
        return {
            "step": self.step_count,
            "action": int(action),
            "ended": self.ended,
            "coin_prob": float(info["reward_prob"][0]),
            "termination_prob": float(info["termination_prob"][0]),
        }

    def picture(self, side_by_side: bool = False) -> np.ndarray:
        return self.frame


def frame_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 frames, on [0, 1] pixel values."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2) / 255.0**2)
    return psnr_from_mse(mse)


def check_level(level: Any) -> int:
    """`level` as a real level seed (0 .. 2**31 - 1); ValueError otherwise."""
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be an integer in 0..{MAX_LEVEL}, got {level!r}")
    return int(level)
