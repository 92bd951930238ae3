"""Speed of `genie serve` for one player: steps/s over the WebSocket (PNG frames included), with and
without the real game beside the dream, and of the bare `PlaySession.step` underneath.

    python benchmarks/serve.py [--world-model DIR] [--precision auto] [--steps 200]

The page asks for its next step only when the last one has arrived, so the WebSocket figure is what a
player gets; the page ticks at 15 steps/s by default. Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from genie_env.play.session import PlaySession  # noqa: E402
from genie_env.play.web import ServeConfig, create_app  # noqa: E402
from genie_env.world_model import load_world_model, resolve_precision  # noqa: E402


@dataclass(frozen=True)
class Args:
    """Settings of the serve benchmark."""

    world_model: str | None = None
    """world-model directory (default: the shipped model)"""
    precision: str = "auto"
    """dream inference precision: fp32, bf16 or auto (bf16 where bf16 is fast), as `genie serve`"""
    steps: int = 200
    """steps timed per setting"""


def websocket_steps_per_s(client: TestClient, steps: int, show_real: bool) -> float:
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()  # hello

        def receive() -> None:
            state = ws.receive_json()
            for _ in range(state["frames"]):
                ws.receive_bytes()

        receive()
        ws.send_text(json.dumps({"type": "settings", "show_real": show_real}))
        receive()
        start = time.perf_counter()
        for i in range(steps):
            ws.send_text(json.dumps({"type": "step", "keys": ["right"] if i % 8 else ["right", "up"]}))
            receive()
        return steps / (time.perf_counter() - start)


def main(args: Args) -> dict:
    wm = load_world_model(args.world_model, "cpu", args.precision)
    session = PlaySession(wm)
    session.step(7)
    start = time.perf_counter()
    for i in range(args.steps):
        session.step(7 if i % 8 else 8)
    bare = args.steps / (time.perf_counter() - start)
    with TestClient(create_app(wm, ServeConfig())) as client:
        ws_real = websocket_steps_per_s(client, args.steps, show_real=True)
        ws_dream = websocket_steps_per_s(client, args.steps, show_real=False)
    return {"benchmark": "serve", "precision": resolve_precision(args.precision, "cpu"), "steps": args.steps,
            "session_steps_per_s": round(bare, 1), "websocket_steps_per_s_with_real": round(ws_real, 1),
            "websocket_steps_per_s_dream_only": round(ws_dream, 1), "machine": machine()}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(main(tyro.cli(Args)), indent=2))
