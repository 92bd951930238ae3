"""Another game through every stage: `genie pipeline --game fruitbot --preset tiny` (fruitbot rewards +1
and penalises -4, many times an episode), its world model as `GenieProcgen-v0`, and the refusals that keep
games apart."""

from __future__ import annotations

import json

import gymnasium
import numpy as np
import pytest

import genie_env  # noqa: F401  (registers the envs)
from genie_env.checkpoint import CheckpointError, read_config, resolve_checkpoint
from genie_env.data.dataset import WindowDataset, reward_values
from genie_env.envs.dream import GenieProcgenEnv, GenieProcgenVectorEnv
from genie_env.games import REWARD_VALUES
from genie_env.models.rewards import reward_support


@pytest.fixture(scope="module")
def fruitbot(tmp_path_factory):
    """The tiny pipeline's directory for fruitbot (both rounds, agents, evaluation and compare)."""
    from genie_env.cli import pipeline

    out = tmp_path_factory.mktemp("fruitbot")
    pipeline.main(["--preset", "tiny", "--game", "fruitbot", "--out", str(out), "--eval-episodes", "4",
                   "--ship", str(out / "ship")])  # fmt: skip
    return out


def test_every_stage_records_fruitbot_and_the_reward_head_holds_its_rewards(fruitbot):
    record = json.loads((fruitbot / "pipeline.json").read_text())
    assert record["game"] == "fruitbot" and "compare" in record["stages"]
    levels = json.loads((fruitbot / "world_model_r2" / "levels.json").read_text())
    assert levels["game"] == "fruitbot"
    meta = read_config(resolve_checkpoint(fruitbot / "world_model_r2" / "dynamics"), kind="dynamics")
    assert meta["game"] == "fruitbot"
    seen = reward_values(WindowDataset(fruitbot / "tokens", "train", window=4))
    assert {-4.0, 1.0} <= set(seen.tolist())  # a fruit and a penalty, at least, in 1500 random frames
    # the rewards seen and those fruitbot is known to give (a model trained on little data may not see all)
    known = np.array(REWARD_VALUES["fruitbot"], np.float32)
    assert tuple(meta["config"]["reward_values"]) == reward_support(np.union1d(seen, known))
    for name in ("ppo_dream", "ppo_real_same_frames", "random"):
        result = json.loads((fruitbot / "eval" / f"{name}.json").read_text())
        assert result["game"] == "fruitbot" and result["episodes"] == 4


def test_eval_dynamics_scores_which_fruitbot_reward_the_model_predicts(fruitbot):
    from genie_env.evaluate.dynamics import evaluate_dynamics
    from genie_env.models import load_dynamics, load_tokenizer

    model, tokenizer = load_dynamics(fruitbot / "dynamics_self_forcing_r2"), load_tokenizer(fruitbot / "tokenizer")
    result = evaluate_dynamics(model, tokenizer, fruitbot / "tokens", fruitbot / "data", context=2, horizon=4,
                               windows=4, dreamed_leads=(), progress=False)  # fmt: skip
    assert -4.0 in result["reward_values"] and 1.0 in result["reward_values"]
    report = result["reward_value"]
    assert report["rewarded_transitions"] > 0 and 0 <= report["value_accuracy"] <= 1
    assert set(report["per_value"]) <= {"-8", "-4", "-3", "1", "2"} and report["expected_reward_mae"] >= 0


def test_the_fruitbot_dream_has_the_real_spaces_and_rewards_from_its_support(fruitbot):
    model = str(fruitbot / "world_model_r2")
    env = gymnasium.make("GenieProcgen-v0", world_model=model, events="threshold")
    real = gymnasium.make("Procgen-v0", game="fruitbot")
    assert isinstance(env.unwrapped, GenieProcgenEnv) and env.unwrapped.game == "fruitbot"
    assert env.observation_space == real.observation_space and env.action_space == real.action_space
    support = env.unwrapped.dream.reward_values
    assert not env.unwrapped.dream.ends_on_reward  # fruitbot rewards mid-episode
    env.reset(seed=0)
    for t in range(20):
        _, reward, terminated, truncated, info = env.step(t % 15)
        assert reward in support and 0.0 <= info["reward_prob"] <= 1.0
        if terminated or truncated:
            env.reset()
    venv = gymnasium.make_vec("GenieProcgen-v0", num_envs=3, world_model=model, game="fruitbot", events="expected")
    assert isinstance(venv.unwrapped, GenieProcgenVectorEnv)
    venv.reset(seed=0)
    _, rewards, *_ = venv.step(np.array([1, 4, 7]))
    assert rewards.shape == (3,) and ((support.min() <= rewards) & (rewards <= support.max())).all()


