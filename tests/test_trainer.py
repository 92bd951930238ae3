"""The shared trainer: schedule, data order, exact resume, DDP, non-finite loss, config checks."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from genie_env.checkpoint import CheckpointError
from genie_env.data.dataset import WindowDataset
from genie_env.models.common import StepResult, seed_everything
from genie_env.models.tokenizer import Tokenizer, TokenizerObjective
from genie_env.presets import tokenizer_preset
from genie_env.trainer import NonFiniteLossError, StepSampler, TrainConfig, Trainer, lr_at

REPO = Path(__file__).resolve().parents[1]
TINY = tokenizer_preset("tiny")


def make_trainer(data, out, resume=False, dataset=None, **train):
    cfg = dataclasses.replace(TINY.train, **train)
    seed_everything(cfg.seed)
    model = Tokenizer(TINY.model)
    return Trainer(TokenizerObjective(model), dataset or WindowDataset(data, window=1), cfg, out, "tokenizer",
                   TINY.model, resume=resume)  # fmt: skip


def weights(run: Path) -> dict[str, torch.Tensor]:
    latest = json.loads((run / "latest.json").read_text())["path"]
    return load_file(str(run / latest / "model.safetensors"))


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(100, cfg) == pytest.approx(0.1)
    assert lr_at(55, cfg) == pytest.approx(0.55)


def test_step_sampler_resumes_mid_stream_and_splits_ranks():
    full = StepSampler(50, 8, rank=0, world=1, seed=3)
    it = iter(full)
    stream = [next(it) for _ in range(14)]  # crosses an epoch (6 batches of 8 per epoch)
    resumed = iter(StepSampler(50, 8, rank=0, world=1, seed=3, start=9))
    assert [next(resumed) for _ in range(5)] == stream[9:]
    r0, r1 = next(iter(StepSampler(50, 8, 0, 2, 3))), next(iter(StepSampler(50, 8, 1, 2, 3)))
    assert r0 + r1 == stream[0]


class _Killer(torch.utils.data.Dataset):
    """Wraps a dataset and raises KeyboardInterrupt at the n-th item, like a kill mid-run."""

    def __init__(self, base, n):
        self.base, self.n, self.seen = base, n, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.seen += 1
        if self.seen > self.n:
            raise KeyboardInterrupt
        return self.base[i]


def test_killed_run_resumes_bit_for_bit(tiny_dataset, tmp_path):
    make_trainer(tiny_dataset, tmp_path / "straight").fit()
    base = WindowDataset(tiny_dataset, window=1)
    killed = make_trainer(tiny_dataset, tmp_path / "killed", dataset=_Killer(base, 8 * 13))  # dies in step 14
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert json.loads((tmp_path / "killed" / "latest.json").read_text())["step"] == 10
    make_trainer(tiny_dataset, tmp_path / "killed", resume=True).fit()
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_different_config_and_fresh_run_refuses_existing(tiny_dataset, tmp_path):
    make_trainer(tiny_dataset, tmp_path / "run").fit()
    with pytest.raises(CheckpointError, match=r"differing fields train\.lr \(0\.002 vs 0\.01\)"):
        make_trainer(tiny_dataset, tmp_path / "run", resume=True, lr=0.01)
    with pytest.raises(CheckpointError, match="already has checkpoints: pass --resume"):
        make_trainer(tiny_dataset, tmp_path / "run")
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        make_trainer(tiny_dataset, tmp_path / "empty", resume=True)
    make_trainer(tiny_dataset, tmp_path / "run", resume=True, log_every=1)  # bookkeeping may change


class _NaNAt(nn.Module):
    """An objective whose loss turns NaN at a given step."""

    def __init__(self, step):
        super().__init__()
        self.model = nn.Linear(2, 1)
        self.calls, self.step = 0, step

    def forward(self, batch):
        self.calls += 1
        loss = self.model(batch["x"]).pow(2).mean()
        return StepResult(loss * float("nan") if self.calls > self.step else loss, {})


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path):
    data = [{"x": torch.randn(2)} for _ in range(64)]
    cfg = TrainConfig(steps=20, batch_size=4, checkpoint_every=5, num_workers=0, log_every=1, warmup_steps=1)
    trainer = Trainer(_NaNAt(7), data, cfg, tmp_path, "toy", cfg)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 7.*Last good checkpoint: .*step_0000005"):
        trainer.fit()
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 5
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000005"]


def test_ddp_with_two_gloo_processes_matches_one_process(tiny_dataset, tmp_path):
    common = ["--preset", "tiny", "--data", str(tiny_dataset), "--train.steps", "6", "--train.log-every", "1",
              "--train.num-workers", "0"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    one_out = str(tmp_path / "one")
    one = subprocess.run([sys.executable, "-m", "genie_env.cli.train_tokenizer", *common, "--out", one_out],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    # --standalone: torchrun picks a free port itself (freeing one and handing it over races other runs)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "genie_env.cli.train_tokenizer", *common, "--out", str(tmp_path / "two")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]

    def losses(run):
        return [json.loads(line)["tokenizer/loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    # the same losses up to float32 summation order (the all-reduce averages in another order; AVX512 kernels round
    # differently from AVX2 ones: 1.3e-4 relative seen at step 4 on one)
    assert one == pytest.approx(two, rel=1e-3, abs=1e-6)
    assert one[-1] < one[0]


class _Regression(nn.Module):
    """A linear-regression objective: deterministic, so accumulation can be compared exactly."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Linear(3, 1)

    def forward(self, batch):
        err = self.model(batch["x"]).squeeze(-1) - batch["y"]
        return StepResult(err.pow(2).mean(), {"abs_err": err.abs().mean()})


