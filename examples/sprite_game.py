"""A game of your own, for the README's walkthrough: a sprite walks to a target.

The 96x72 screen (not 64x64 and not square, as a real game's often is) shows a grey room, a green
sprite and a red target. The sprite moves one 8-pixel cell a step (`Discrete(5)`: stay, up, down, left,
right); reaching the target scores +1 and puts a new target elsewhere, and every step costs -0.01. An
episode ends after 3 targets (terminated) or 200 steps (truncated, gymnasium's TimeLimit).

Importing the module registers `SpriteGame-v0`, so from this directory

    genie collect --env-id sprite_game:SpriteGame-v0 --out runs/sprite_data --frames 20000

collects it (genie-env imports `sprite_game` from the working directory), and `python sprite_game.py`
learns it end to end with the tiny pipeline and dreams it in `GenieEnv-v0`.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces

CELL, COLS, ROWS = 8, 12, 9
MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))  # stay, up, down, left, right


class SpriteGame(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, targets: int = 3, render_mode: str | None = None) -> None:
        self.targets, self.render_mode = targets, render_mode
        self.observation_space = spaces.Box(0, 255, (ROWS * CELL, COLS * CELL, 3), np.uint8)
        self.action_space = spaces.Discrete(len(MOVES))

    def _cell(self) -> tuple[int, int]:
        return int(self.np_random.integers(ROWS)), int(self.np_random.integers(COLS))

    def _frame(self) -> np.ndarray:
        frame = np.full(self.observation_space.shape, 90, np.uint8)
        for (r, c), colour in ((self.target, (220, 40, 40)), (self.sprite, (40, 200, 60))):
            frame[r * CELL + 1 : (r + 1) * CELL - 1, c * CELL + 1 : (c + 1) * CELL - 1] = colour
        return frame

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.sprite, self.target, self.left = self._cell(), self._cell(), self.targets
        while self.target == self.sprite:
            self.target = self._cell()
        return self._frame(), {}

    def step(self, action):
        dr, dc = MOVES[int(action)]
        self.sprite = (min(max(self.sprite[0] + dr, 0), ROWS - 1), min(max(self.sprite[1] + dc, 0), COLS - 1))
        reward = -0.01
        if self.sprite == self.target:
            reward, self.left = 1.0, self.left - 1
            while self.target == self.sprite:
                self.target = self._cell()
        return self._frame(), reward, self.left == 0, False, {}

    def render(self):
        return self._frame() if self.render_mode == "rgb_array" else None


gymnasium.register(id="SpriteGame-v0", entry_point=SpriteGame, max_episode_steps=200)


def main(out: str = "runs/sprite", preset: str = "tiny") -> gymnasium.Env:
    """Learn the game with `genie pipeline --env-id sprite_game:SpriteGame-v0` and return its dream."""
    from genie_env.cli import pipeline  # importing genie_env registers GenieEnv-v0

    pipeline.main(["--preset", preset, "--env-id", "sprite_game:SpriteGame-v0", "--out", out])
    return gymnasium.make("GenieEnv-v0", world_model=f"{out}/world_model_r2")


if __name__ == "__main__":
    dream = main()
    frame, _ = dream.reset(seed=0)
    print("dreamed frame", frame.shape, "actions", dream.action_space)
