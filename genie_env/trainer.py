"""The one training loop every model uses.

AdamW with linear warmup and cosine decay, gradient clipping and accumulation, bf16 autocast on
CUDA (fp32 on CPU unless asked), optional `torch.compile`, DistributedDataParallel under `torchrun`.

A model plugs in as an *objective*: an `nn.Module` whose `forward(batch)` returns a `StepResult`
(the loss and named metrics) and that holds the model to checkpoint as `objective.model`.

Checkpoints (`RUN/checkpoints/step_NNNNNNN/`, newest named in `RUN/latest.json`) hold the weights,
the optimizer state and RNG state (safetensors) and the step and configs (JSON). The data order is
a pure function of (seed, step), so `resume=True` continues a killed run exactly: on CPU, 10 steps +
kill + 10 resumed steps equal 20 straight steps bit for bit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from genie_env._compat import fast_bf16
from genie_env._io import DirLock, GenieError, atomic_write_bytes, atomic_write_json
from genie_env.checkpoint import (
    OPTIMIZER,
    TRAINER_STATE,
    CheckpointError,
    config_from_dict,
    latest_checkpoint,
    load_tensors,
    load_weights,
    read_config,
    resume_mismatches,
    save_checkpoint,
    verify_file,
)
from genie_env.models.common import StepResult
from genie_env.models.inductor import require_inductor

logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16"]
# settings runs record only since a later version (the datasets' identities, the game): a checkpoint written
# before resumes without that check
RECORDED_SINCE = {"datasets", "game"}
# Fields that may change between a run and its resumption (they do not change the math).
RESUMABLE_CHANGES = {"log_every", "image_every", "checkpoint_every", "keep_checkpoints", "num_workers", "max_minutes"}


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping settings shared by every model."""

    steps: int = 10_000
    """optimizer steps"""
    batch_size: int = 64
    """global batch per optimizer step (split over grad_accum micro-steps and DDP processes)"""
    grad_accum: int = 1
    """micro-batches accumulated per optimizer step"""
    lr: float = 1e-3
    """peak learning rate"""
    min_lr_ratio: float = 0.1
    """the cosine schedule ends at lr * min_lr_ratio"""
    warmup_steps: int = 200
    """linear warmup steps"""
    weight_decay: float = 0.0
    """AdamW weight decay, on weight matrices only (never on norms, biases, embeddings or a VQ codebook)"""
    beta1: float = 0.9
    """AdamW beta1"""
    beta2: float = 0.99
    """AdamW beta2"""
    grad_clip: float = 1.0
    """clip the global gradient norm to this (0 = no clipping)"""
    seed: int = 0
    """seed of initialisation, data order and every random draw in training"""
    precision: Precision = "auto"
    """auto (bf16 autocast where bf16 is fast: a CUDA GPU, or a CPU with AVX512-BF16 or AMX; fp32 elsewhere),
    fp32, or bf16 (autocast on any device: slow on CPUs without those instructions)"""
    compile: bool = False
    """wrap the objective in torch.compile"""
    num_workers: int = 1
    """DataLoader worker processes"""
    log_every: int = 25
    """steps between scalar logs (TensorBoard and metrics.jsonl)"""
    image_every: int = 500
    """steps between image grids in TensorBoard (0 = never)"""
    checkpoint_every: int = 500
    """steps between checkpoints"""
    keep_checkpoints: int = 2
    """how many recent checkpoints to keep"""
    max_minutes: float = 0.0
    """stop (with a checkpoint) after this much wall time; 0 = no limit"""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("--train.steps, --train.batch-size and --train.grad-accum must be >= 1")
        if self.precision not in get_args(Precision):
            raise ValueError(f"unknown --train.precision {self.precision!r}: use one of {get_args(Precision)}")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"--train.batch-size {self.batch_size} must be divisible by --train.grad-accum {self.grad_accum}"
            )


class NonFiniteLossError(GenieError, RuntimeError):
    """The loss became NaN or infinite; the run stopped without writing a checkpoint."""


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * cfg.min_lr_ratio at cfg.steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


