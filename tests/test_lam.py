"""Genie's latent action model: shapes, causality (the decoder learns x_{t+1} only through a_t), the
codebook's health, and `genie train-lam` on a tiny dataset (frames only), resumed and reloaded."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from genie_env.checkpoint import CheckpointError
from genie_env.models import load_lam
from genie_env.models.lam import LAMConfig, LAMObjective, LatentActionModel
from genie_env.presets import lam_preset

TINY = lam_preset("tiny").model


@pytest.fixture(scope="module")
def lam_run(tiny_dataset, tmp_path_factory):
    """A tiny LAM trained on the tiny dataset's frames (RUN directory)."""
    from genie_env.cli.train_lam import default_args, run

    out = tmp_path_factory.mktemp("lam") / "run"
    run(dataclasses.replace(default_args("tiny"), data=str(tiny_dataset), out=str(out)))
    return out


@pytest.fixture(scope="module")
def latent_tokens(tiny_dataset, tiny_tokenizer_run, lam_run, tmp_path_factory):
    """The tiny dataset tokenized with its actions replaced by the tiny LAM's (DIR, manifest)."""
    from genie_env.models.tokenize import tokenize_dataset

    out = tmp_path_factory.mktemp("latent") / "tokens"
    return out, tokenize_dataset(tiny_dataset, tiny_tokenizer_run, out, progress=False, lam=lam_run)


@pytest.fixture(scope="module")
def latent_dynamics(latent_tokens, lam_run, tmp_path_factory):
    """A tiny dynamics model trained on the latent-action tokens (RUN directory)."""
    from genie_env.cli.train_dynamics import default_args, run

    out = tmp_path_factory.mktemp("latent") / "dyn"
    run(dataclasses.replace(default_args("tiny"), tokens=(str(latent_tokens[0]),), out=str(out), preset="tiny",
                            actions="latent", lam=str(lam_run)))  # fmt: skip
    return out


def clip(batch: int = 2, frames: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (batch, frames, 64, 64, 3), dtype=np.uint8))


def test_shapes_and_metrics():
    torch.manual_seed(0)
    model = LatentActionModel(TINY)
    out = model(clip())
    assert out.actions.shape == (2, 3) and out.actions.dtype == torch.int64
    assert int(out.actions.min()) >= 0 and int(out.actions.max()) < TINY.num_actions
    assert out.prediction.shape == (2, 3, 3, 64, 64) and torch.isfinite(out.loss)
    result = LAMObjective(model)({"frames": clip()})
    assert {"psnr", "copy_last_psnr", "action_usage", "action_perplexity"} <= set(result.metrics)
    model.eval()
    assert torch.equal(model.infer_actions(clip()), model(clip()).actions)
    assert model.predict(clip()[:, :3], torch.zeros(2, 3, dtype=torch.long)).shape == (2, 3, 64, 64, 3)


def test_the_decoder_sees_the_future_only_through_the_latent_action():
    torch.manual_seed(0)
    model = LatentActionModel(TINY).eval()
    frames = clip()
    changed = frames.clone()
    changed[:, -1] = 255 - changed[:, -1]  # a different last frame
    a, b = model(frames), model(changed)
    # predictions of x_2..x_{T-1} use only earlier frames and actions: unchanged
    assert torch.allclose(a.prediction[:, :-1], b.prediction[:, :-1], atol=1e-5)
    # with the latent actions fixed, x_T's prediction does not depend on x_T at all
    actions = a.actions
    assert torch.allclose(model.predict(frames[:, :-1], actions), model.predict(changed[:, :-1], actions))
    # the encoder's action for the last transition does see x_T
    z_a, _ = model.encode(frames)
    z_b, _ = model.encode(changed)
    assert torch.allclose(z_a[:, :-1], z_b[:, :-1], atol=1e-5) and not torch.allclose(z_a[:, -1], z_b[:, -1])


