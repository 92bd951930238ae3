"""Play the dream with the keyboard in a pygame window (`genie play`).

Arrow keys move (combinations such as LEFT+UP jump sideways); W A S D Q E are CoinRun's other action
keys; R restarts from a new real level; TAB shows the real game side by side under the same actions;
ESC quits. Under SDL_VIDEODRIVER=dummy it runs headless (with --max-frames, for tests).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import tyro

from genie_env.data.context import ContextSource
from genie_env.envs.dream import GenieCoinRunEnv
from genie_env.envs.real import ACTION_MEANINGS, ProcgenCoinRunEnv
from genie_env.games import DistributionMode
from genie_env.viz import upscale

from .common import cli_errors, setup_logging


@dataclass(frozen=True)
class PlayArgs:
    """Arguments of `genie play`."""

    world_model: str | None = None
    """world-model directory (default: the model shipped with the package)"""
    seed: int = 0
    """seed of the first level and of the dream's sampling"""
    distribution_mode: DistributionMode = "easy"
    """CoinRun difficulty of the real levels the dreams start from"""
    fps: int = 15
    """frames per second"""
    scale: int = 8
    """window pixels per frame pixel"""
    side_by_side: bool = False
    """start with the real game shown next to the dream (TAB toggles)"""
    max_frames: int = 0
    """stop after this many frames (0 = until ESC or the window is closed)"""


def action_from_keys(pressed: set[str]) -> int:
    """The CoinRun action for a set of pressed key names (arrows, w a s d q e)."""
    for key in ("d", "a", "w", "s", "q", "e"):
        if key in pressed:
            return ACTION_MEANINGS.index(key.upper())
    horizontal = "LEFT" if "left" in pressed else "RIGHT" if "right" in pressed else ""
    vertical = "UP" if "up" in pressed else "DOWN" if "down" in pressed else ""
    name = "+".join(p for p in (horizontal, vertical) if p) or "NOOP"
    return ACTION_MEANINGS.index(name)


class Session:
    """A dream and the real level it started from, stepped together."""

    def __init__(self, args: PlayArgs) -> None:
        self.args = args
        self.real = ProcgenCoinRunEnv(distribution_mode=args.distribution_mode)
        self.level = args.seed
        self.dream: GenieCoinRunEnv | None = None
        self.restart()

    def restart(self) -> None:
        real_frame, _ = self.real.reset(seed=self.level)
        context = ContextSource(real_frame[None, None])
        if self.dream is None:
            self.dream = GenieCoinRunEnv(self.args.world_model, context=context)
        else:
            self.dream.set_context(context)
        self.dream_frame, _ = self.dream.reset(seed=self.level)
        self.real_frame = real_frame
        self.level += 1

    def step(self, action: int) -> None:
        self.dream_frame, _, dream_done, dream_cut, _ = self.dream.step(action)
        self.real_frame, _, real_done, real_cut, _ = self.real.step(action)
        if dream_done or dream_cut:
            self.restart()
        elif real_done or real_cut:
            self.real_frame, _ = self.real.reset(seed=self.level - 1)

    def picture(self, side_by_side: bool) -> np.ndarray:
        frames = [self.dream_frame] + ([self.real_frame] if side_by_side else [])
        return np.concatenate(frames, axis=1)


def play(args: PlayArgs) -> int:
    """Run the play loop; returns the number of frames shown."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    pygame.display.init()  # the window and keyboard only: no audio device needed
    session = Session(args)
    side_by_side, shown = args.side_by_side, 0
    clock = pygame.time.Clock()
    names = {getattr(pygame, f"K_{k.upper()}"): k for k in ("left", "right", "up", "down")}
    names.update({getattr(pygame, f"K_{k}"): k for k in "wasdqe"})
    screen = None
    try:
        while not args.max_frames or shown < args.max_frames:
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                    return shown
                if event.type == pygame.KEYDOWN and event.key == pygame.K_r:
                    session.restart()
                if event.type == pygame.KEYDOWN and event.key == pygame.K_TAB:
                    side_by_side = not side_by_side
            keys = pygame.key.get_pressed()
            session.step(action_from_keys({name for key, name in names.items() if keys[key]}))
            picture = upscale(session.picture(side_by_side), args.scale)
            size = (picture.shape[1], picture.shape[0])
            if screen is None or screen.get_size() != size:
                screen = pygame.display.set_mode(size)
                pygame.display.set_caption("genie play: arrows move, R restart, TAB real game, ESC quit")
            screen.blit(pygame.surfarray.make_surface(picture.transpose(1, 0, 2)), (0, 0))
            pygame.display.flip()
            shown += 1
            clock.tick(args.fps)
    finally:
        pygame.quit()
    return shown


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    args = tyro.cli(PlayArgs, args=argv, prog="genie play", description=__doc__)
    with cli_errors():
        shown = play(args)
    print(f"played {shown} frames")


if __name__ == "__main__":
    main()
