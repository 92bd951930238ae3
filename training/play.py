"""Play the dream with the keyboard in a pygame window (`genie play`).

Arrow keys move (combinations such as LEFT+UP jump sideways); W A S D Q E are CoinRun's other action
keys; R restarts from a new real level; TAB shows the real game side by side under the same actions;
ESC quits. With --latent (a world model trained on latent actions), keys 1..K each take one step
under that latent action. Under SDL_VIDEODRIVER=dummy it runs headless (with --max-frames, for tests).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from genie_env.games import DistributionMode
from genie_env.play.session import action_from_keys
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
    latent: bool = False
    """play a world model conditioned on latent actions (genie train-dynamics --actions latent): keys 1..K
    each take one step under that latent action; no real game beside"""


def play(args: PlayArgs) -> int:
    """Run the play loop; returns the number of frames shown."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    from genie_env.data.context import ContextSource
    from genie_env.play.session import LatentPlaySession, PlaySession
    from genie_env.world_model import DEFAULT_MODEL_DIR, load_world_model

    wm = load_world_model(args.world_model)
    if args.latent:
        contexts = ContextSource.from_file(Path(args.world_model or DEFAULT_MODEL_DIR) / "contexts.npz")
        session = LatentPlaySession(wm, contexts, seed=args.seed)
    else:
        session = PlaySession(wm, args.distribution_mode, level=args.seed, seed=args.seed)
    pygame.display.init()  # the window and keyboard only: no audio device needed
    digits = {getattr(pygame, f"K_{i + 1}"): i for i in range(min(9, session.num_actions))} if args.latent else {}
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
                if args.latent and event.type == pygame.KEYDOWN and event.key in digits:
                    session.step(digits[event.key])  # one step per key press
            if not args.latent:
                keys = pygame.key.get_pressed()
                session.step(action_from_keys({name for key, name in names.items() if keys[key]}))
            picture = upscale(session.picture(side_by_side), args.scale)
            size = (picture.shape[1], picture.shape[0])
            if screen is None or screen.get_size() != size:
                screen = pygame.display.set_mode(size)
                caption = "keys 1..K take a latent action" if args.latent else "arrows move, TAB real game"
                pygame.display.set_caption(f"genie play: {caption}, R restart, ESC quit")
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