def test_gradient_accumulation_matches_the_same_global_batch(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = [{"x": torch.randn(3, generator=g), "y": torch.randn((), generator=g)} for _ in range(64)]
    finals = []
    for accum in (1, 4):
        cfg = TrainConfig(steps=6, batch_size=8, grad_accum=accum, num_workers=0, warmup_steps=1, log_every=1)
        objective = _Regression()
        Trainer(objective, data, cfg, tmp_path / f"accum{accum}", "toy", cfg).fit()
        finals.append(objective.model.weight.detach().clone())
    assert torch.allclose(finals[0], finals[1], atol=1e-6)
    with pytest.raises(ValueError, match="--train.batch-size 8 must be divisible by --train.grad-accum 3"):
        TrainConfig(batch_size=8, grad_accum=3)


def test_weight_decay_falls_on_weight_matrices_only():
    from genie_env.models.dynamics import DynamicsConfig, DynamicsModel
    from genie_env.models.tokenizer import TokenizerConfig
    from genie_env.trainer import parameter_groups

    model = torch.nn.ModuleDict({
        "dyn": DynamicsModel(DynamicsConfig(codebook_size=8, grid=2, dim=16, depth=1, heads=2, context_frames=2)),
        "tok": Tokenizer(TokenizerConfig(patch=16, channels=8, blocks=1, embed_dim=4, codebook_size=8)),
    })  # fmt: skip
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decayed and all(n.endswith("weight") for n in decayed)
    assert all(p.ndim >= 2 for p in decay["params"])
    for never in ("token_emb.weight", "action_emb.weight", "codebook", "norm", "bias", "pos_spatial"):
        assert not any(never in n for n in decayed), never
    assert any("codebook" in n for n in kept) and any("token_emb" in n for n in kept)
    assert len(decayed) + len(kept) == len(list(model.parameters()))


def test_checkpoints_record_file_digests_refuse_flipped_bytes_and_non_finite_weights(tiny_dataset, tmp_path):
    trainer = make_trainer(tiny_dataset, tmp_path / "run", steps=4)
    trainer.fit()
    ckpt = Path(json.loads((tmp_path / "run" / "latest.json").read_text())["path"])
    ckpt = tmp_path / "run" / ckpt
    meta = json.loads((ckpt / "config.json").read_text())
    assert set(meta["files_sha256"]) == {"model.safetensors", "optimizer.safetensors", "trainer_state.json"}
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # a flipped byte inside the tensors: safetensors itself would load it
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt checkpoint file .*model.safetensors: its bytes do not match"):
        make_trainer(tiny_dataset, tmp_path / "run", steps=4, resume=True)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="weights are not finite at step 4; not saved. Last good checkpoint"):
        trainer.save()


