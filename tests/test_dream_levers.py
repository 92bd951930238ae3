"""The dream-agent benchmarks at a tiny scale: `dream_levers.py` (two variants, one with Dyna's real envs
and sampled dreams, one seed, two dream lengths, validation for real, and a rerun that skips what is
done) and `dream_uncertainty.py`."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

import genie_env
from genie_env.agents.policies import load_agent

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "dream_levers.py"


def _levers():
    spec = importlib.util.spec_from_file_location("dream_levers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_levers_train_validate_resume_longer_and_skip_what_is_done(tiny_world_model, tmp_path, capsys):
    levers = _levers()
    base = dict(env="dream", world_model=str(tiny_world_model), horizon=8, precision="fp32", num_envs=4, n_steps=16,
                batch_size=64, n_epochs=1, checkpoint_every=64)  # fmt: skip
    out = tmp_path / "levers"
    argv = ["--out", str(out), "--base", json.dumps(base), "--seeds", "0", "--steps", "64", "128",
            "--episodes", "4", "--eval-envs", "4", "--variant", "base", "{}",
            "--variant", "dyna", json.dumps({"real_envs": 1, "temperature": 1.0})]  # fmt: skip
    table = levers.main(argv)
    stages = list(json.loads((out / "stages.json").read_text())["stages"])
    assert stages == [f"{v}/seed0/{stage}_{steps}" for steps in (64, 128) for v in ("base", "dyna")
                      for stage in ("train", "val")]  # fmt: skip
    wm_frames = json.loads((tiny_world_model / "levels.json").read_text())["frames"]
    for steps in ("64", "128"):
        assert table["base"][steps]["real_frames"] == [wm_frames]
        assert table["dyna"][steps]["real_frames"] == [wm_frames + int(steps) // 4]  # one env in four is real
        assert len(table["dyna"][steps]["returns"]) == 1 and table["dyna"][steps]["seed_std"] == 0.0
    result = json.loads((out / "eval" / "dyna_seed0_128.json").read_text())
    assert result["start_level"] == 2_000_000 and result["episodes"] == 4 and result["excluded_levels"] > 0
    assert json.loads((out / "dyna" / "seed0" / "config.json").read_text())["steps_done"] == 128
    for steps in (64, 128):  # kept at each length, for dream_gap.py
        assert load_agent(out / "dyna" / "seed0" / f"agent_{steps}.zip").num_timesteps == steps
    assert json.loads((out / "levers.json").read_text())["dyna"]["config"]["real_envs"] == 1
    # run again (checkpointing at another cadence, which is not part of the recipe): nothing is trained or
    # evaluated twice
    agent = out / "base" / "seed0" / "agent.zip"
    before = os.stat(agent).st_mtime_ns
    capsys.readouterr()
    again = levers.main([*argv, "--checkpoint-every", "32"])
    assert json.loads(json.dumps(again)) == json.loads((out / "levers.json").read_text())
    assert os.stat(agent).st_mtime_ns == before
    assert '"seed_mean"' in capsys.readouterr().out


def test_levers_name_a_bad_variant():
    levers = _levers()
    with pytest.raises(ValueError, match="variant hot: .*unknown.*'heat'"):
        levers.variant_configs({}, [["hot", '{"heat": 1}']])
    with pytest.raises(ValueError, match="variant cold: --temperature"):
        levers.variant_configs({}, [["cold", '{"temperature": -1}']])
    with pytest.raises(ValueError, match="variant x: .* is not JSON"):
        levers.variant_configs({}, [["x", "{temperature"]])
    with pytest.raises(SystemExit):
        levers.parse_args(["--steps", "200", "100"])


def test_dream_uncertainty_compares_teacher_forced_dreamed_and_agent_driven_entropy(
    tiny_dataset, tiny_world_model, tiny_agent, capsys
):
    spec = importlib.util.spec_from_file_location("dream_uncertainty", SCRIPT.parent / "dream_uncertainty.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--data", str(tiny_dataset), "--world-model", str(tiny_world_model), "--windows", "4",
                          "--horizon", "3", "--agent", str(tiny_agent)])  # fmt: skip
    rows = result["per_step"]
    assert [r["step"] for r in rows] == [1, 2, 3] and result["windows"] == 4
    first = rows[0]  # one real frame in: the first prediction is the same both ways
    assert first["entropy_teacher_forced"] == first["entropy_dreamed"]
    assert first["token_accuracy_teacher_forced"] == first["token_accuracy_dreamed"]
    top = result["max_entropy_nats"]
    assert all(0 < r[k] < top for r in rows for k in ("entropy_teacher_forced", "entropy_dreamed", "entropy_agent"))
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["benchmark"] == "dream_uncertainty"


def _gap():
    spec = importlib.util.spec_from_file_location("dream_gap", SCRIPT.parent / "dream_gap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dream_gap_plays_each_agent_from_the_same_real_states_in_both_worlds(tiny_world_model, tiny_agent, tmp_path):
    gap = _gap()
    argv = ["--agent", str(tiny_agent), "--agent", str(tiny_agent), "--world-model", str(tiny_world_model),
            "--states", "6", "--batch", "4", "--horizon", "3", "--max-warmup", "5", "--precision", "fp32",
            "--out", str(tmp_path / "gap.json")]  # fmt: skip
    args = gap.parse_args(argv)
    states, frames = gap.reach_states(args, 4, seed=0)
    wm = genie_env.load_world_model(tiny_world_model, precision="fp32")
    # dream i starts from state i's frame (as the world model sees it), not a random context
    venv = gap.GenieProcgenVectorEnv(4, world_model=wm, context=gap.ContextSource(frames[:, None]))
    venv.set_context_sampler(gap._InOrder(4))
    assert np.array_equal(venv.reset(seed=0)[0], wm.decode(wm.encode(frames[:, None]))[:, 0])
    real = gap.play_real(args, str(tiny_agent), states, seed=0)
    again = gap.play_real(args, str(tiny_agent), states, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(real, again))  # states restore exactly
    assert real.returns.shape == real.coins.shape == (4,) and not (real.coins & real.deaths).any()
    result = gap.main(argv)
    assert json.loads((tmp_path / "gap.json").read_text()) == json.loads(json.dumps(result))
    one = result["agents"][str(tiny_agent)]  # both --agent entries are the same file: one record
    assert result["states"] == 6 and len(result["agents"]) == 1
    assert one["gap"]["mean"] == pytest.approx(one["dream_return"]["mean"] - one["real_return"]["mean"], abs=1e-3)
    rates = ("real_coin_rate", "dream_coin_rate", "dreamed_coin_not_real", "real_death_rate", "died_real_not_dreamed")
    assert all(0.0 <= one[k] <= 1.0 for k in rates) and 0.0 <= one["real_again"]["died_not_again"] <= 1.0
    with pytest.raises(SystemExit):
        gap.parse_args(["--agent", "x", "--states", "0"])
    seen = min(json.loads((tiny_world_model / "levels.json").read_text())["level_seeds"])
    with pytest.raises(SystemExit, match="--start-level .* were seen in training"):  # the model's levels are refused
        gap.main([*argv, "--start-level", str(seen), "--num-levels", "1"])
