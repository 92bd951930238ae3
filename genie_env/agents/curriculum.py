"""A curriculum over where dreams start: prioritised level replay (Jiang et al. 2021, "Prioritized Level
Replay"; iMac applies it to imagined starts) over a dream env's real contexts (`--start-curriculum plr`).

Each context's score is the mean absolute GAE advantage of the last dream episode that started from it
(how much the agent still had to learn there). Dreams start from an unseen context with probability
1 - seen / N (so every context is tried, in random order), else from a seen one drawn with probability

    (1 - staleness) * h_i / sum(h) + staleness * (c - c_i) / sum(c - c_j),   h_i = (1 / rank_i) ^ (1 / temperature)

where rank 1 is the highest score, c the number of episodes started so far and c_i when context i last
started one (stale scores are refreshed). `PLRCallback` scores the episodes of every PPO rollout.
A training run saves the scores with every checkpoint (RUN/checkpoints/plr.json) and a resumed run
takes them up again.
"""

from __future__ import annotations

import numpy as np

from genie_env._compat import import_gym_quietly

import_gym_quietly()
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402


class PrioritizedContexts:
    """PLR's sampler over `size` contexts: `sample(rng)` picks where a dream starts, `update(i, score)`
    records what its episode taught (see the module docstring)."""

    def __init__(self, size: int, temperature: float = 0.1, staleness: float = 0.1) -> None:
        if size < 1 or not temperature > 0 or not 0.0 <= staleness <= 1.0:
            raise ValueError(f"PLR needs >= 1 context, temperature > 0 and 0 <= staleness <= 1, got {size}, "
                             f"{temperature}, {staleness}")  # fmt: skip
        self.size, self.temperature, self.staleness = size, float(temperature), float(staleness)
        self.scores = np.zeros(size)
        self.seen = np.zeros(size, bool)
        self.last_start = np.zeros(size, np.int64)
        self.starts = 0

    def probabilities(self) -> np.ndarray:
        """The replay distribution over the seen contexts (zero for the unseen)."""
        p = np.zeros(self.size)
        seen = np.flatnonzero(self.seen)
        if not len(seen):
            return p
        ranks = np.empty(len(seen))
        ranks[np.argsort(-self.scores[seen], kind="stable")] = np.arange(1, len(seen) + 1)
        h = (1.0 / ranks) ** (1.0 / self.temperature)
        age = (self.starts - self.last_start[seen]).astype(np.float64)
        stale = age / age.sum() if age.sum() > 0 else np.full(len(seen), 1.0 / len(seen))
        p[seen] = (1 - self.staleness) * h / h.sum() + self.staleness * stale
        return p

    def sample(self, rng: np.random.Generator) -> int:
        """The context the next dream starts from."""
        unseen = np.flatnonzero(~self.seen)
        if len(unseen) and rng.random() >= (self.size - len(unseen)) / self.size:
            i = int(unseen[rng.integers(len(unseen))])
        else:
            i = int(rng.choice(self.size, p=self.probabilities()))
        self.starts += 1
        self.last_start[i] = self.starts
        return i

    def update(self, index: int, score: float) -> None:
        """Context `index`'s episode scored `score` (its mean absolute advantage)."""
        self.scores[index], self.seen[index] = float(score), True

    def state(self) -> dict:
        """Everything a resumed run needs, as JSON: the scores, which contexts were seen, and when each
        last started a dream."""
        return {"size": self.size, "scores": self.scores.tolist(), "seen": np.flatnonzero(self.seen).tolist(),
                "last_start": self.last_start.tolist(), "starts": self.starts}  # fmt: skip

    def load(self, state: dict, where: str = "the PLR state") -> None:
        """Take up a `state()` again (ValueError naming `where` if it is of another number of contexts)."""
        if state.get("size") != self.size or len(state.get("scores", ())) != self.size:
            raise ValueError(f"{where} scores {state.get('size')} contexts, the dream env has {self.size}")
        self.scores = np.asarray(state["scores"], np.float64)
        self.seen = np.zeros(self.size, bool)
        self.seen[np.asarray(state["seen"], np.int64)] = True
        self.last_start = np.asarray(state["last_start"], np.int64)
        self.starts = int(state["starts"])


def episode_scores(advantages: np.ndarray, contexts: np.ndarray, dones: np.ndarray) -> list[tuple[int, float]]:
    """(context, mean |advantage|) of every episode segment in a rollout: advantages float (T, N), contexts
    int (T, N) (the context each step's episode started from; < 0 for envs that do not dream, Dyna's real
    ones), dones bool (T, N) (the episode ended at that step). A segment cut by the rollout's end counts too."""
    out = []
    steps, envs = advantages.shape
    for e in range(envs):
        start = 0
        for t in range(steps):
            if dones[t, e] or t == steps - 1 or contexts[t + 1, e] != contexts[t, e]:
                if contexts[t, e] >= 0:
                    out.append((int(contexts[t, e]), float(np.abs(advantages[start : t + 1, e]).mean())))
                start = t + 1
    return out


class PLRCallback(BaseCallback):
    """Scores every dream episode of each PPO rollout into `sampler` (`PrioritizedContexts`), from the
    rollout buffer's advantages and the `context_index` the dream env reports for each step. Logs how many
    contexts have been seen and the mean score to TensorBoard (`plr/`)."""

    def __init__(self, sampler: PrioritizedContexts) -> None:
        super().__init__()
        self.sampler = sampler
        self.contexts: list[np.ndarray] = []
        self.dones: list[np.ndarray] = []

    def _on_step(self) -> bool:
        self.contexts.append(np.array([info.get("context_index", -1) for info in self.locals["infos"]]))
        self.dones.append(np.asarray(self.locals["dones"], bool))
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        advantages = np.asarray(buffer.advantages)
        steps = len(self.contexts)
        if steps != advantages.shape[0]:  # a rollout cut short (e.g. --max-minutes): nothing to score
            self.contexts, self.dones = [], []
            return
        for index, score in episode_scores(advantages, np.stack(self.contexts), np.stack(self.dones)):
            self.sampler.update(index, score)
        self.contexts, self.dones = [], []
        self.logger.record("plr/seen_fraction", float(self.sampler.seen.mean()))
        self.logger.record("plr/mean_score", float(self.sampler.scores[self.sampler.seen].mean()))
