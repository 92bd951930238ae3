"""The examples in examples/ run, at tiny budgets, against a tiny world model and agent built by the tests."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str) -> dict:
    """The example's globals, without running its __main__ block."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"example_{name}")


def test_example_train_ppo_in_dream(tiny_world_model, tmp_path):
    out = tmp_path / "ppo.zip"
    model = example("train_ppo_in_dream")["main"](world_model=str(tiny_world_model), steps=128, num_envs=2,
                                                   horizon=5, out=str(out))  # fmt: skip
    assert model.num_timesteps >= 128 and out.exists()


def test_example_world_model_rollout(tiny_world_model, tmp_path):
    psnr = example("world_model_rollout")["main"](world_model=str(tiny_world_model), horizon=4,
                                                   gif=str(tmp_path / "r.gif"))  # fmt: skip
    assert np.isfinite(psnr) and 0 < psnr < 60 and (tmp_path / "r.gif").stat().st_size > 1000


def test_example_evaluate_on_real(tiny_world_model, tiny_agent):
    results = example("evaluate_on_real")["main"](agent=str(tiny_agent), world_model=str(tiny_world_model),
                                                   episodes=2, num_envs=2)  # fmt: skip
    assert set(results) == {"agent", "random"} and all(r["episodes"] == 2 for r in results.values())


def test_example_game_is_collected_by_the_genie_command_from_its_directory(tmp_path):
    """The README's walkthrough: `genie collect --env-id sprite_game:SpriteGame-v0` run in examples/ finds the
    module in the working directory (a console script's sys.path does not hold it by itself)."""
    import json
    import subprocess
    import sys

    from genie_env.data.manifest import read_manifest

    genie = Path(sys.executable).parent / "genie"
    out = tmp_path / "sprite"
    cmd = [str(genie), "collect", "--env-id", "sprite_game:SpriteGame-v0", "--env-kwargs", json.dumps({"targets": 2}),
           "--out", str(out), "--frames", "400", "--num-envs", "2", "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=EXAMPLES, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = read_manifest(out)
    assert manifest.game == "sprite_game:SpriteGame-v0" and manifest.num_actions == 5
    assert manifest.env["frame_shape"] == [72, 96, 3] and manifest.counts["frames"] >= 400
