"""`genie serve`'s protocol and sessions, through Starlette's test client (the browser test is
test_serve_browser.py): malformed messages are refused and the session goes on, sessions are separate,
bounded, and freed when their socket closes."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from genie_env.agents.policies import load_agent  # noqa: E402
from genie_env.envs.real import ACTION_MEANINGS  # noqa: E402
from genie_env.play.session import PlaySession, action_from_keys, check_level  # noqa: E402
from genie_env.play.web import ServeConfig, create_app, parse_message  # noqa: E402
from genie_env.world_model import load_world_model  # noqa: E402


@pytest.fixture(scope="module")
def world_model(tiny_world_model):
    return load_world_model(tiny_world_model, "cpu")


@pytest.fixture()
def client(world_model, tiny_agent):
    config = ServeConfig(max_sessions=2, agents={"tiny": load_agent(tiny_agent)})
    with TestClient(create_app(world_model, config)) as c:
        yield c


def receive_state(ws) -> tuple[dict, list[np.ndarray]]:
    """The state message and the frames (decoded PNGs) after it."""
    state = ws.receive_json()
    assert state["type"] == "state", state
    frames = []
    for tag in "DR"[: state["frames"]]:
        data = ws.receive_bytes()
        assert data[:1] == tag.encode()
        frames.append(np.asarray(Image.open(io.BytesIO(data[1:]))))
    return state, frames


@pytest.fixture()
def connect():
    """connect(client) opens a player session (closed at the end of the test unless closed before):
    (ws, hello, first state, first frames)."""
    with contextlib.ExitStack() as stack:
        yield lambda client: open_session(stack, client)


def open_session(stack: contextlib.ExitStack, client):
    ws = stack.enter_context(client.websocket_connect("/ws"))
    hello = ws.receive_json()
    assert hello["type"] == "hello"
    return ws, hello, *receive_state(ws)


def send(ws, **msg):
    ws.send_text(json.dumps(msg))


@pytest.mark.parametrize(
    "text, reason",
    [
        ("not json", "Invalid JSON"),
        ("[1, 2]", "object"),
        ('{"type": "jump"}', "jump"),
        ('{"type": "step", "action": 15}', "step.action"),
        ('{"type": "step", "action": -1}', "step.action"),
        ('{"type": "step", "action": true}', "step.action"),
        ('{"type": "step", "action": "3"}', "step.action"),
        ('{"type": "step", "keys": ["space"]}', "step.keys.0"),
        ('{"type": "step", "keys": "right"}', "step.keys"),
        ('{"type": "step", "keys": ["right"], "action": 3}', "not both"),
        ('{"type": "step", "path": "/etc/passwd"}', "step.path"),
        ('{"type": "reset", "level": -1}', "reset.level"),
        ('{"type": "reset", "level": 2147483648}', "reset.level"),
        ('{"type": "settings", "temperature": 5}', "settings.temperature"),
        ('{"type": "settings", "maskgit_steps": 0}', "settings.maskgit_steps"),
        ('{"type": "settings", "show_real": "yes"}', "settings.show_real"),
        ('{"type": "step", "keys": ["right"], "pad": "' + "x" * 5000 + '"}', "exceeds"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(text, reason):
    with pytest.raises(ValueError, match="bad message|exceeds") as e:
        parse_message(text)
    assert reason in str(e.value)


def test_valid_messages_parse():
    assert parse_message('{"type": "step", "keys": ["left", "up"]}').keys == ["left", "up"]
    assert parse_message('{"type": "step", "action": 14}').action == 14
    assert parse_message('{"type": "settings", "temperature": 1}').temperature == 1.0
    assert parse_message('{"type": "reset", "level": null}').level is None


def test_keys_map_to_coinrun_actions_and_unknown_keys_are_named():
    assert ACTION_MEANINGS[action_from_keys({"left", "up"})] == "LEFT+UP"
    assert ACTION_MEANINGS[action_from_keys(set())] == "NOOP"
    assert ACTION_MEANINGS[action_from_keys(["d", "right"])] == "D"
    with pytest.raises(ValueError, match="unknown key 'space'"):
        action_from_keys({"space"})
    with pytest.raises(ValueError, match="level must be"):
        check_level(-3)
    with pytest.raises(ValueError, match="level must be"):
        check_level(True)


def test_steps_change_the_dream_and_the_real_game_under_the_same_action(client, connect):
    ws, hello, state, (dream0, real0) = connect(client)
    assert state["step"] == 0 and state["last"] is None and dream0.shape == real0.shape == (64, 64, 3)
    for _ in range(3):
        send(ws, type="step", keys=["right"])
        state, (dream, real) = receive_state(ws)
    last = state["last"]
    assert state["step"] == 3 and last["action_name"] == "RIGHT" and last["by"] == "human"
    assert 0.0 <= last["coin_prob"] <= 1.0 and 0.0 <= last["termination_prob"] <= 1.0
    assert isinstance(last["psnr"], float) or last["psnr"] in (None, "inf")
    assert not np.array_equal(real, real0)  # the real game moved under RIGHT
    assert not np.array_equal(dream, dream0)


def test_a_malformed_message_gets_an_error_and_the_session_goes_on(client, connect):
    ws, *_ = connect(client)
    ws.send_text('{"type": "step", "action": 99}')
    assert ws.receive_json() == {"type": "error", "message": "bad message (step.action: Input should be less than "
                                 "or equal to 14)"}  # fmt: skip
    ws.send_bytes(b"\x00\x01")
    assert "binary" in ws.receive_json()["message"]
    send(ws, type="settings", agent="../../etc/passwd")
    assert "unknown agent" in ws.receive_json()["message"]
    send(ws, type="step", action=3)
    state, _ = receive_state(ws)
    assert state["step"] == 1


def test_settings_agent_play_and_human_take_over(client, connect):
    ws, *_ = connect(client)
    send(ws, type="settings", agent="tiny", temperature=0.5, maskgit_steps=2, show_real=False)
    state, frames = receive_state(ws)
    assert (state["agent"], state["temperature"], state["maskgit_steps"], state["show_real"]) == ("tiny", 0.5, 2, False)
    assert len(frames) == 1  # the real frame is not sent while hidden
    send(ws, type="step")
    state, _ = receive_state(ws)
    assert state["last"]["by"] == "agent"
    send(ws, type="step", keys=["left"])
    state, _ = receive_state(ws)
    assert state["last"]["by"] == "human" and state["agent"] is None  # a key takes over
    send(ws, type="reset", level=7)
    state, _ = receive_state(ws)
    assert (state["level"], state["step"]) == (7, 0)


def test_sessions_are_separate_bounded_and_freed_when_closed(client, connect):
    ws1, hello1, *_ = connect(client)
    ws2, hello2, *_ = connect(client)
    assert hello1["session"] != hello2["session"]
    assert client.get("/healthz").json() == {"sessions": 2, "max_sessions": 2}
    send(ws1, type="step", action=7)
    send(ws1, type="step", action=7)
    receive_state(ws1)
    state1, _ = receive_state(ws1)
    send(ws2, type="settings", temperature=1.5)
    state2, _ = receive_state(ws2)
    assert (state1["step"], state1["temperature"]) == (2, 0.0) and (state2["step"], state2["temperature"]) == (0, 1.5)

    with client.websocket_connect("/ws") as ws3:  # past the bound: told so, then closed with 1013
        assert "server full: 2 of 2" in ws3.receive_json()["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws3.receive_json()
        assert closed.value.code == 1013

    gif = client.get(f"/session/{hello1['session']}/episode.gif")
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    assert Image.open(io.BytesIO(gif.content)).n_frames == 3  # the start frame and both steps
    ws1.__exit__(None, None, None)  # the tabs close
    ws2.__exit__(None, None, None)
    assert client.get("/healthz").json()["sessions"] == 0
    assert client.get(f"/session/{hello1['session']}/episode.gif").status_code == 404


def test_an_idle_session_is_freed_when_a_new_page_needs_its_room(world_model):
    app = create_app(world_model, ServeConfig(max_sessions=1, idle_seconds=1e-6))
    with TestClient(app) as c, contextlib.ExitStack() as stack:
        ws1, *_ = open_session(stack, c)
        ws2, hello2, *_ = open_session(stack, c)  # the first is idle past the (tiny) timeout: freed for this one
        send(ws1, type="step")
        assert "session expired" in ws1.receive_json()["message"]
        assert c.get("/healthz").json()["sessions"] == 1


def test_the_page_and_its_script_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'src="/app.js"' in page.text
    assert "new WebSocket" in client.get("/app.js").text


def test_play_session_sampling_bounds_and_level_restart(world_model):
    s = PlaySession(world_model, level=3, seed=1)
    with pytest.raises(ValueError, match="maskgit_steps"):
        s.set_sampling(maskgit_steps=64)
    s.set_sampling(maskgit_steps=4, temperature=0.0)
    assert s.sampling == {"maskgit_steps": 4, "temperature": 0.0}
    report = s.step(7)
    assert (report.level, report.step, report.action_name) == (3, 1, "RIGHT")
    s.restart()
    assert (s.level, s.step_count, len(s.episode(True))) == (4, 0, 1)
    assert s.episode(True).shape == (1, 64, 128, 3)
    s.close()
