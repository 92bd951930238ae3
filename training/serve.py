"""Play the dream in a web browser, beside the real game (`genie serve`, then open http://127.0.0.1:8000).

One page per player: the dream played with the keyboard (arrows, W A S D Q E), the real level it started
from stepped beside it under the same actions, the model's coin and end probabilities, the dream's drift
from the game (PSNR), reset and choice of level, temperature and MaskGIT steps, an agent that plays until
a key takes over, and the episode as a GIF. The world model and the agents are chosen here, never by the
page. Binds to 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from genie_env.games import DistributionMode
from genie_env.world_model import DEFAULT_AGENT, Precision

from .common import cli_errors, setup_logging

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeArgs:
    """Arguments of `genie serve`."""

    world_model: str | None = None
    """world-model directory (default: the model shipped with the package)"""
    host: str = "127.0.0.1"
    """address to bind: 127.0.0.1 serves this machine only; 0.0.0.0 serves the network (no authentication)"""
    port: int = 8000
    """TCP port"""
    agent: tuple[str, ...] = ("shipped",)
    """agents the page may hand control to: agent.zip paths, or `shipped` for the package's dream agent"""
    max_sessions: int = 4
    """players served at once; a page past the bound is told the server is full"""
    idle_seconds: float = 600.0
    """a player silent this long is freed when a new page needs the room"""
    distribution_mode: DistributionMode = "easy"
    """CoinRun difficulty of the real levels"""
    precision: Precision = "auto"
    """dream inference precision: auto is bf16 where bf16 is fast"""
    device: str = "cpu"
    """device of the world model and agents"""

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536 or self.max_sessions < 1 or self.idle_seconds <= 0:
            raise ValueError("need 0 < --port < 65536, --max-sessions >= 1 and --idle-seconds > 0")


def agent_name(spec: str) -> str:
    """The page's name of an --agent: `shipped`, or the run directory holding the agent.zip."""
    return "shipped" if spec == "shipped" else Path(spec).resolve().parent.name or Path(spec).stem


def build_app(args: ServeArgs):
    """The app with its world model and agents loaded (errors name the file that failed)."""
    from genie_env.agents.policies import load_agent
    from genie_env.play.web import ServeConfig, create_app
    from genie_env.world_model import load_world_model

    wm = load_world_model(args.world_model, args.device, args.precision)
    agents = {}
    for spec in args.agent:
        name = agent_name(spec)
        if name in agents:
            raise ValueError(f"two --agent entries are both named {name!r}: put them in differently named directories")
        agents[name] = load_agent(DEFAULT_AGENT if spec == "shipped" else spec, device=args.device)
    config = ServeConfig(distribution_mode=args.distribution_mode, max_sessions=args.max_sessions,
                         idle_seconds=args.idle_seconds, agents=agents)  # fmt: skip
    return create_app(wm, config)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    with cli_errors():
        args = tyro.cli(ServeArgs, args=argv, prog="genie serve", description=__doc__)
        try:
            import fastapi  # noqa: F401
            import uvicorn
        except ImportError as e:
            raise SystemExit("genie serve needs FastAPI and uvicorn: pip install 'genie-env[serve]'") from e
        app = build_app(args)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: anyone who can reach this port can play (there is no authentication)",
                       args.host)  # fmt: skip
    print(f"genie serve: open http://{args.host}:{args.port}/ (Ctrl+C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", ws_max_size=1 << 16)


if __name__ == "__main__":
    main()
