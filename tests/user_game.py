"""A small Gymnasium game of the tests' own, for the user-game pipeline: catch falling balls.

The screen is a `width` x 8 grid drawn 5 px a cell (so 40 px high and 5 * width wide: not 64x64 and not
square), a paddle on the bottom row moves left, stays or moves right (`Discrete(3)`), and a ball falls one
row a step from a random column. A catch scores +1, a miss -1; the episode terminates after `balls` balls
and is truncated at 100 steps (gymnasium's TimeLimit). Importing the module registers `CatchTest-v0`.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces

CELL, ROWS = 5, 8


class CatchTest(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(self, width: int = 8, balls: int = 3) -> None:
        self.width, self.balls = width, balls
        self.observation_space = spaces.Box(0, 255, (ROWS * CELL, width * CELL, 3), np.uint8)
        self.action_space = spaces.Discrete(3)

    def _frame(self) -> np.ndarray:
        frame = np.zeros(self.observation_space.shape, np.uint8)
        frame[..., 2] = 40  # a dark blue sky
        r, c = self.ball
        frame[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = (250, 220, 0)
        frame[(ROWS - 1) * CELL :, self.paddle * CELL : (self.paddle + 1) * CELL] = (220, 60, 60)
        return frame

    def _new_ball(self) -> None:
        self.ball = (0, int(self.np_random.integers(self.width)))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.paddle, self.left = self.width // 2, self.balls
        self._new_ball()
        return self._frame(), {}

    def step(self, action):
        self.paddle = int(np.clip(self.paddle + int(action) - 1, 0, self.width - 1))
        r, c = self.ball
        reward, terminated = 0.0, False
        if r + 1 == ROWS - 1:  # the ball reaches the paddle's row
            reward = 1.0 if c == self.paddle else -1.0
            self.left -= 1
            terminated = self.left == 0
            self._new_ball()
        else:
            self.ball = (r + 1, c)
        return self._frame(), reward, terminated, False, {}


gymnasium.register(id="CatchTest-v0", entry_point=CatchTest, max_episode_steps=100)