class StepSampler(Sampler[list[int]]):
    """Endless micro-batches of dataset indices for one rank, a pure function of (seed, position).

    Global micro-batch k takes the next `global_batch` indices of epoch e's permutation
    (seeded by seed + e); rank r gets the r-th equal slice. Starting at `start` skips exactly the
    micro-batches a resumed run has already used.
    """

    def __init__(self, n: int, global_batch: int, rank: int, world: int, seed: int, start: int = 0) -> None:
        if n < global_batch:
            raise ValueError(f"dataset has {n} samples, fewer than one batch of {global_batch}")
        self.n, self.global_batch, self.rank, self.world = n, global_batch, rank, world
        self.local = global_batch // world
        self.seed, self.start = seed, start
        self.per_epoch = n // global_batch

    def __iter__(self):
        k, epoch, perm = self.start, -1, None
        while True:
            e, within = divmod(k, self.per_epoch)
            if e != epoch:
                epoch, perm = e, torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + e))
            lo = within * self.global_batch + self.rank * self.local
            yield perm[lo : lo + self.local].tolist()
            k += 1


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as nanoGPT makes them: weight decay on the weight matrices of linear and conv layers
    (attention projections included) and on nothing else: not on norms, biases, embedding tables, learned
    position embeddings or a VQ codebook. Frozen parameters are left out."""
    decay, no_decay, seen = [], [], set()
    for owner in module.modules():
        for name, p in owner.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            matrix = name == "weight" and isinstance(owner, (nn.Linear, nn.modules.conv._ConvNd))
            (decay if matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return (dist.get_rank() if world > 1 else 0), world, device


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    sd = opt.state_dict()
    tensors = {f"state.{i}.{k}": v for i, s in sd["state"].items() for k, v in s.items()}
    return tensors, sd["param_groups"]


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def trains_in_bf16(precision: Precision, device: str) -> bool:
    """Whether training with `precision` (`TrainConfig.precision`) on `device` ("cpu", "cuda") runs under bf16
    autocast: bf16 always, auto where bf16 is fast (`_compat.fast_bf16`)."""
    return precision == "bf16" or (precision == "auto" and fast_bf16(device))


class Trainer:
    """Trains `objective` on `dataset` into run directory `out` (see the module docstring).

    `kind` and `model_config` are stored in every checkpoint so the model can be rebuilt from it.
    `images_fn(model, batch) -> {name: uint8 (H, W, 3)}` adds picture logs.
    """

    def __init__(
        self,
        objective: nn.Module,
        dataset: Dataset,
        cfg: TrainConfig,
        out: str | Path,
        kind: str,
        model_config: Any,
        resume: bool = False,
        images_fn=None,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.cfg, self.out, self.kind, self.model_config = cfg, Path(out), kind, model_config
        self.extra_config = extra_config or {}
        self.rank, self.world, self.device = _setup_distributed()
        if cfg.compile and self.device.type == "cpu":  # inductor builds C++ here: ask before anything is trained
            require_inductor("--train.compile (TrainConfig.compile)", "leave --train.compile off")
        micro = cfg.batch_size // cfg.grad_accum
        if micro % self.world:
            raise ValueError(f"--batch-size / --grad-accum = {micro} must be divisible by {self.world} processes")
        self.objective = objective.to(self.device)
        self.model: nn.Module = objective.model
        self.dataset, self.images_fn = dataset, images_fn
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.objective, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)
        )
        self.step = 0
        self.elapsed = 0.0
        existing = latest_checkpoint(self.out)
        if resume:
            if existing is None:
                raise CheckpointError(f"--resume: {self.out} has no checkpoint to resume from")
            self._restore(existing)
        elif existing is not None:
            raise CheckpointError(
                f"{self.out} already has checkpoints: pass --resume to continue, or choose another --out"
            )
        self.global_micro = micro

    # ------------------------------------------------------------------------ checkpoints
    def _configs(self) -> dict[str, Any]:
        return {"train": asdict(self.cfg), **self.extra_config}

    def save(self) -> Path:
        """Write a checkpoint of the current step (rank 0 only) and point latest.json at it."""
        path = self.out / "checkpoints" / f"step_{self.step:07d}"
        if self.rank != 0:
            return path
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise NonFiniteLossError(
                f"{self.kind}: weights are not finite at step {self.step}; not saved. Last good checkpoint: "
                f"{latest_checkpoint(self.out) or 'none'} (lower --train.lr or check the data)"
            )
        opt_tensors, groups = _optimizer_tensors(self.optimizer)
        opt_tensors["rng.torch"] = torch.get_rng_state()
        state = {"step": self.step, "elapsed_s": self.elapsed, "param_groups": groups}
        save_checkpoint(
            path, self.model, self.kind, self.model_config, extra=self._configs(),
            tensors={OPTIMIZER: opt_tensors}, json_files={TRAINER_STATE: state},
        )  # fmt: skip
        atomic_write_json(self.out / "latest.json", {"step": self.step, "path": str(path.relative_to(self.out))})
        old = sorted((self.out / "checkpoints").glob("step_*"))[: -self.cfg.keep_checkpoints]
        for stale in old:
            shutil.rmtree(stale, ignore_errors=True)
        return path

    def _restore(self, path: Path) -> None:
        meta = read_config(path, kind=self.kind)
        extras = {k: v for k, v in meta.items() if k not in ("format_version", "kind", "config", "files_sha256")}
        saved = {"model": meta["config"], **extras}  # every recorded setting, so a dropped one is caught too
        # a field added to a config since the run started, at its default, is the same config
        saved["model"] = asdict(config_from_dict(type(self.model_config), meta["config"], str(path)))
        if isinstance(saved.get("train"), dict):
            saved["train"] = asdict(config_from_dict(TrainConfig, saved["train"], str(path)))
        now = {"model": asdict(self.model_config), **self._configs()}
        for key in RECORDED_SINCE - set(saved):  # a checkpoint from before the setting was recorded
            now.pop(key, None)
        diff = resume_mismatches(saved, now, {f"train.{key}" for key in RESUMABLE_CHANGES})
        if diff:
            raise CheckpointError(f"config does not match checkpoint {path}: differing fields " + "; ".join(diff))
        load_weights(self.model, path)
        tensors = load_tensors(verify_file(path, OPTIMIZER))
        try:
            state = json.loads(verify_file(path, TRAINER_STATE).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"corrupt or missing {path / TRAINER_STATE}: {e}") from e
        if len(state["param_groups"]) != len(self.optimizer.param_groups):
            raise CheckpointError(
                f"{path} was written by an older genie-env whose optimizer decayed every parameter (one group): it "
                "cannot resume under today's (weights decayed, norms and embeddings not); fine-tune from it instead"
            )
        _load_optimizer(self.optimizer, tensors, state["param_groups"])
        torch.set_rng_state(tensors["rng.torch"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
        self._drop_metrics_after(self.step)
        logger.info("resumed %s at step %d", path, self.step)

    # ------------------------------------------------------------------------ training
    def _autocast(self):
        dev = self.device.type
        return torch.autocast(dev, dtype=torch.bfloat16) if trains_in_bf16(self.cfg.precision, dev) else nullcontext()

    def _loader(self) -> DataLoader:
        sampler = StepSampler(len(self.dataset), self.global_micro, self.rank, self.world, self.cfg.seed,
                              start=self.step * self.cfg.grad_accum)  # fmt: skip
        workers = self.cfg.num_workers
        return DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=workers, persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(self.cfg.seed), pin_memory=self.device.type == "cuda",
        )  # fmt: skip

    def fit(self) -> dict[str, float]:
        """Train to cfg.steps (or the time limit); returns the last logged metrics. Under torchrun it ends
        by tearing down the process group, so a Trainer fits once. The run directory is locked meanwhile
        (`genie_env._io.DirLock`): a second run into it is refused."""
        with DirLock(self.out) if self.rank == 0 else nullcontext():
            return self._fit()

    def _fit(self) -> dict[str, float]:
        cfg = self.cfg
        model = self.objective
        if self.world > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            model = torch.compile(model)
        writer = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.out.mkdir(parents=True, exist_ok=True)
            writer = SummaryWriter(str(self.out / "tb"))
        data = iter(self._loader())
        bar = tqdm(total=cfg.steps, initial=self.step, disable=self.rank != 0, desc=f"train {self.kind}", unit="step")
        last: dict[str, float] = {}
        sums: dict[str, float] = {}  # metrics summed since the last log, n_summed steps
        n_summed = 0
        window_start, window_items, started = time.perf_counter(), 0, time.perf_counter()
        elapsed0 = self.elapsed
        try:
            while self.step < cfg.steps:
                lr = lr_at(self.step, cfg)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                totals: dict[str, torch.Tensor] = {}
                for micro in range(cfg.grad_accum):
                    batch = {k: v.to(self.device, non_blocking=True) for k, v in next(data).items()}
                    sync = self.world == 1 or micro == cfg.grad_accum - 1
                    with nullcontext() if sync else model.no_sync(), self._autocast():
                        result: StepResult = model(batch)
                    (result.loss / cfg.grad_accum).backward()
                    for k, v in {"loss": result.loss, **result.metrics}.items():
                        totals[k] = totals.get(k, 0.0) + v.detach().float() / cfg.grad_accum
                    window_items += next(iter(batch.values())).shape[0] * self.world
                keys = sorted(totals)
                vec = torch.stack([totals[k] for k in keys])
                if self.world > 1:
                    dist.all_reduce(vec)
                    vec /= self.world
                if not torch.isfinite(vec[keys.index("loss")]):
                    good = latest_checkpoint(self.out)
                    raise NonFiniteLossError(
                        f"{self.kind}: loss is {vec[keys.index('loss')].item()} at step {self.step}; stopped without "
                        f"saving. Last good checkpoint: {good or 'none'} (lower --train.lr or check the data)"
                    )
                grad_norm = nn.utils.clip_grad_norm_(self.objective.parameters(), cfg.grad_clip or float("inf"))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.elapsed = elapsed0 + time.perf_counter() - started
                for k, v in zip(keys, vec.tolist()):
                    sums[k] = sums.get(k, 0.0) + v
                n_summed += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.perf_counter()
                    rate = window_items / max(now - window_start, 1e-9)
                    window_start, window_items = now, 0
                    last = {**{f"{self.kind}/{k}": v / n_summed for k, v in sums.items()}, "charts/lr": lr,
                            "charts/grad_norm": float(grad_norm), "charts/samples_per_s": rate}  # fmt: skip
                    sums, n_summed = {}, 0
                    self._log(writer, last)
                    bar.set_postfix(loss=f"{last[self.kind + '/loss']:.4g}", samples_s=f"{rate:.0f}")
                if writer is not None and self.images_fn and cfg.image_every and self.step % cfg.image_every == 0:
                    for name, image in self.images_fn(self.model, batch).items():
                        writer.add_image(f"{self.kind}/{name}", image, self.step, dataformats="HWC")
                if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self.save()
                if cfg.max_minutes and self.elapsed > cfg.max_minutes * 60:
                    logger.warning("time limit of %.1f min reached at step %d", cfg.max_minutes, self.step)
                    break
            self.save()
            if self.world > 1:
                dist.barrier()  # every rank is done with the process group before any rank tears it down
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            if self.world > 1 and dist.is_initialized():
                # without this, a rank can exit with gloo's threads still running: "terminate called
                # without an active exception" (SIGABRT) at interpreter exit
                dist.destroy_process_group()
        return last

    def _drop_metrics_after(self, step: int) -> None:
        """Keep only the metrics.jsonl rows up to `step`: a resumed run logs the steps after it again."""
        path = self.out / "metrics.jsonl"
        if self.rank != 0 or not path.exists():
            return
        rows = path.read_text().splitlines(keepends=True)
        kept = [row for row in rows if row.strip() and json.loads(row)["step"] <= step]
        if len(kept) != len(rows):
            atomic_write_bytes(path, "".join(kept).encode())

    def _log(self, writer, metrics: dict[str, float]) -> None:
        if writer is None:
            return
        for k, v in metrics.items():
            writer.add_scalar(k, v, self.step)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, "elapsed_s": round(self.elapsed, 2), **metrics}) + "\n")
