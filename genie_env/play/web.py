"""The web page of `genie serve`: FastAPI serving one page and one WebSocket per player.

FastAPI (on Starlette and uvicorn) rather than Gradio: the page is a keyboard loop that needs one small
binary frame per step over a WebSocket, which Starlette gives directly; Gradio's component model
round-trips every update through its event queue and brings a much larger dependency tree.

Protocol, over `WS /ws` (every message from the page is checked against the models below; anything else
gets `{"type": "error", "message": ...}` back and the session goes on):

    page -> server  {"type": "step", "keys": ["right", "up"]}      one step under the held keys
                    {"type": "step", "action": 3}                  one step under an action index
                    {"type": "step"}                               the agent's step (NOOP with no agent)
                    {"type": "reset", "level": 42}                 a new dream from real level 42 (null: next)
                    {"type": "settings", "temperature": 0.5, "maskgit_steps": 4, "show_real": true,
                     "agent": "shipped"}                           any subset; "agent": null hands back control
    server -> page  {"type": "hello", "session": ID, ...}          once, with the agents, keys and limits
                    {"type": "state", ...}                         after every message that changes the session
                    binary b"D" + PNG (the dream frame), b"R" + PNG (the real frame, when shown)
                    {"type": "error", "message": ...}

A step with keys or an action while an agent plays hands control back to the human (take-over).
`GET /session/ID/episode.gif` downloads the episode so far. Past `max_sessions` players a new page gets
an error message and its socket is closed (code 1013, try again later); a page closed or idle for longer
than `idle_seconds` frees its session.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from genie_env.games import DistributionMode
from genie_env.play.session import (
    KEYS,
    MAX_LEVEL,
    MAX_MASKGIT_STEPS,
    MAX_TEMPERATURE,
    AgentPlayer,
    PlaySession,
    action_from_keys,
)
from genie_env.viz import gif_bytes, png_bytes
from genie_env.world_model import WorldModel

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MAX_MESSAGE_BYTES = 4096
"""longest message the page may send; longer ones are refused unread"""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Step(_Message):
    type: Literal["step"]
    keys: list[Literal[KEYS]] | None = Field(default=None, max_length=len(KEYS))  # type: ignore[valid-type]
    action: Annotated[int, Field(ge=0, le=14)] | None = None


class Reset(_Message):
    type: Literal["reset"]
    level: Annotated[int, Field(ge=0, le=MAX_LEVEL)] | None = None


class Settings(_Message):
    type: Literal["settings"]
    temperature: Annotated[float, Field(ge=0.0, le=MAX_TEMPERATURE)] | None = None
    maskgit_steps: Annotated[int, Field(ge=1, le=MAX_MASKGIT_STEPS)] | None = None
    show_real: bool | None = None
    agent: str | None = None
    """an offered agent's name, or null to hand control back (only when the message has the field)"""


MESSAGE = TypeAdapter(Annotated[Step | Reset | Settings, Field(discriminator="type")])


def parse_message(text: str | bytes) -> Step | Reset | Settings:
    """The page's message as one of the models above; ValueError with a short reason otherwise."""
    if isinstance(text, bytes):
        raise ValueError("messages must be JSON text, not binary")
    if len(text) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(text)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        msg = MESSAGE.validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise ValueError(f"bad message ({where}: {first['msg']})") from None
    if isinstance(msg, Step) and msg.keys is not None and msg.action is not None:
        raise ValueError("bad message (step: give keys or action, not both)")
    return msg


@dataclass
class ServeConfig:
    """What the server offers; chosen at start, never by the page."""

    distribution_mode: DistributionMode = "easy"
    max_sessions: int = 4
    idle_seconds: float = 600.0
    png_compression: int = 1
    gif_fps: int = 15
    agents: dict[str, Any] = field(default_factory=dict)
    """name -> loaded SB3 model"""


@dataclass
class Player:
    session: PlaySession
    show_real: bool = True
    last_seen: float = field(default_factory=time.monotonic)


def _finite(x: float | None) -> float | str | None:
    return "inf" if x is not None and math.isinf(x) else x


