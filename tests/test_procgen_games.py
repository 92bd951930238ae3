"""All 16 Procgen games through `Procgen-v0`: gymnasium's full env check, native batching, seeded
determinism, and the CoinRun alias unchanged."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import genie_env  # noqa: F401  (registers the envs)
from genie_env.checkpoint import CheckpointError
from genie_env.envs.real import ProcgenCoinRunEnv, ProcgenEnv
from genie_env.games import PROCGEN_GAMES


def rollout(env, seed: int, steps: int = 40) -> tuple[np.ndarray, list[float]]:
    frames, rewards = [env.reset(seed=seed)[0]], []
    actions = np.random.default_rng(seed).integers(0, 15, steps)
    for a in actions:
        frame, reward, terminated, truncated, _ = env.step(int(a))
        frames.append(frame)
        rewards.append(reward)
        if terminated or truncated:
            frames.append(env.reset()[0])
    return np.stack(frames), rewards


@pytest.mark.parametrize("game", PROCGEN_GAMES)
def test_every_game_passes_check_env_and_resets_deterministically(game):
    env = gymnasium.make("Procgen-v0", game=game).unwrapped
    assert isinstance(env, ProcgenEnv) and env.game == game
    check_env(env, skip_render_check=True)
    a_frames, a_rewards = rollout(env, seed=5)
    b_frames, b_rewards = rollout(env, seed=5)
    c_frames, _ = rollout(env, seed=6)
    assert np.array_equal(a_frames, b_frames) and a_rewards == b_rewards
    assert not np.array_equal(a_frames, c_frames)  # another seed, another level
    env.close()


@pytest.mark.parametrize("game", ["bigfish", "fruitbot", "starpilot", "maze"])
def test_games_step_natively_batched_like_their_single_envs(game):
    venv = gymnasium.make_vec("Procgen-v0", num_envs=3, game=game)
    assert type(venv.unwrapped).__name__ == "ProcgenVectorEnv"
    obs, info = venv.reset(seed=11)
    single = gymnasium.make("Procgen-v0", game=game).unwrapped
    for i in range(3):  # env i of the batch plays the level a single env seeded 11 + i plays
        assert np.array_equal(obs[i], single.reset(seed=11 + i)[0])
    assert obs.shape == (3, 64, 64, 3) and set(info) >= {"level_seed", "episode_id"}
    for _ in range(20):
        obs, rewards, terminated, truncated, _ = venv.step(np.random.default_rng(0).integers(0, 15, 3))
    assert obs.shape == (3, 64, 64, 3) and rewards.dtype == np.float32 and terminated.shape == (3,)
    venv.close()
    single.close()


def test_games_differ_and_coinrun_alias_is_coinrun():
    first = {game: gymnasium.make("Procgen-v0", game=game).reset(seed=0)[0] for game in ("coinrun", "maze", "ninja")}
    assert not np.array_equal(first["coinrun"], first["maze"]) and not np.array_equal(first["maze"], first["ninja"])
    alias = gymnasium.make("ProcgenCoinRun-v0").unwrapped
    assert isinstance(alias, ProcgenCoinRunEnv) and alias.game == "coinrun"
    assert np.array_equal(alias.reset(seed=0)[0], first["coinrun"])
    assert gymnasium.make("Procgen-v0").unwrapped.game == "coinrun"  # the default game


def test_an_unknown_game_is_refused_with_the_list_of_games():
    with pytest.raises(ValueError, match="unknown Procgen game 'pong': use one of bigfish, bossfight"):
        gymnasium.make("Procgen-v0", game="pong")
    with pytest.raises(ValueError, match="unknown Procgen game"):
        gymnasium.make_vec("Procgen-v0", num_envs=2, game="Coinrun")


def test_collect_records_the_game_and_packaging_refuses_to_mix_games(tmp_path, tiny_dataset):
    from genie_env.agents.policies import collection_policy
    from genie_env.data.collect import CollectConfig, collect
    from genie_env.data.manifest import read_manifest
    from genie_env.data.stats import dataset_summary, format_summary
    from genie_env.world_model import package_world_model

    cfg = CollectConfig(out=str(tmp_path / "maze"), frames=200, num_envs=4, game="maze", progress=False)
    manifest = collect(cfg, collection_policy(cfg))
    assert manifest.game == "maze" and read_manifest(tmp_path / "maze").env["env_name"] == "maze"
    assert "env: maze easy" in format_summary(dataset_summary(tmp_path / "maze"))
    assert read_manifest(tiny_dataset).game == "coinrun"
    with pytest.raises(ValueError, match=r"different games: .*maze is maze, .* is coinrun"):
        package_world_model("unused", "unused", [tmp_path / "maze", tiny_dataset], tmp_path / "model")
    with pytest.raises(ValueError, match="unknown Procgen game 'pong'"):
        CollectConfig(out=str(tmp_path / "x"), game="pong")


def test_stages_refuse_data_of_another_game(tmp_path, tiny_dataset, tiny_tokenizer_run):
    import json
    import shutil

    from genie_env.agents.policies import collection_policy
    from genie_env.data.collect import CollectConfig, collect
    from genie_env.data.dataset import token_manifests
    from genie_env.data.manifest import DatasetError
    from genie_env.models.tokenize import tokenize_dataset

    cfg = CollectConfig(out=str(tmp_path / "maze"), frames=100, num_envs=2, game="maze", progress=False)
    collect(cfg, collection_policy(cfg))
    with pytest.raises(DatasetError, match=r"holds maze frames, but tokenizer .* was trained on coinrun"):
        tokenize_dataset(tmp_path / "maze", tiny_tokenizer_run, tmp_path / "maze_tokens", progress=False)
    tokenize_dataset(tiny_dataset, tiny_tokenizer_run, tmp_path / "tokens", progress=False)
    shutil.copytree(tmp_path / "tokens", tmp_path / "relabelled")
    path = tmp_path / "relabelled" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["env"]["game"] = "maze"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"relabelled is maze, .*tokens is coinrun: a dynamics model learns one game"):
        token_manifests((str(tmp_path / "tokens"), str(tmp_path / "relabelled")))


def test_real_ppo_and_evaluation_take_the_game(tmp_path):
    from genie_env.cli.evaluate import EvaluateArgs
    from genie_env.cli.evaluate import run as evaluate

    from genie_env.agents.train import AgentConfig, train_agent

    cfg = AgentConfig(env="real", game="starpilot", steps=64, num_envs=2, n_steps=32, batch_size=32, n_epochs=1)
    agent = train_agent(cfg, tmp_path / "starpilot", progress=False)
    result = evaluate(EvaluateArgs(str(agent), episodes=2, num_envs=2, game="starpilot", progress=False))
    assert result["game"] == "starpilot" and result["episodes"] == 2
    with pytest.raises(ValueError, match="was trained for starpilot: evaluate it with --game starpilot, not coinrun"):
        evaluate(EvaluateArgs(str(agent), episodes=2, num_envs=2, progress=False))
    with pytest.raises(CheckpointError, match="no world model of maze is shipped .*`genie pipeline --game maze"):
        train_agent(AgentConfig(env="dream", game="maze", steps=64, num_envs=2, n_steps=32, batch_size=32),
                    tmp_path / "maze_dream", progress=False)  # fmt: skip
    with pytest.raises(
        ValueError, match="unknown game 'pong': use one of the Procgen games .* or the Gymnasium env id"
    ):
        AgentConfig(env="real", game="pong")
