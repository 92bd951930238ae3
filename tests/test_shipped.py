"""The model shipped inside the package: it loads offline, steps as GenieCoinRun-v0, and its agent plays."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium
import numpy as np
from stable_baselines3 import PPO

import genie_env
from genie_env.agents.evaluate import DEFAULT_EVAL_NUM_LEVELS, DEFAULT_EVAL_START_LEVEL, check_disjoint
from genie_env.world_model import DEFAULT_AGENT, DEFAULT_MODEL_DIR


def test_shipped_world_model_dreams_as_genie_coinrun_v0():
    env = gymnasium.make("GenieCoinRun-v0", max_episode_steps=5)
    real = gymnasium.make("ProcgenCoinRun-v0")
    assert env.observation_space == real.observation_space and env.action_space == real.action_space
    obs, info = env.reset(seed=0)
    first = obs.copy()
    for t in range(5):
        obs, reward, terminated, truncated, info = env.step(7)
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and info["dream_step"] == t + 1
        if terminated:
            break
    assert terminated or truncated
    again, _ = env.reset(seed=0)
    assert np.array_equal(first, again)


def test_shipped_world_model_loads_without_importing_the_package_first():
    code = "import gymnasium; env = gymnasium.make('genie_env:GenieCoinRun-v0'); print(env.reset(seed=1)[0].shape)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(64, 64, 3)"


def test_shipped_files_are_small_and_their_levels_are_held_out():
    weights = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.glob("*/model.safetensors"))
    assert weights <= 30 * 2**20
    levels = json.loads((DEFAULT_MODEL_DIR / "levels.json").read_text())
    assert levels["frames"] >= 100_000 and len(levels["level_seeds"]) > 100
    check_disjoint(DEFAULT_EVAL_START_LEVEL, DEFAULT_EVAL_NUM_LEVELS, set(levels["level_seeds"]))
    wm = genie_env.load_world_model()
    assert wm.tokenizer.cfg.grid == wm.dynamics.cfg.grid


def test_shipped_agent_loads_with_sb3_and_acts_in_the_action_space():
    agent = PPO.load(DEFAULT_AGENT, device="cpu")
    actions, _ = agent.predict(np.zeros((4, 64, 64, 3), np.uint8), deterministic=True)
    assert actions.shape == (4,) and ((0 <= actions) & (actions < 15)).all()
    record = json.loads(DEFAULT_AGENT.with_suffix(".json").read_text())
    assert record["config"]["env"] == "dream" and record["dream_frames"] > 0


def test_the_studys_shipped_agents_keep_their_budget_and_held_out_levels():
    """Each budget's picked dream agent of the sample-efficiency study (`genie study --ship-to`): within its
    budget, picked on validation levels, and its levels disjoint from the test levels the table reports."""
    shipped = sorted((DEFAULT_MODEL_DIR / "sample_efficiency").glob("*/agent.json"))
    assert shipped, "no study agents are shipped"
    for path in shipped:
        record = json.loads(path.read_text())
        budget = int(path.parent.name)
        assert record["budget"] == budget and 0 < record["real_frames"] <= budget
        assert record["picked"]["on"] == "validation levels" and record["picked"]["test_episodes"] >= 500
        levels = json.loads((path.parent / "levels.json").read_text())
        assert levels["frames"] == record["real_frames"]
        check_disjoint(DEFAULT_EVAL_START_LEVEL, record["picked"]["test_episodes"], set(levels["level_seeds"]))
        agent = PPO.load(path.parent / "agent.zip", device="cpu")
        actions, _ = agent.predict(np.zeros((2, 64, 64, 3), np.uint8), deterministic=True)
        assert ((0 <= actions) & (actions < 15)).all()


def test_shipped_model_outputs_equal_the_golden_reference():
    """Every public path of the shipped model (encode, rollout, decode, the single and batched dream env in
    fp32 and bf16, sampling, the agent) gives what it gave when the reference was made: bit for bit on a CPU
    of the reference's kind, within rounding on others (`shipped_reference.compare`)."""
    from tests import shipped_reference as ref

    with np.load(ref.REFERENCE) as z:
        reference = {k: z[k] for k in z.files}
    assert str(reference.pop("digest")) == ref.shipped_digest(), (
        "the shipped model changed: if on purpose, rewrite the reference with `python -m tests.shipped_reference`"
    )
    here = ref.machine()
    made_on = {k: str(reference.pop(k)) if k in reference else ref.MADE_BEFORE_RECORDED[k] for k in here}
    outputs = ref.shipped_outputs()
    assert sorted(outputs) == sorted(reference)
    differing = ref.compare(outputs, reference, same_machine=made_on == here)
    assert not differing, f"outputs differ from the reference (made on {made_on}, this is {here}) in {differing}"


def test_the_golden_comparison_tolerates_rounding_elsewhere_and_nothing_else():
    from tests.shipped_reference import compare

    frames = np.random.default_rng(0).integers(0, 256, (3, 7, 64, 64, 3), dtype=np.uint8)
    reference = {"encode": np.arange(6), "vec_fp32_rewards": np.array([0.5, 1e-3]), "vec_bf16_frames": frames,
                 "vec_bf16_probs": np.array([0.2, 0.7])}  # fmt: skip
    nudged = frames.copy()
    nudged[0, 0, :8, :8] = 255 - nudged[0, 0, :8, :8]  # one token's patch of one frame redrawn
    close = {"encode": np.arange(6), "vec_fp32_rewards": np.array([0.5 + 1e-6, 1e-3]), "vec_bf16_frames": nudged,
             "vec_bf16_probs": np.array([0.205, 0.7])}  # fmt: skip
    reference["vec_fp32_frames"] = frames
    close["vec_fp32_frames"] = frames.copy()
    close["vec_fp32_frames"].flat[[5, 900]] ^= 1  # two pixels one grey level off: the decoder's rounding
    assert compare(close, reference, same_machine=False) == []
    assert compare(close, reference, same_machine=True) == ["vec_fp32_rewards", "vec_bf16_frames", "vec_bf16_probs",
                                                            "vec_fp32_frames"]  # fmt: skip
    smeared = {**close, "vec_fp32_frames": np.clip(frames.astype(np.int16) + 1, 0, 255).astype(np.uint8)}
    assert compare(smeared, reference, same_machine=False) == ["vec_fp32_frames"]  # every pixel off is a change
    far = {"encode": np.arange(6) + 1, "vec_fp32_rewards": np.array([0.51, 1e-3]), "vec_bf16_frames": 255 - frames,
           "vec_bf16_probs": np.array([0.3, 0.7]), "vec_fp32_frames": 255 - frames}  # fmt: skip
    assert compare(far, reference, same_machine=False) == list(reference)