def test_bad_inputs_are_named():
    model = LatentActionModel(TINY)
    with pytest.raises(ValueError, match="clips of 2..4 frames"):
        model(clip(frames=5))
    with pytest.raises(ValueError, match="uint8"):
        model(clip().float())
    with pytest.raises(ValueError, match="latent action out of range: this LAM has 4"):
        model.predict(clip()[:, :3], torch.full((2, 3), 4))
    with pytest.raises(ValueError, match="num-actions must be >= 2"):
        LAMConfig(num_actions=1)
    with pytest.raises(ValueError, match="patch 7 must divide"):
        LAMConfig(patch=7)


def test_an_unused_latent_action_is_restarted():
    torch.manual_seed(0)
    model = LatentActionModel(LAMConfig(**{**TINY.__dict__, "dead_code_steps": 2}))
    model.train()
    for _ in range(4):
        model(clip(frames=4, seed=1))
    q = model.quantizer
    # no code stays unused for longer than the restart horizon
    assert int(q.steps_unused.max()) <= 2


def test_train_lam_cli_trains_resumes_and_reloads(tiny_dataset, tmp_path):
    from genie_env.cli.train_lam import default_args, run

    args = default_args("tiny")
    out = tmp_path / "lam"
    first = run(dataclasses.replace(args, data=str(tiny_dataset), out=str(out)))
    assert np.isfinite(first["lam/loss"]) and "lam/action_usage" in first
    config = json.loads((out / "checkpoints" / "step_0000020" / "config.json").read_text())
    assert config["kind"] == "lam" and config["game"] == "coinrun" and config["window"] == 4
    model = load_lam(out)
    assert model.cfg == args.model and not model.training
    again = dataclasses.replace(args, data=str(tiny_dataset), out=str(out), resume=True)
    run(again)  # a finished run resumes to its end: nothing more to train
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1] == "step_0000020"
    other = dataclasses.replace(again, model=dataclasses.replace(args.model, num_actions=5))
    with pytest.raises(CheckpointError, match=r"model.num_actions \(4 vs 5\)"):
        run(other)


def test_normalized_mutual_info_matches_scikit_learn():
    from sklearn.metrics import normalized_mutual_info_score

    from genie_env.metrics import normalized_mutual_info

    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 500)
    y = (x + (rng.random(500) < 0.3) * rng.integers(0, 15, 500)) % 15
    table = np.zeros((6, 15))
    np.add.at(table, (x, y), 1)
    assert normalized_mutual_info(table) == pytest.approx(normalized_mutual_info_score(x, y), abs=1e-9)
    assert normalized_mutual_info(np.eye(4) * 5) == pytest.approx(1.0)
    assert normalized_mutual_info(np.ones((1, 3))) == 0.0


def test_horizontal_shift_finds_the_shift():
    from genie_env.evaluate.lam import horizontal_shift

    frame = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    right = np.roll(frame, 3, axis=2)
    left = np.roll(frame, -2, axis=2)
    assert horizontal_shift(np.concatenate([frame, frame]), np.concatenate([right, left])).tolist() == [3, -2]


def test_eval_lam_reports_the_table_the_effects_and_the_psnr(tiny_dataset, lam_run, tmp_path):
    from genie_env.cli.eval_lam import main

    main(["--lam", str(lam_run), "--data", str(tiny_dataset), "--split", "train", "--max-windows", "40",
          "--out-dir", str(tmp_path / "eval")])  # fmt: skip
    result = json.loads((tmp_path / "eval" / "eval_lam.json").read_text())
    table = np.array(result["contingency_real_actions"]["counts"])
    assert table.shape == (4, 15) and table.sum() == result["transitions"] == 40 * 3
    assert np.array(result["contingency_movement"]["counts"]).sum() == table.sum()
    assert 0.0 <= result["nmi_real_actions"] <= 1.0 and 0.0 <= result["nmi_movement_classes"] <= 1.0
    assert len(result["mean_scene_shift_px"]) == 4 and result["frames"] == 120
    assert np.isfinite(result["psnr"]) and np.isfinite(result["copy_last_psnr"])
    assert (tmp_path / "eval" / "latent_actions.png").stat().st_size > 1000