def test_a_resumed_run_logs_each_step_once(tiny_dataset, tmp_path):
    make_trainer(tiny_dataset, tmp_path / "run", steps=6, checkpoint_every=4, log_every=1).fit()
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    # as if killed after step 6 was logged but before it was saved: resume from step 4
    (tmp_path / "run" / "latest.json").write_text(json.dumps({"step": 4, "path": "checkpoints/step_0000004"}))
    make_trainer(tiny_dataset, tmp_path / "run", steps=6, checkpoint_every=4, log_every=1, resume=True).fit()
    steps = [json.loads(r)["step"] for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_other_data_naming_it(tiny_dataset, tmp_path):
    from genie_env.cli import train_tokenizer

    from genie_env.data.collect import CollectConfig

    from .conftest import collect_with_policy

    other = tmp_path / "other_data"
    collect_with_policy(CollectConfig(out=str(other), frames=300, num_envs=4, progress=False, seed=3))
    args = train_tokenizer.default_args("tiny")
    run = tmp_path / "run"
    first = dataclasses.replace(args, data=str(tiny_dataset), out=str(run),
                                train=dataclasses.replace(args.train, steps=10, checkpoint_every=5))  # fmt: skip
    train_tokenizer.run(first)
    with pytest.raises(CheckpointError, match=rf"differing fields datasets \(\[.*{tiny_dataset}.* vs \[.*{other}"):
        train_tokenizer.run(dataclasses.replace(first, data=str(other), resume=True))


def test_a_run_resumes_after_a_config_field_was_added_at_its_default(tiny_dataset, tmp_path):
    make_trainer(tiny_dataset, tmp_path / "run", steps=4, checkpoint_every=2).fit()
    ckpt = tmp_path / "run" / json.loads((tmp_path / "run" / "latest.json").read_text())["path"]
    meta = json.loads((ckpt / "config.json").read_text())
    del meta["config"]["kmeans_init"], meta["train"]["beta2"]  # as written before these fields existed
    (ckpt / "config.json").write_text(json.dumps(meta))
    make_trainer(tiny_dataset, tmp_path / "run", steps=4, resume=True)  # no "differing fields"
    meta["config"]["channels"] += 1  # a real difference is still refused
    (ckpt / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"model.channels \(17 vs 16\)"):
        make_trainer(tiny_dataset, tmp_path / "run", steps=4, resume=True)


def test_train_compile_without_a_cpp_compiler_says_so_before_training(tiny_dataset, tmp_path):
    """`--train.compile` on CPU needs inductor's C++ compiler: without one the Trainer refuses at once, naming the
    flag and what to do, and writes nothing, instead of failing at the first step with inductor's own error."""
    import torch._inductor.config as inductor_config

    from genie_env.models import inductor

    inductor._probe.cache_clear()  # a probe passed earlier in this process would not ask the compiler again
    try:
        with inductor_config.patch({"cpp.cxx": ("no-such-c++-compiler",)}):
            with pytest.raises(RuntimeError, match=r"--train.compile.*C\+\+ compiler.*leave --train.compile off"):
                make_trainer(tiny_dataset, tmp_path / "run", compile=True)
    finally:
        inductor._probe.cache_clear()
    assert not (tmp_path / "run").exists()


def test_train_compile_trains_the_tokenizer_as_eager_does(tiny_dataset, tmp_path):
    """`--train.compile` on CPU (inductor): the tokenizer's first step has eager's losses and, with k-means and the
    codebook bookkeeping left eager, the same codebook; torch 2.13's inductor failed on that bookkeeping before."""
    runs = {}
    for compile in (False, True):
        metrics = make_trainer(tiny_dataset, tmp_path / str(compile), compile=compile, steps=1, log_every=1).fit()
        runs[compile] = metrics, weights(tmp_path / str(compile))
    (eager, w_eager), (compiled, w_compiled) = runs[False], runs[True]
    for name in ("tokenizer/loss", "tokenizer/recon_loss", "tokenizer/codebook_loss", "charts/grad_norm"):
        assert compiled[name] == pytest.approx(eager[name], rel=1e-3, abs=1e-6), name
    for name in ("quantizer.codebook", "quantizer.ema_sum", "quantizer.recent"):
        torch.testing.assert_close(w_compiled[name], w_eager[name], rtol=1e-4, atol=1e-4)
    initial = make_trainer(tiny_dataset, tmp_path / "unfitted").model.quantizer.codebook
    assert not torch.equal(w_eager["quantizer.codebook"], initial)  # k-means did run: the codebooks are not the seed's
