"""precision="int8": the dynamics model's Linear layers in int8 (models.int8), for CPUs with VNNI or AMX."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
import torch
from torch import nn

import genie_env.models.int8 as int8
from genie_env.models.int8 import Int8Linear, quantize_linears
from genie_env.world_model import load_world_model, resolve_precision


def test_int8_linear_matches_the_float_layer_within_its_rounding():
    torch.manual_seed(0)
    linear = nn.Linear(64, 40)
    q = Int8Linear(linear)
    x = torch.randn(3, 7, 64)
    with torch.no_grad():
        want, got = linear(x), q(x)
        assert got.shape == want.shape and got.dtype == torch.float32
        # one int8 step per row and per column: well under 2% of the output's size, and not exact
        error = (got - want).abs().mean() / want.abs().mean()
        assert 0 < error < 0.02
        with torch.autocast("cpu", dtype=torch.bfloat16):  # under autocast it answers in bf16, as nn.Linear does
            assert q(x).dtype == linear(x).dtype == torch.bfloat16
        assert q(torch.randn(0, 64)).shape == (0, 40)
    assert q.weight.dtype == torch.int8 and not list(q.parameters())  # frozen: buffers only
    with pytest.raises(ValueError, match="expects 64 input features"):
        q(torch.randn(2, 63))


def test_quantize_linears_replaces_every_linear_and_says_so_where_it_cannot_compile(monkeypatch):
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Sequential(nn.Linear(16, 8), nn.LayerNorm(8)))
    assert quantize_linears(model) == 2
    assert not any(isinstance(m, nn.Linear) for m in model.modules())

    def no_compiler():
        raise OSError("g++: not found")

    monkeypatch.setattr(int8, "_compiled_kernel", no_compiler)
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler.*precision='bf16'"):
        quantize_linears(nn.Linear(8, 8))


def test_int8_world_model_dreams_close_to_its_float_twin_and_leaves_the_loaded_model_alone(tiny_world_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a CPU without VNNI is warned of: slow, still right
        wm = load_world_model(str(tiny_world_model), "cpu", "int8")
    fp32 = load_world_model(str(tiny_world_model), "cpu", "fp32")
    assert wm.precision == "int8" and wm.compute_dtype in (torch.float32, torch.bfloat16)
    assert not any(isinstance(m, nn.Linear) for m in wm.dynamics.modules())
    assert any(isinstance(m, nn.Linear) for m in fp32.dynamics.modules())
    frames = np.random.default_rng(0).integers(0, 256, (2, 1, 64, 64, 3), dtype=np.uint8)
    actions = np.zeros((2, 3), np.int64)
    a, b = wm.rollout(frames, actions), fp32.rollout(frames, actions)
    assert a.frames.shape == b.frames.shape and a.frames.dtype == np.uint8
    with torch.no_grad():  # the dreams' logits at the first step agree to within int8 rounding
        tokens = fp32.encode(frames).flatten(2)
        action = torch.zeros(2, 1, dtype=torch.long)
        mask = torch.full_like(tokens, fp32.dynamics.cfg.mask_id)
        with wm.autocast():
            got = wm.dynamics(tokens, mask, action).logits.float()
        want = fp32.dynamics(tokens, mask, action).logits
    assert (got - want).abs().mean() / want.abs().mean() < 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        venv = gymnasium.make_vec("GenieCoinRun-v0", num_envs=2, world_model=str(tiny_world_model), precision="int8")
    obs, _ = venv.reset(seed=0)
    obs, rewards, *_ = venv.step(np.array([1, 2]))
    assert obs.shape == (2, 64, 64, 3) and rewards.shape == (2,)


def test_int8_is_refused_off_the_cpu():
    with pytest.raises(ValueError, match="int8' is for CPUs"):
        resolve_precision("int8", "cuda")
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int4", "cpu")


def test_int8_dreams_keep_fp32s_tokens_repeat_under_a_seed_and_batched_equals_single(tiny_world_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        wm = load_world_model(str(tiny_world_model), "cpu", "int8")
    fp32 = load_world_model(str(tiny_world_model), "cpu", "fp32")
    with np.load(tiny_world_model / "contexts.npz") as z:
        context = fp32.encode(z["frames"][:3, -1:]).flatten(2)  # (3, 1, S) tokens of real frames
    actions = torch.tensor([[1, 4, 7, 7], [2, 2, 8, 5], [0, 3, 3, 1]])
    none = torch.zeros(3, 0, dtype=torch.long)

    def dream(model, rows=slice(None), seed=None, temperature=0.0):
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        with torch.no_grad(), model.autocast():
            out = model.dynamics.rollout(context[rows], none[rows], actions[rows], 2, temperature, gen)
        return torch.stack([o.tokens for o in out], 1)

    greedy = dream(wm)
    agreement = (greedy == dream(fp32)).float().mean().item()
    assert agreement >= 0.8, f"int8 greedy tokens agree with fp32's on only {agreement:.0%}"
    sampled = dream(wm, seed=5, temperature=1.0)
    assert torch.equal(sampled, dream(wm, seed=5, temperature=1.0))  # exact under a seed
    assert not torch.equal(sampled, dream(wm, seed=6, temperature=1.0))
    singles = torch.cat([dream(wm, slice(i, i + 1)) for i in range(3)])
    assert torch.equal(greedy, singles)  # each dream's int8 rounding is its own rows' alone


def test_int8_warns_without_int8_dot_products_and_computes_the_rest_as_auto_would(monkeypatch, tiny_world_model):
    from genie_env import _compat

    monkeypatch.setattr(_compat, "cpu_flags", lambda: {"avx2", "avx512f"})  # neither VNNI nor native bf16
    with pytest.warns(RuntimeWarning, match="without VNNI or AMX"):
        assert resolve_precision("int8", "cpu") == "int8"
    with pytest.warns(RuntimeWarning):
        assert load_world_model(str(tiny_world_model), "cpu", "int8").compute_dtype == torch.float32
    monkeypatch.setattr(_compat, "cpu_flags", lambda: {"avx512_vnni", "avx512_bf16"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_world_model(str(tiny_world_model), "cpu", "int8").compute_dtype == torch.bfloat16
    assert not [w for w in caught if "VNNI" in str(w.message)]