def test_dynamics_trains_on_latent_actions_only(tiny_dataset, tiny_tokenizer_run, lam_run, latent_tokens,
                                                 latent_dynamics, tmp_path):  # fmt: skip
    from genie_env.cli.train_dynamics import default_args as dynamics_args
    from genie_env.cli.train_dynamics import run as train_dynamics

    from genie_env.data.format import load_shard, schema_of
    from genie_env.data.manifest import read_manifest
    from genie_env.models import load_dynamics
    from genie_env.models.lam import label_transitions
    from genie_env.models.tokenize import tokenize_dataset

    root, manifest = latent_tokens
    assert manifest.actions["kind"] == "latent" and manifest.actions["num_actions"] == 4
    tokens = load_shard(root, manifest.shards[0], schema_of(manifest))
    frames = load_shard(tiny_dataset, read_manifest(tiny_dataset).shards[0])
    expected = label_transitions(load_lam(lam_run), np.asarray(frames["frames"]), np.asarray(frames["episode_ids"]))
    assert np.array_equal(np.asarray(tokens["actions"]), expected) and expected.max() < 4

    model = load_dynamics(latent_dynamics)
    assert model.cfg.num_actions == 4  # it never saw a real action
    config = json.loads(sorted((latent_dynamics / "checkpoints").iterdir())[-1].joinpath("config.json").read_text())
    assert config["actions"]["kind"] == "latent"

    args = dataclasses.replace(dynamics_args("tiny"), tokens=(str(root),), out=str(tmp_path / "dyn"), preset="tiny")
    with pytest.raises(ValueError, match="holds 4 latent actions of LAM .*: pass --actions latent --lam"):
        train_dynamics(args)
    tokenize_dataset(tiny_dataset, tiny_tokenizer_run, tmp_path / "real_tokens", progress=False)
    with pytest.raises(ValueError, match="holds the real actions: label them first"):
        train_dynamics(dataclasses.replace(args, tokens=(str(tmp_path / "real_tokens"),), actions="latent",
                                           lam=str(lam_run)))  # fmt: skip
    with pytest.raises(ValueError, match="hold different actions"):
        train_dynamics(dataclasses.replace(args, tokens=(str(root), str(tmp_path / "real_tokens")), actions="latent",
                                           lam=str(lam_run)))  # fmt: skip


def test_eval_dynamics_drives_a_latent_dynamics_with_the_lam_s_actions(tiny_dataset, tiny_tokenizer_run,
                                                                         latent_tokens, latent_dynamics):  # fmt: skip
    from genie_env.evaluate.dynamics import evaluate_dynamics
    from genie_env.models import load_dynamics, load_tokenizer

    model, tokenizer = load_dynamics(latent_dynamics), load_tokenizer(tiny_tokenizer_run)
    result = evaluate_dynamics(model, tokenizer, latent_tokens[0], tiny_dataset, context=2, horizon=4, windows=4,
                               dreamed_leads=(), progress=False)  # fmt: skip
    assert result["actions"]["kind"] == "latent" and result["actions"]["num_actions"] == 4
    assert set(result["delta_t_psnr"]) == {4} and set(result["psnr"]) >= {1, 4}


def test_procgen_dreams_refuse_a_world_model_of_latent_actions_and_genie_env_plays_it(
    tiny_dataset, tiny_tokenizer_run, latent_dynamics, tmp_path
):
    import gymnasium

    from genie_env.world_model import load_world_model, package_world_model

    model_dir = package_world_model(tiny_tokenizer_run, latent_dynamics, tiny_dataset, tmp_path / "wm", num_contexts=4)
    assert load_world_model(model_dir).dynamics.cfg.num_actions == 4  # it loads as a world model
    with pytest.raises(ValueError, match="conditioned on 4 latent actions, not Procgen's 15: .*GenieEnv-v0 plays it"):
        gymnasium.make("GenieCoinRun-v0", world_model=str(model_dir))
    env = gymnasium.make("GenieEnv-v0", world_model=str(model_dir))
    assert env.action_space == gymnasium.spaces.Discrete(4) and env.unwrapped.action_meanings[3] == "action 3"
    env.reset(seed=0)
    frame, *_ = env.step(3)
    assert frame.shape == (64, 64, 3)
    with pytest.raises(ValueError, match=r"action 4 out of range: the game has 4 actions \(0..3\)"):
        env.step(4)