class Server:
    """The sessions of one server: created per WebSocket, freed when it closes, bounded in number."""

    def __init__(self, world_model: WorldModel, config: ServeConfig) -> None:
        self.world_model, self.config = world_model, config
        self.players: dict[str, Player] = {}
        self.compute = asyncio.Lock()  # one model step at a time: 2 cores gain nothing from two at once
        self.next_level = 0

    # ------------------------------------------------------------------ sessions
    def evict_idle(self) -> None:
        now = time.monotonic()
        for sid in [s for s, p in self.players.items() if now - p.last_seen > self.config.idle_seconds]:
            logger.info("session %s idle for %.0f s: freed", sid, now - self.players[sid].last_seen)
            self.free(sid)

    def open(self) -> str | None:
        """A new session's id, or None when the server is full."""
        self.evict_idle()
        if len(self.players) >= self.config.max_sessions:
            return None
        sid = secrets.token_urlsafe(12)
        level, self.next_level = self.next_level, self.next_level + 1
        self.players[sid] = Player(PlaySession(self.world_model, self.config.distribution_mode, level=level,
                                               seed=secrets.randbits(32)))  # fmt: skip
        return sid

    def free(self, sid: str) -> None:
        player = self.players.pop(sid, None)
        if player is not None:
            player.session.close()

    # ------------------------------------------------------------------ messages
    def hello(self, sid: str) -> dict[str, Any]:
        c = self.config
        return {"type": "hello", "session": sid, "keys": list(KEYS), "agents": sorted(c.agents),
                "limits": {"max_level": MAX_LEVEL, "maskgit_steps": [1, MAX_MASKGIT_STEPS],
                           "temperature": [0.0, MAX_TEMPERATURE], "max_sessions": c.max_sessions,
                           "idle_seconds": c.idle_seconds}}  # fmt: skip

    def state(self, sid: str) -> dict[str, Any]:
        p = self.players[sid]
        s = p.session
        report = s.last.to_dict() if s.last is not None else None
        if report is not None:
            report["psnr"] = _finite(report["psnr"])
        return {"type": "state", "level": s.level, "step": s.step_count, "show_real": p.show_real,
                "agent": s.agent.name if s.agent else None, **s.sampling, "last": report,
                "frames": 2 if p.show_real else 1}  # fmt: skip

    def frames(self, sid: str) -> list[bytes]:
        p = self.players[sid]
        level = self.config.png_compression
        out = [b"D" + png_bytes(p.session.dream_frame, level)]
        return out + ([b"R" + png_bytes(p.session.real_frame, level)] if p.show_real else [])

    def handle(self, sid: str, msg: Step | Reset | Settings) -> None:
        """Apply one validated message (blocking: runs in a worker thread)."""
        p = self.players[sid]
        s = p.session
        if isinstance(msg, Step):
            human = msg.keys is not None or msg.action is not None
            if human and s.agent is not None:
                s.agent = None  # take-over
            action = action_from_keys(msg.keys) if msg.keys is not None else msg.action
            s.step(action if human else None)
        elif isinstance(msg, Reset):
            s.restart(msg.level)
        else:
            if "agent" in msg.model_fields_set:
                if msg.agent is not None and msg.agent not in self.config.agents:
                    raise ValueError(f"unknown agent {msg.agent!r}: this server offers {sorted(self.config.agents)}")
                s.agent = None if msg.agent is None else AgentPlayer(self.config.agents[msg.agent], msg.agent)
            s.set_sampling(msg.maskgit_steps, msg.temperature)
            if msg.show_real is not None:
                p.show_real = msg.show_real

    def gif(self, sid: str) -> bytes | None:
        p = self.players.get(sid)
        return None if p is None else gif_bytes(p.session.episode(p.show_real), fps=self.config.gif_fps, scale=4)


def create_app(world_model: WorldModel, config: ServeConfig | None = None):
    """The FastAPI app of `genie serve` for a loaded world model."""
    server = Server(world_model, config or ServeConfig())
    app = FastAPI(title="genie serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/app.js")
    def script() -> FileResponse:
        return FileResponse(STATIC / "app.js", media_type="text/javascript")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/healthz")
    def health() -> JSONResponse:
        return JSONResponse({"sessions": len(server.players), "max_sessions": server.config.max_sessions})

    @app.get("/session/{sid}/episode.gif")
    async def episode(sid: str) -> Response:
        async with server.compute:
            data = await run_in_threadpool(server.gif, sid)
        if data is None:
            raise HTTPException(404, "no such session")
        return Response(data, media_type="image/gif",
                        headers={"Content-Disposition": 'attachment; filename="dream_episode.gif"'})  # fmt: skip

    @app.websocket("/ws")
    async def play(ws: WebSocket) -> None:
        await ws.accept()
        async with server.compute:
            sid = await run_in_threadpool(server.open)
        if sid is None:
            n = server.config.max_sessions
            await ws.send_json({"type": "error", "message": f"server full: {n} of {n} player sessions in use. "
                                "Close another tab, or start genie serve with a larger --max-sessions"})  # fmt: skip
            await ws.close(code=1013)
            return
        logger.info("session %s opened (%d in use)", sid, len(server.players))
        try:
            await ws.send_json(server.hello(sid))
            await send_state(ws, sid)
            while True:
                raw = await ws.receive()
                if raw["type"] == "websocket.disconnect":
                    break
                if sid not in server.players:  # freed while idle
                    await ws.send_json({"type": "error", "message": "session expired: reload the page"})
                    break
                server.players[sid].last_seen = time.monotonic()
                try:
                    msg = parse_message(raw.get("text") if raw.get("text") is not None else raw.get("bytes") or b"")
                    async with server.compute:
                        await run_in_threadpool(server.handle, sid, msg)
                except ValueError as e:
                    await ws.send_json({"type": "error", "message": str(e)})
                    continue
                await send_state(ws, sid)
        except WebSocketDisconnect:
            pass
        finally:
            server.free(sid)
            logger.info("session %s closed (%d in use)", sid, len(server.players))

    async def send_state(ws: WebSocket, sid: str) -> None:
        async with server.compute:
            frames = await run_in_threadpool(server.frames, sid)
        await ws.send_json(server.state(sid))
        for data in frames:
            await ws.send_bytes(data)

    return app
