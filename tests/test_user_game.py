"""A user's own game through the same commands as Procgen: `genie collect --env-id`, the tokenizer, the
dynamics, packaging and `GenieEnv-v0`, on the tests' small catch game (`tests/user_game.py`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

import genie_env  # noqa: F401  (registers the envs)
from genie_env.data.format import load_shard
from genie_env.data.manifest import read_manifest
from genie_env.envs.user import ResizeFrames
from genie_env.user_game import UserGameError, make_user_env, parse_env_kwargs, resize_frame

GAME = "tests.user_game:CatchTest-v0"
SMALL = dict(frames=1200, num_envs=4, shard_frames=300, seed=3, progress=False, val_fraction=0.3)


def user_collect(out, **kw):
    from genie_env.agents.policies import collection_policy
    from genie_env.data.collect import CollectConfig, collect

    cfg = CollectConfig(out=str(out), env_id=GAME, env_kwargs=json.dumps({"width": 10}), **{**SMALL, **kw})
    return collect(cfg, collection_policy(cfg))


def episodes(root):
    manifest = read_manifest(root)
    out = {}
    for info in manifest.shards:
        arrays = load_shard(root, info)
        for i in np.unique(arrays["episode_ids"]):
            rows = arrays["episode_ids"] == i
            out[int(i)] = {k: np.asarray(v)[rows] for k, v in arrays.items()}
    return out


@pytest.fixture(scope="module")
def catch_data(tmp_path_factory):
    from genie_env.cli import collect

    out = tmp_path_factory.mktemp("catch") / "data"
    collect.main(["--env-id", GAME, "--env-kwargs", '{"width": 10}', "--out", str(out), "--frames", "1200",
                  "--num-envs", "4", "--shard-frames", "300", "--seed", "3", "--val-fraction", "0.3"])  # fmt: skip
    return out


@pytest.fixture(scope="module")
def catch_pipeline(tmp_path_factory):
    """`genie pipeline --preset tiny --env-id` on the catch game: both rounds, agents, evaluation, compare."""
    from genie_env.cli import pipeline

    out = tmp_path_factory.mktemp("catch_pipeline")
    pipeline.main(["--preset", "tiny", "--env-id", GAME, "--env-kwargs", '{"width": 10}', "--out", str(out),
                   "--eval-episodes", "4"])  # fmt: skip
    return out


def test_frames_are_stretched_to_64x64_by_box_filter_shrinking_and_nearest_enlarging():
    big = np.kron(np.arange(64 * 64 * 3, dtype=np.int64).reshape(64, 64, 3) % 251, np.ones((2, 3, 1))).astype(np.uint8)
    assert np.array_equal(resize_frame(big), np.arange(64 * 64 * 3).reshape(64, 64, 3) % 251)  # box: block means
    small = np.random.default_rng(0).integers(0, 256, (32, 16, 3), dtype=np.uint8)
    assert np.array_equal(resize_frame(small), np.repeat(np.repeat(small, 2, 0), 4, 1))  # nearest: pixels repeated
    frame = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert np.array_equal(resize_frame(frame), frame)  # already 64x64: unchanged
    env = ResizeFrames(make_user_env(GAME, {"width": 10}))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and env.observation_space == spaces.Box(0, 255, (64, 64, 3), np.uint8)


class FloatFrames(gymnasium.Env):
    observation_space = spaces.Box(0, 1, (8, 8, 3), np.float32)
    action_space = spaces.Discrete(2)


class ContinuousActions(gymnasium.Env):
    observation_space = spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = spaces.Box(-1, 1, (2,))


def test_envs_the_pipeline_cannot_learn_are_refused_naming_the_problem():
    gymnasium.register(id="FloatFramesTest-v0", entry_point=FloatFrames)
    gymnasium.register(id="ContinuousActionsTest-v0", entry_point=ContinuousActions)
    with pytest.raises(UserGameError, match=r"'FloatFramesTest-v0' observes Box.*learns RGB frames"):
        make_user_env("FloatFramesTest-v0")
    with pytest.raises(UserGameError, match=r"'ContinuousActionsTest-v0' acts in Box.*learns Discrete\(n\)"):
        make_user_env("ContinuousActionsTest-v0")
    with pytest.raises(UserGameError, match=r"cannot make env 'NoSuchGame-v0'"):
        make_user_env("NoSuchGame-v0")
    with pytest.raises(UserGameError, match=r"cannot make env .* with \{'colour': 3\}: TypeError"):
        make_user_env(GAME, {"colour": 3})
    with pytest.raises(UserGameError, match="--env-kwargs is not JSON"):
        parse_env_kwargs("{width: 3}")
    with pytest.raises(UserGameError, match="must be a JSON object, got list"):
        parse_env_kwargs("[3]")
    from genie_env.data.collect import CollectConfig

    with pytest.raises(ValueError, match="--env-id .* and --game maze: collect one or the other"):
        CollectConfig(env_id=GAME, game="maze")
    with pytest.raises(ValueError, match="--env-kwargs needs --env-id"):
        CollectConfig(env_kwargs='{"width": 3}')


def test_collect_env_id_records_the_game_and_keeps_its_rewards_actions_and_ends(catch_data):
    manifest = read_manifest(catch_data)
    assert manifest.complete and manifest.game == GAME and manifest.user_game and manifest.num_actions == 3
    assert manifest.env["env_kwargs"] == {"width": 10} and manifest.env["frame_shape"] == [40, 50, 3]
    assert "aspect not kept" in manifest.env["resize"]
    from genie_env.data.stats import dataset_summary

    summary = dataset_summary(catch_data)
    assert summary["game"] == GAME and list(summary["all"]["action_histogram"]) == ["0:0", "1:1", "2:2"]
    eps = episodes(catch_data)
    assert len(eps) >= 10 and manifest.counts["val_episodes"] > 0
    rewards = np.concatenate([e["rewards"] for e in eps.values()])
    assert set(np.unique(rewards)) == {-1.0, 0.0, 1.0}
    seeds = [int(e["level_seeds"][0]) for e in eps.values()]
    assert len(set(seeds)) == len(seeds) and min(seeds) >= 3_000_000  # one episode seed each, seed 3's range
    for e in eps.values():
        assert e["frames"].shape[1:] == (64, 64, 3) and (e["actions"] < 3).all()
        ends = e["terminations"] | e["truncations"]
        assert ends[-1] and not ends[:-1].any()
        if e["terminations"][-1]:  # the third ball scored: a catch or a miss on the last step
            assert e["rewards"][-1] != 0 and np.count_nonzero(e["rewards"]) == 3


def test_a_killed_user_game_collection_resumes_without_playing_an_episode_twice(tmp_path):
    out = tmp_path / "killed"
    code = f"""