def test_world_models_of_another_game_are_refused_and_unshipped_games_name_the_command(fruitbot):
    model = str(fruitbot / "world_model_r2")
    with pytest.raises(ValueError, match=r"is of fruitbot, not coinrun"):
        gymnasium.make("GenieCoinRun-v0", world_model=model)
    with pytest.raises(ValueError, match=r"is of fruitbot, not maze: .* or game='fruitbot'"):
        gymnasium.make("GenieProcgen-v0", world_model=model, game="maze")
    with pytest.raises(CheckpointError, match=r"no world model of bigfish is shipped \(shipped: coinrun\): .*"
                                              r"genie pipeline --game bigfish"):  # fmt: skip
        gymnasium.make("GenieProcgen-v0", game="bigfish")
    with pytest.raises(ValueError, match="unknown Procgen game 'pong'"):
        gymnasium.make("GenieProcgen-v0", game="pong")
    assert gymnasium.make("GenieProcgen-v0").unwrapped.game == "coinrun"  # no game, no model: the shipped CoinRun


def test_a_shipped_game_holds_the_world_model_its_agent_the_comparison_and_a_model_card(fruitbot, tmp_path):
    from genie_env.cli import pipeline

    ship = fruitbot / "ship"
    env = gymnasium.make("GenieProcgen-v0", world_model=str(ship))
    assert env.unwrapped.game == "fruitbot"
    agent = json.loads((ship / "agent.json").read_text())
    levels = json.loads((ship / "levels.json").read_text())
    assert agent["real_frames"] == levels["frames"] and agent["config"]["game"] == "fruitbot"
    assert (ship / "agent.zip").read_bytes() == (fruitbot / "agent_dream_r2" / "agent.zip").read_bytes()
    card = (ship / "MODEL_CARD.md").read_text()
    table = (fruitbot / "compare" / "compare.md").read_text().strip()
    assert "# genie-env fruitbot world model" in card and table in card
    assert f"{levels['frames']:,} real frames" in card and "| train_dynamics_r2 |" in card
    assert f"--game fruitbot --seed 0 --distribution-mode easy --out {fruitbot} --ship {ship}" in card
    # shipped again over its own copy; a directory it did not write is refused, untouched
    foreign = tmp_path / "assets"
    (foreign / "notes.txt").parent.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        pipeline.main(["--preset", "tiny", "--game", "fruitbot", "--out", str(fruitbot), "--eval-episodes", "4",
                       "--ship", str(foreign)])  # fmt: skip
    assert (foreign / "notes.txt").read_text() == "mine"
    pipeline.main(["--preset", "tiny", "--game", "fruitbot", "--out", str(fruitbot), "--eval-episodes", "4",
                   "--ship", str(ship)])  # fmt: skip
    assert (ship / "MODEL_CARD.md").read_text() == card
    # the card says why this game, from the file --ship-notes names
    notes = tmp_path / "why.md"
    notes.write_text("Fruitbot gives many rewards an episode, of both signs.\n")
    pipeline.main(["--preset", "tiny", "--game", "fruitbot", "--out", str(fruitbot), "--eval-episodes", "4",
                   "--ship", str(ship), "--ship-notes", str(notes)])  # fmt: skip
    card = (ship / "MODEL_CARD.md").read_text()
    assert "## Why this game\n\nFruitbot gives many rewards an episode, of both signs.\n" in card
    assert f"--ship {ship} --ship-notes {notes}" in card
