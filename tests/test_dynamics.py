"""The dynamics model: causality, cache == no cache, masking, sampling, event heads, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genie_env.evaluate.dynamics import _episodes, dreamed_event_probabilities, rollout_tokens
from genie_env.metrics import roc_auc
from genie_env.models import load_dynamics
from genie_env.models.dynamics import DynamicsConfig, DynamicsModel, DynamicsObjective, sample_mask
from genie_env.models.st_transformer import (
    Attention,
    STConfig,
    STTransformer,
    expand_kv,
    matmul_attention,
    rope,
    rope_table,
    sdpa,
)

TINY = DynamicsConfig(codebook_size=16, grid=2, dim=32, depth=2, heads=2, context_frames=6)


def model(cfg=TINY, seed=0):
    torch.manual_seed(seed)
    return DynamicsModel(cfg).eval()


def data(b=2, t=6, cfg=TINY, seed=1):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg.codebook_size, (b, t, cfg.tokens), generator=g)
    actions = torch.randint(0, cfg.num_actions, (b, t), generator=g)
    return tokens, actions


@pytest.mark.parametrize("mode", ["token", "add"])
def test_prediction_of_frame_t_plus_1_depends_only_on_the_past_and_action_t(mode):
    cfg = DynamicsConfig(**{**TINY.__dict__, "action_mode": mode})
    m = model(cfg)
    tokens, actions = data(cfg=cfg)
    masked = torch.full_like(tokens, cfg.mask_id)
    t = 2
    base = m(tokens, masked, actions)
    later_tokens, later_actions = tokens.clone(), actions.clone()
    later_tokens[:, t + 1 :] = (later_tokens[:, t + 1 :] + 1) % cfg.codebook_size
    later_actions[:, t + 1 :] = (later_actions[:, t + 1 :] + 1) % cfg.num_actions
    changed_future = m(later_tokens, masked, later_actions)
    assert torch.allclose(base.logits[:, : t + 1], changed_future.logits[:, : t + 1], atol=1e-5)
    assert torch.allclose(base.events[:, : t + 1], changed_future.events[:, : t + 1], atol=1e-5)
    other_action = actions.clone()
    other_action[:, t] = (other_action[:, t] + 7) % cfg.num_actions
    assert not torch.allclose(base.logits[:, t], m(tokens, masked, other_action).logits[:, t], atol=1e-5)


LEAN = {"dim": 32, "heads": 4, "kv_heads": 2, "temporal_every": 2}  # grouped-query, temporal in every 2nd block


@pytest.mark.parametrize("change", [{}, LEAN, {"kv_heads": 1}], ids=["multi-head", "lean", "one-kv-head"])
def test_rollout_with_kv_cache_equals_recomputing_without_it(change):
    cfg = DynamicsConfig(**{**TINY.__dict__, **change})
    m = model(cfg)
    tokens, actions = data(t=9, cfg=cfg)
    context, ctx_actions, future = tokens[:, :3], actions[:, :2], actions[:, 2:9]
    cached = rollout_tokens(m, context, ctx_actions, future)  # 7 frames: the 6-frame window slides
    # recomputed without a cache over the whole history, under the model's sliding window (each layer looks
    # back 6 frames, so deeper layers see further: not the same as re-encoding only the last 6 frames), given
    # the frames the cached rollout chose: each chosen token is the likeliest (up to float ties)
    frames, acts = list(context.unbind(1)), list(actions[:, :2].unbind(1))
    with torch.no_grad():
        for h in range(future.shape[1]):
            acts.append(future[:, h])
            prev, act = torch.stack(frames, 1), torch.stack(acts, 1)
            logits = m(prev, torch.full_like(prev, cfg.mask_id), act).logits[:, -1].float()
            chosen = logits.gather(-1, cached[:, h, :, None])[..., 0]
            assert torch.all(chosen >= logits.max(-1).values - 1e-4), f"step {h}"
            frames.append(cached[:, h])


@pytest.mark.parametrize("steps", [1, 3])
def test_token_entropy_is_each_tokens_predictive_entropy_at_the_pass_that_committed_it(steps):
    m = model()
    tokens, actions = data()
    with torch.no_grad():
        out = m.step(m.new_cache(2), tokens[:, 0], actions[:, 0], steps=steps, entropy=True)
        plain = m.step(m.new_cache(2), tokens[:, 0], actions[:, 0], steps=steps)
        assert plain.token_entropy is None and torch.equal(out.tokens, plain.tokens)  # asking changes nothing else
        assert out.token_entropy.shape == (2,)
        assert (0 < out.token_entropy).all() and (out.token_entropy < torch.log(torch.tensor(16.0))).all()
        if steps == 1:  # one pass commits every token: the entropy of the full masked prediction
            prev = tokens[:, :1]
            logp = torch.log_softmax(m(prev, torch.full_like(prev, TINY.mask_id), actions[:, :1]).logits[:, 0], -1)
            torch.testing.assert_close(out.token_entropy, -(logp.exp() * logp).sum(-1).mean(-1))


def test_bf16_cached_step_keeps_float32_keys_and_bf16_values_and_matches_the_uncached_forward():
    m = model()
    tokens, actions = data(t=4)
    masked = torch.full_like(tokens, TINY.mask_id)
    cache = m.new_cache(tokens.shape[0])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        full = m(tokens, masked, actions)
        for t in range(tokens.shape[1]):
            step = m(tokens[:, t : t + 1], masked[:, t : t + 1], actions[:, t : t + 1], cache=cache)
    assert all(k.dtype == torch.float32 for k in cache.keys) and all(v.dtype == torch.bfloat16 for v in cache.values)
    held = sum(t.numel() * t.element_size() for t in cache.keys + cache.values)
    assert held == m.cache_bytes(tokens.shape[0], "cpu", torch.bfloat16) == m.cache_bytes(tokens.shape[0]) * 3 // 4
    assert torch.allclose(step.logits[:, 0], full.logits[:, -1], atol=0.1)
    assert torch.equal(step.logits[:, 0].argmax(-1), full.logits[:, -1].argmax(-1))


def test_mask_ratio_is_drawn_per_sample_within_bounds():
    torch.manual_seed(0)
    masked = sample_mask(64, 5, 100, 0.5, 1.0)
    counts = masked.sum(-1)  # (64, 5)
    assert (counts == counts[:, :1]).all()  # one ratio per sample, shared by its slots
    assert counts.min() >= 50 and counts.max() <= 100
    assert len(counts[:, 0].unique()) > 10  # ratios differ between samples
    assert not (masked[:, 0] == masked[:, 1]).all()  # positions differ between slots


@pytest.mark.parametrize("steps", [1, 3])
def test_sampling_shapes_and_determinism_under_a_seed(steps):
    m = model()
    tokens, actions = data()

    def sample(seed):
        cache = m.new_cache(2)
        out = m.step(cache, tokens[:, 0], actions[:, 0], steps=steps, temperature=1.0,
                     generator=torch.Generator().manual_seed(seed))  # fmt: skip
        return out

    a, b, c = sample(0), sample(0), sample(1)
    assert a.tokens.shape == (2, TINY.tokens) and a.tokens.dtype == torch.int64
    assert a.reward.shape == a.termination_prob.shape == (2,)
    assert ((a.tokens >= 0) & (a.tokens < TINY.codebook_size)).all()
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.termination_prob, b.termination_prob)
    assert not torch.equal(a.tokens, c.tokens)
    assert 0 <= float(a.reward.min()) and float(a.reward.max()) <= 10.0


def test_event_heads_learn_a_synthetic_rule_with_calibrated_probabilities():
    torch.manual_seed(0)
    cfg = DynamicsConfig(codebook_size=8, grid=2, dim=32, depth=1, heads=2, context_frames=4)
    m = DynamicsModel(cfg)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(150):
        tokens = torch.randint(0, 8, (32, 4, 2, 2))
        actions = torch.randint(0, 15, (32, 4))
        loss, _ = m.loss(tokens, actions, 10.0 * (actions == 5), actions == 3)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    tokens, actions = torch.randint(0, 8, (256, 4, 4)), torch.randint(0, 15, (256, 4))
    with torch.no_grad():
        p = torch.sigmoid(m(tokens, torch.full_like(tokens, cfg.mask_id), actions).events)
    coin, term = p[..., 0].flatten().numpy(), p[..., 1].flatten().numpy()
    assert roc_auc(term, (actions == 3).flatten().numpy()) > 0.95
    assert roc_auc(coin, (actions == 5).flatten().numpy()) > 0.95
    # calibrated: the mean probability is close to the base rate (1/15), not inflated by the class weight
    assert abs(term.mean() - 1 / 15) < 0.03


def test_bad_inputs_give_clear_errors():
    m = model()
    tokens, actions = data(t=8)
    with pytest.raises(ValueError, match="longer than the model's window of 6"):
        rollout_tokens(m, tokens[:, :7], actions[:, :6], actions[:, :2])
    with pytest.raises(ValueError, match="tokens out of range: the model has 16 codes"):
        rollout_tokens(m, tokens[:, :2] + 16, actions[:, :1], actions[:, :2])
    with pytest.raises(ValueError, match="action out of range: the model has 15 actions"):
        rollout_tokens(m, tokens[:, :2], actions[:, :1], actions[:, :2] + 15)
    with pytest.raises(ValueError, match="unknown --model.action-mode .concat."):
        DynamicsConfig(action_mode="concat")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        m.step(m.new_cache(2), tokens[:, 0], actions[:, 0], steps=0)


def test_full_attention_variant_has_the_same_interface_and_is_frame_causal():
    torch.manual_seed(0)
    cfg = STConfig(dim=16, depth=1, heads=2, tokens=3, temporal_pos="rope", attention="full")
    st = STTransformer(cfg).eval()
    x = torch.randn(1, 4, 3, 16)
    y = x.clone()
    y[:, 3] += 1.0
    assert st(x).shape == x.shape
    assert torch.allclose(st(x)[:, :3], st(y)[:, :3], atol=1e-6)
    with pytest.raises(ValueError, match="KV cache needs"):
        st.new_cache(1)


def test_grouped_query_attention_equals_torchs_and_multi_head_attention_with_shared_key_value_heads():
    torch.manual_seed(0)
    gqa = Attention(32, heads=4, kv_heads=2)
    x = torch.randn(3, 5, 32)
    q, k, v = gqa.qkv_heads(x)
    assert q.shape == (3, 4, 5, 8) and k.shape == v.shape == (3, 2, 5, 8)
    ours = sdpa(q, *expand_kv(k, v, 4), causal=True)
    torchs = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert torch.allclose(ours, torchs, atol=1e-6)
    # the same layer as multi-head attention whose key/value heads 0,1 and 2,3 are copies of the grouped ones
    mha = Attention(32, heads=4)
    w, b = gqa.qkv.weight.detach(), gqa.qkv.bias.detach()
    kw, vw = w[32:48].reshape(2, 8, 32), w[48:].reshape(2, 8, 32)
    kb, vb = b[32:48].reshape(2, 8), b[48:].reshape(2, 8)
    with torch.no_grad():
        mha.qkv.weight.copy_(torch.cat([w[:32], kw.repeat_interleave(2, 0).flatten(0, 1),
                                        vw.repeat_interleave(2, 0).flatten(0, 1)]))  # fmt: skip
        mha.qkv.bias.copy_(
            torch.cat([b[:32], kb.repeat_interleave(2, 0).flatten(), vb.repeat_interleave(2, 0).flatten()])
        )
        mha.proj.load_state_dict(gqa.proj.state_dict())
        assert torch.allclose(mha(x, causal=True), gqa(x, causal=True), atol=1e-6)
        assert torch.allclose(mha(x), gqa(x), atol=1e-6)  # unmasked: the query heads folded onto their kv head


def test_temporal_attention_in_every_kth_block_and_a_cache_sized_to_what_it_keeps():
    st = STTransformer(STConfig(dim=32, depth=4, heads=4, tokens=5, temporal_pos="rope", window=3,
                                temporal_every=2, kv_heads=1))  # fmt: skip
    assert [block.temporal is not None for block in st.blocks] == [False, True, False, True]
    # without temporal attention a block mixes nothing across frames: one block alone is frame-wise
    torch.manual_seed(0)
    one = STTransformer(STConfig(dim=32, depth=2, heads=4, tokens=5, temporal_pos="rope", temporal_every=2)).eval()
    x = torch.randn(1, 4, 5, 32)
    y = x.clone()
    y[:, 0] += torch.randn(5, 32)  # not a constant shift, which every LayerNorm would remove
    with torch.no_grad():
        first = lambda z: one.blocks[0](z + one.pos_spatial)  # noqa: E731
        assert torch.allclose(first(x)[:, 1:], first(y)[:, 1:], atol=1e-6)
        assert (one(x)[:, 1:] - one(y)[:, 1:]).abs().max() > 1e-2  # the second block's temporal attention mixes
    m = model(DynamicsConfig(**{**TINY.__dict__, **LEAN}))
    cache = m.new_cache(3)
    tokens, actions = data(b=3, cfg=m.cfg)
    m.step(cache, tokens[:, 0], actions[:, 0])
    held = sum(t.numel() * t.element_size() for t in cache.keys + cache.values if t is not None)
    assert held == m.cache_bytes(3) == m.cache_bytes(1) * 3
    assert m.cache_bytes(3) * 4 == model().cache_bytes(3)  # half the blocks, half the key/value heads
    for bad, message in (({"kv_heads": 3}, "must divide heads"), ({"temporal_every": 3}, "must be in 1..depth")):
        with pytest.raises(ValueError, match=message):
            DynamicsModel(DynamicsConfig(**{**TINY.__dict__, **LEAN, **bad}))


def test_kv_cache_rows_reset_independently():
    torch.manual_seed(0)
    cfg = STConfig(dim=32, depth=2, heads=2, tokens=5, temporal_pos="rope", window=3, max_frames=8)
    st = STTransformer(cfg).eval()
    x = torch.randn(2, 7, 5, 32)
    cache = st.new_cache(2)
    outs = []
    with torch.no_grad():
        for i in range(7):
            if i == 4:
                cache.reset(torch.tensor([False, True]))  # sequence 1 starts over at frame 4
            outs.append(st(x[:, i : i + 1], cache=cache))
        fresh = st.new_cache(1)
        restarted = torch.cat([st(x[1:2, i : i + 1], cache=fresh) for i in range(4, 7)], 1)
        untouched = st(x[0:1])  # sequence 0, recomputed without a cache (same sliding window)
    outs = torch.cat(outs, 1)
    assert torch.allclose(outs[1:2, 4:], restarted, atol=1e-5)
    assert torch.allclose(outs[0:1], untouched, atol=1e-5)


def test_a_kv_cache_row_assigned_from_another_cache_continues_that_caches_sequence():
    # the ring slot is shared by all rows and advances with the cache's own steps, so a sequence taken over from
    # a cache made at another step (a new dream's primed context) must be turned to this cache's slots
    torch.manual_seed(0)
    cfg = STConfig(dim=32, depth=2, heads=2, tokens=5, temporal_pos="rope", window=3, max_frames=8)
    st = STTransformer(cfg).eval()
    x, y = torch.randn(2, 6, 5, 32), torch.randn(1, 5, 5, 32)
    with torch.no_grad():
        cache = st.new_cache(2)
        for i in range(4):  # 4 steps: the next slot is 1
            st(x[:, i : i + 1], cache=cache)
        primed = st.new_cache(1)
        for i in range(2):  # 2 steps: the next slot is 2
            st(y[:, i : i + 1], cache=primed)
        cache.assign(torch.tensor([1]), primed)
        outs = torch.cat([st(torch.cat([x[:1, i + 4 : i + 5], y[:, i + 2 : i + 3]]), cache=cache) for i in range(2)], 1)
        expected = torch.cat([st(x[:1, :6])[:, 4:], st(y[:, :4])[:, 2:]])  # each row's own sequence, uncached
    assert cache.steps == 6 and cache.frames.tolist() == [6, 4]
    torch.testing.assert_close(outs, expected, atol=1e-5, rtol=1e-5)


def test_dreamed_inputs_keep_each_rows_real_prefix_and_then_follow_the_models_greedy_predictions():
    m = model()
    tokens, actions = data(b=3, t=6)
    real = torch.tensor([1, 3, 6])
    prev = m.dreamed_prev(tokens, actions, real)
    with torch.no_grad():  # slot t's greedy prediction from the (partly dreamed) frames up to t, no cache
        greedy = m(prev, torch.full_like(prev, TINY.mask_id), actions).logits.argmax(-1)
    for b, r in enumerate(real.tolist()):
        assert torch.equal(prev[b, :r], tokens[b, :r])
        assert torch.equal(prev[b, r:], greedy[b, r - 1 : -1])
    assert not torch.equal(prev[0], tokens[0])  # random tokens are not what the model predicts
    assert torch.equal(m.dreamed_prev(tokens, actions, torch.full((3,), 6)), tokens)


def test_self_forcing_objective_backpropagates_through_dreamed_windows_and_checks_its_probability():
    m = model().train()
    tokens, actions = data(b=4, t=6)
    batch = {"tokens": tokens.view(4, 6, 2, 2), "actions": actions, "rewards": torch.zeros(4, 6),
             "terminations": torch.zeros(4, 6, dtype=torch.bool)}  # fmt: skip
    torch.manual_seed(0)
    result = DynamicsObjective(m, self_forcing=1.0)(batch)
    assert 0 < float(result.metrics["dreamed_fraction"]) < 1
    result.loss.backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert "dreamed_fraction" not in DynamicsObjective(m)(batch).metrics
    with pytest.raises(ValueError, match="self_forcing is a probability"):
        DynamicsObjective(m, self_forcing=1.5)


def test_dreamed_events_score_each_episodes_last_transition_and_one_earlier_after_dreaming(tiny_world_model):
    tokens, run = tiny_world_model.parent / "tokens", tiny_world_model.parent / "dyn_run"
    m = load_dynamics(run)
    scored = [e for e in _episodes(tokens, "val") if len(e["actions"]) >= 2 + 2 + 1]  # context + lead + 1
    coin, term, labels = dreamed_event_probabilities(m, tokens, lead=2, context=2)
    assert len(labels) == len(coin) == len(term) == 2 * len(scored) > 0
    assert labels[::2, 1].tolist() == [bool(e["terminations"][-1]) for e in scored]  # the last transitions
    assert not labels[1::2].any()  # an earlier transition never ends the episode
    assert ((0 < coin) & (coin < 1)).all() and ((0 < term) & (term < 1)).all()
    # what the scored frame was differs with the lead: 0 dreamed frames score the real frame's events
    first = next(e for e in _episodes(tokens, "val") if len(e["actions"]) >= 2 + 0 + 1)
    t = len(first["actions"]) - 1
    real = torch.from_numpy(first["tokens"][t - 1 : t + 1].astype("int64")).flatten(1)[None]
    act = torch.from_numpy(first["actions"][t - 1 : t + 1].astype("int64"))[None]
    cache = m.new_cache(1)
    m.observe(cache, real[:, 0], act[:, 0])
    direct = m.step(cache, real[:, 1], act[:, 1])
    at_lead0 = dreamed_event_probabilities(m, tokens, lead=0, context=2)[1]
    assert at_lead0[0] == pytest.approx(float(direct.termination_prob[0]), abs=1e-6)
    with pytest.raises(ValueError, match="for a lead of 500 frames"):
        dreamed_event_probabilities(m, tokens, lead=500)


def test_matmul_attention_equals_the_fused_kernel_with_and_without_a_window_mask():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(6, 2, 1 if i == 0 else 5, 8, generator=g) for i in range(3))
    mask = torch.rand(6, 1, 1, 5, generator=g) < 0.6
    mask[:, ..., 0] = True  # every row attends to at least its own slot, as in the KV cache
    for m in (None, mask):
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m)
        assert torch.allclose(matmul_attention(q, k, v, m), expected, atol=1e-6)
    qs, ks, vs = (torch.randn(3, 2, 7, 8, generator=g) for _ in range(3))
    fused = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs)
    with torch.no_grad():  # generation's bf16 spatial attention on CPU takes the matmul path
        bf16 = sdpa(qs.bfloat16(), ks.bfloat16(), vs.bfloat16())
    assert bf16.dtype == torch.bfloat16 and torch.allclose(bf16.float(), fused, atol=0.05)


def test_rope_rotates_each_feature_pair_by_its_position_times_its_frequency():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 4, 6, generator=g)
    positions = torch.tensor([0, 1, 5, 9])
    out = rope(x, rope_table(positions, 6, "cpu"))
    freqs = 1.0 / 10000 ** (torch.arange(0, 6, 2).float() / 6)
    angle = positions[:, None].float() * freqs  # (L, 3)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    assert torch.allclose(out[..., 0::2], x1 * angle.cos() - x2 * angle.sin(), atol=1e-6)
    assert torch.allclose(out[..., 1::2], x1 * angle.sin() + x2 * angle.cos(), atol=1e-6)
    assert torch.allclose(out[:, :, 0], x[:, :, 0])  # position 0 is the identity
    rows = torch.stack([x[0, :, 2:3], x[1, :, 3:4], x[2, :, 0:1]])  # a position of its own for each row
    per_row = rope(rows, rope_table(torch.tensor([[5], [9], [0]]), 6, "cpu"))
    assert torch.allclose(per_row, torch.stack([out[0, :, 2:3], out[1, :, 3:4], out[2, :, 0:1]]), atol=1e-6)
    assert rope(x.bfloat16(), rope_table(positions, 6, "cpu")).dtype == torch.bfloat16
