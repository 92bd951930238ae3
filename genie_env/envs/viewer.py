"""A minimal pygame window for `render_mode="human"` (imported only when a window is asked for)."""

from __future__ import annotations

import numpy as np


class FrameWindow:
    """A resizable pygame window showing uint8 (H, W, 3) frames scaled up by `scale`."""

    def __init__(self, title: str, fps: int, scale: int = 8) -> None:
        try:
            import pygame
        except ImportError as e:  # pragma: no cover - pygame is a dependency
            raise RuntimeError("render_mode='human' needs pygame: pip install pygame") from e
        self._pg = pygame
        pygame.display.init()  # the window only: no audio device needed
        self._scale = scale
        self._fps = fps
        self._title = title
        self._screen = None
        self._clock = pygame.time.Clock()

    def show(self, frame: np.ndarray) -> None:
        """Draw one frame (uint8 (H, W, 3)) and keep the window responsive."""
        pg = self._pg
        h, w = frame.shape[:2]
        size = (w * self._scale, h * self._scale)
        if self._screen is None:
            try:
                self._screen = pg.display.set_mode(size)
            except pg.error as e:
                raise RuntimeError(f"render_mode='human' needs a display ({e}); use render_mode='rgb_array'") from e
            pg.display.set_caption(self._title)
        surface = pg.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        self._screen.blit(pg.transform.scale(surface, size), (0, 0))
        pg.event.pump()
        pg.display.flip()
        self._clock.tick(self._fps)

    def close(self) -> None:
        self._pg.display.quit()


def show_frame(window: FrameWindow | None, frame: np.ndarray, title: str, fps: int) -> FrameWindow:
    """Show `frame` in `window`, creating the window on first use; returns the window."""
    window = window or FrameWindow(title, fps)
    window.show(frame)
    return window