def test_map_actions_lets_procgen_dreams_play_a_latent_world_model_with_the_real_actions(
    tiny_dataset, tiny_tokenizer_run, tiny_world_model, latent_dynamics, tmp_path
):
    import shutil

    from genie_env.envs.dream import GenieEnv, GenieProcgenEnv
    from genie_env.world_model import load_world_model, package_world_model

    from .test_cli import genie

    model_dir = package_world_model(tiny_tokenizer_run, latent_dynamics, tiny_dataset, tmp_path / "wm", num_contexts=4)
    out = json.loads(genie("map-actions", "--world-model", str(model_dir), "--data", str(tiny_dataset),
                           "--labelled", "50").stdout)  # fmt: skip
    record = json.loads((model_dir / "action_map.json").read_text())
    mapping = record["real_to_latent"]
    assert out["real_to_latent"] == mapping and len(mapping) == 15 and all(0 <= a < 4 for a in mapping)
    assert record["labelled"] == 50 and np.array(record["counts"]).sum() == 50 and 0 <= record["agreement"] <= 1
    for real, row in enumerate(record["counts"]):  # each labelled real action goes to its commonest latent one
        if sum(row):
            assert mapping[real] == int(np.argmax(row))
    # the Procgen dream takes the 15 real actions, and steps the latent action each maps to
    real_env, latent_env = GenieProcgenEnv(str(model_dir), precision="fp32"), GenieEnv(str(model_dir), precision="fp32")
    assert real_env.action_space.n == 15 and real_env.action_meanings[1] == "LEFT" and latent_env.action_space.n == 4
    np.testing.assert_array_equal(real_env.reset(seed=5)[0], latent_env.reset(seed=5)[0])
    for action in (3, 14, 0):
        a, b = real_env.step(action), latent_env.step(mapping[action])
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:3] == b[1:3]
        if a[2]:
            break
    # a map that is corrupt, of another LAM, or beside a model of real actions is refused, naming the file
    path = model_dir / "action_map.json"
    path.write_text(json.dumps({**record, "real_to_latent": [9] * 15}))
    with pytest.raises(CheckpointError, match=f"corrupt action map {path}"):
        load_world_model(model_dir)
    path.write_text(json.dumps({**record, "lam": {"path": "elsewhere", "sha256": "0" * 64}}))
    with pytest.raises(CheckpointError, match="another LAM \\(elsewhere\\)"):
        load_world_model(model_dir)
    real_model = shutil.copytree(tiny_world_model, tmp_path / "real_wm")
    (real_model / "action_map.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="trained on the real actions: remove it"):
        load_world_model(real_model)
    bad = genie("map-actions", "--world-model", str(tiny_world_model), "--data", str(tiny_dataset), check=False)
    assert bad.returncode == 1 and "trained on the real actions" in bad.stderr


def test_play_latent_steps_one_latent_action_at_a_time(tiny_dataset, tiny_tokenizer_run, latent_dynamics, tmp_path):
    from genie_env.data.context import ContextSource
    from genie_env.play.session import LatentPlaySession
    from genie_env.world_model import load_world_model, package_world_model

    from .test_cli import genie

    model_dir = package_world_model(tiny_tokenizer_run, latent_dynamics, tiny_dataset, tmp_path / "wm", num_contexts=4)
    session = LatentPlaySession(load_world_model(model_dir), ContextSource.from_file(model_dir / "contexts.npz"))
    report = session.step(3)
    assert report["step"] == 1 and session.picture().shape == (64, 64, 3)
    with pytest.raises(ValueError, match="latent action 4 out of range: this world model has 4"):
        session.step(4)
    out = genie("play", "--latent", "--world-model", str(model_dir), "--max-frames", "3", "--fps", "1000").stdout
    assert "played 3 frames" in out


def test_the_latent_to_real_map_takes_each_latent_actions_commonest_real_action():
    from genie_env.models.lam import latent_to_real

    latent = np.array([0, 0, 0, 1, 1, 2])
    real = np.array([7, 7, 1, 5, 5, 7])
    # latent 0 -> 7 (twice against once), 1 -> 5, 2 -> 7, 3 (never labelled) -> 7, the commonest labelled action
    assert latent_to_real(latent, real, 4).tolist() == [7, 5, 7, 7]


def test_the_real_to_latent_map_takes_each_real_actions_commonest_latent_action():
    from genie_env.models.lam import real_to_latent

    latent = np.array([0, 0, 3, 1, 1, 1, 2])
    real = np.array([4, 4, 4, 9, 9, 7, 7])
    # real 4 -> latent 0 (twice against once), 9 -> 1, 7 -> 1 (a tie of 1 and 2: the lowest);
    # every real action no pair shows -> 1, the commonest latent action of the pairs
    expected = [1] * 15
    expected[4], expected[9], expected[7] = 0, 1, 1
    assert real_to_latent(latent, real, 4, 15).tolist() == expected


def test_behaviour_cloning_from_latent_and_from_real_labels_end_to_end(tiny_dataset, lam_run, tmp_path):
    """The BC path at a tiny scale: LAM BC with 50 labels and oracle BC both make SB3 PPO files that
    `genie evaluate` plays, and record what they cost; bad inputs are refused naming the problem."""
    import json
    import shutil

    from genie_env.cli.evaluate import EvaluateArgs
    from genie_env.cli.evaluate import run as evaluate
    from stable_baselines3 import PPO

    from genie_env.agents.bc import BCConfig, train_bc
    from genie_env.checkpoint import resolve_checkpoint

    tiny = dict(data=(str(tiny_dataset),), steps=3, batch_size=8, features="nature")
    lam_bc = train_bc(BCConfig(labels="latent", lam=str(lam_run), labelled=50, **tiny), tmp_path / "lam_bc",
                      progress=False)  # fmt: skip
    oracle = train_bc(BCConfig(labels="real", train_precision="bf16", **tiny), tmp_path / "oracle", progress=False)
    assert json.loads((tmp_path / "oracle" / "config.json").read_text())["train_precision"] == "bf16"
    with pytest.raises(ValueError, match="--train-precision 'fp16'"):
        BCConfig(labels="real", train_precision="fp16", **tiny)
    for path in (lam_bc, oracle):
        actions, _ = PPO.load(path, device="cpu").predict(np.zeros((3, 64, 64, 3), np.uint8))
        assert actions.shape == (3,) and ((0 <= actions) & (actions < 15)).all()
    rec = json.loads((tmp_path / "lam_bc" / "config.json").read_text())
    frames = rec["real_frames"]
    assert rec["method"] == "bc" and rec["real_action_labels"] == 50 and frames == video_frames(tiny_dataset)
    assert len(rec["latent_to_real"]) == 4 and all(0 <= a < 15 for a in rec["latent_to_real"])
    assert 0 <= rec["map_agreement"] <= 1 and 0 <= rec["val_accuracy"] <= 1
    assert json.loads((tmp_path / "oracle" / "config.json").read_text())["real_action_labels"] == frames
    result = evaluate(EvaluateArgs(str(lam_bc), episodes=2, num_envs=2, progress=False))
    assert result["episodes"] == 2 and result["real_frames"] == frames and result["real_action_labels"] == 50
    with pytest.raises(ValueError, match="--labelled 100000 exceeds the .* train transitions"):
        train_bc(BCConfig(labels="latent", lam=str(lam_run), labelled=100_000, **tiny), tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="--labels latent needs --lam RUN"):
        BCConfig(labels="latent", **tiny)
    other = tmp_path / "lam_maze"
    shutil.copytree(lam_run, other)
    config = resolve_checkpoint(other) / "config.json"
    meta = json.loads(config.read_text())
    config.write_text(json.dumps({**meta, "game": "maze"}))
    with pytest.raises(ValueError, match=r"learned maze, the videos are coinrun"):
        train_bc(BCConfig(labels="latent", lam=str(other), **tiny), tmp_path / "y", progress=False)


def video_frames(root) -> int:
    from genie_env.data.manifest import read_manifest

    return read_manifest(root).counts["frames"]