import os, signal, sys, time
sys.path.insert(0, {os.getcwd()!r})
from tests.test_user_game import user_collect
from genie_env.data.manifest import read_manifest
import genie_env.agents.policies as policies
act = policies.StickyPolicy.act
steps = [0]
def killing_act(self, frames, first):
    # at step 150 (600 of 1200 frames: a 300-frame shard has gone to the writer) wait for the writer's
    # first commit, then die: a kill after a commit and before the end, however slow the writer thread is
    steps[0] += 1
    if steps[0] == 150:
        deadline = time.time() + 120
        while not read_manifest({str(out)!r}).shards and time.time() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    return act(self, frames, first)
policies.StickyPolicy.act = killing_act
user_collect({str(out)!r})
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not read_manifest(out).complete and read_manifest(out).shards, "killed before or after the first commit"
    user_collect(out, resume=True)
    manifest = read_manifest(out)
    assert manifest.complete and manifest.counts["frames"] >= 1200
    seeds = [int(e["level_seeds"][0]) for e in episodes(out).values()]
    assert len(set(seeds)) == len(seeds)
    assert not list(out.glob("resume_*"))


def test_the_pipeline_learns_the_user_game_and_scores_its_agents_on_it(catch_pipeline):
    record = json.loads((catch_pipeline / "pipeline.json").read_text())
    assert record["game"] == GAME and "compare" in record["stages"]
    for name in ("ppo_dream", "ppo_real_same_frames", "random"):
        result = json.loads((catch_pipeline / "eval" / f"{name}.json").read_text())
        assert result["game"] == GAME and result["env_kwargs"] == {"width": 10} and result["episodes"] == 4
        assert all(-3 <= r <= 3 for r in result["per_episode"]["returns"])  # three balls, +-1 each
        assert all(1_000_000 <= s < 1_000_500 for s in result["per_episode"]["level_seeds"])  # held-out seeds
    agent = json.loads((catch_pipeline / "agent_dream_r2" / "config.json").read_text())
    assert agent["config"]["game"] == GAME and agent["dream_frames"] > 0


def test_the_user_games_world_model_dreams_in_genie_env_with_its_own_spaces(catch_pipeline):
    from gymnasium.utils.env_checker import check_env

    from genie_env.checkpoint import read_config, resolve_checkpoint

    catch_world_model = catch_pipeline / "world_model_r2"

    meta = read_config(resolve_checkpoint(catch_world_model / "dynamics"), kind="dynamics")
    assert meta["game"] == GAME and meta["config"]["num_actions"] == 3
    assert meta["config"]["reward_values"] == [-1.0, 0.0, 1.0]
    env = gymnasium.make("GenieEnv-v0", world_model=str(catch_world_model))
    assert env.action_space == spaces.Discrete(3) and env.unwrapped.game == GAME
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    for t in range(10):
        _, reward, terminated, truncated, _ = env.step(t % 3)
        assert reward in (-1.0, 0.0, 1.0)
        if terminated or truncated:
            env.reset()
    with pytest.raises(ValueError, match=r"action 3 out of range: the game has 3 actions"):
        env.step(3)
    venv = gymnasium.make_vec("GenieEnv-v0", num_envs=2, world_model=str(catch_world_model), events="expected")
    venv.reset(seed=1)
    _, rewards, *_ = venv.step(np.array([0, 2]))
    assert rewards.shape == (2,) and (np.abs(rewards) <= 1).all()
    with pytest.raises(ValueError, match=r"is of tests.user_game:CatchTest-v0, not of a Procgen game: .*GenieEnv-v0"):
        gymnasium.make("GenieProcgen-v0", world_model=str(catch_world_model))
    with pytest.raises(ValueError, match="GenieEnv-v0 needs world_model=DIR"):
        gymnasium.make("GenieEnv-v0")
