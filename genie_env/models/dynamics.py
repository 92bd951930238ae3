"""The dynamics model: MaskGIT over each frame's tokens, conditioned on past frames and actions,
with heads for the reward and the termination of each transition.

Events. The reward head predicts a distribution over `reward_values` (see `genie_env.models.rewards`:
the training data's distinct rewards, or symlog bins), the termination head a probability. Both are
trained with their rare classes weighted (`reward_pos_weight`, `termination_pos_weight`) and the
weights' logs taken out of the logits again, so the probabilities they give are calibrated.

Slots. A window of frames z_0..z_{W-1} with actions a_0..a_{W-1} becomes W slots; slot s holds
the known frame z_s (one embedding per position, never masked), the next frame z_{s+1} (partly
masked) and the action a_s (a token prepended to the frame, or added to every position). Slot s
predicts the masked tokens of z_{s+1} and the reward and termination of the transition (z_s, a_s);
the last slot's next frame lies beyond the window and is fully masked (its events still train).

Past frames in training versus sampling. Training: every slot sees its previous frame unmasked at
every position (teacher forcing, and "nothing changed" becomes the easy prediction) plus its own
frame masked at a ratio drawn from U(0.5, 1) per sample. Sampling: a slot sees the previous frame
(real or generated) unmasked plus its own frame fully masked, refined over K MaskGIT steps; its final
pass goes into the KV cache. Ratio 1 is inside the training range, so sampling never shows the model
an input unlike its training inputs, and later frames reach a slot through its previous-frame channel
and causal temporal attention over earlier slots.

Self-forcing. Teacher forcing only ever shows the model real previous frames, but a dream feeds it
its own. With `DynamicsObjective(model, self_forcing=p)`, a fraction p of the windows keeps a real
prefix and sees the model's greedy generations after it (`dreamed_prev`); their frames and events
are still scored against what really happened, so the event heads learn to recognise a coin the
model reached by dreaming rather than only one shown in a real frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import nn

from genie_env.games import COIN_REWARD, NUM_ACTIONS
from genie_env.models.common import StepResult
from genie_env.models.rewards import check_support, two_hot
from genie_env.models.st_transformer import KVCache, STConfig, STTransformer, cache_dtypes

ActionMode = Literal["token", "add"]
ACTION_MODES: tuple[str, ...] = get_args(ActionMode)


@dataclass(frozen=True)
class DynamicsConfig:
    """Shape, conditioning and losses of the dynamics model."""

    codebook_size: int = 1024
    """token vocabulary (the tokenizer's codebook size)"""
    grid: int = 8
    """tokens per side of a frame (the tokenizer's token grid)"""
    num_actions: int = NUM_ACTIONS
    """CoinRun's 15 actions"""
    dim: int = 256
    """transformer width"""
    depth: int = 4
    """ST blocks"""
    heads: int = 4
    """attention heads"""
    mlp_ratio: float = 4.0
    """MLP width as a multiple of dim"""
    context_frames: int = 16
    """training window and the KV cache's sliding window, in frames"""
    action_mode: ActionMode = "token"
    """action conditioning: token (prepended to each frame) or add (added to every token)"""
    prev_token: bool = True
    """show the previous frame's token at every position"""
    mask_min: float = 0.5
    """lowest mask ratio drawn per training sample"""
    mask_max: float = 1.0
    """highest mask ratio drawn per training sample"""
    reward_values: tuple[float, ...] = (0.0, COIN_REWARD)
    """the support of the reward distribution, increasing and holding 0 (CoinRun's by default;
    `genie train-dynamics` takes them from the token datasets' rewards)"""
    reward_pos_weight: float = 10.0
    """weight of rewarded (non-zero) transitions in the reward loss (rare classes)"""
    termination_pos_weight: float = 10.0
    """weight of terminal transitions in the termination loss (rare class)"""
    event_weight: float = 1.0
    """weight of the reward and termination losses next to the token cross-entropy"""
    attention: Literal["st", "full"] = "st"
    """st, or full spatiotemporal attention (scaling benchmark only)"""
    temporal_every: int = 1
    """temporal attention in every k-th block only (1 = every block; Dreamer 4 keeps it in every 4th)"""
    kv_heads: int = 0
    """key/value heads of grouped-query attention (0 = heads: standard multi-head attention)"""
    dropout: float = 0.0
    """dropout on the transformer's residual branches while training; a dream can keep it on
    (`WorldModel.set_dropout`, Dropout's Dream Land), so each dreamed step is a slightly different simulator"""

    def __post_init__(self) -> None:
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"unknown --model.action-mode {self.action_mode!r}: use one of {ACTION_MODES}")
        if not 0.0 < self.mask_min <= self.mask_max <= 1.0:
            raise ValueError(
                f"need 0 < --model.mask-min <= --model.mask-max <= 1, got {self.mask_min}, {self.mask_max}"
            )
        if self.context_frames < 2:
            raise ValueError(f"--model.context-frames must be >= 2, got {self.context_frames}")
        check_support(tuple(self.reward_values))

    @property
    def tokens(self) -> int:
        """Tokens per frame."""
        return self.grid * self.grid

    @property
    def mask_id(self) -> int:
        return self.codebook_size


class DynamicsOutput(NamedTuple):
    """logits (B, T, S, K) over each slot's frame tokens, in the computing dtype (bf16 under autocast:
    greedy decoding takes their argmax as they are, losses and sampling cast them to float32); events
    float32 (B, T, R): the logits of the R-1 non-zero reward values (against the zero class's 0) and the
    termination logit, last; adjusted for the class weights, so `DynamicsModel.event_probabilities`
    gives calibrated probabilities."""

    logits: torch.Tensor
    events: torch.Tensor


class StepOutput(NamedTuple):
    """One generated frame: tokens int64 (B, S), reward float (B,) (the expected reward), probabilities
    float (B,) of a non-zero reward (for CoinRun, of the coin) and of termination, reward_probs float
    (B, R), the distribution over the model's `reward_values`, and (when asked for) token_entropy float (B,):
    the mean entropy in nats of each token's predicted distribution, taken in the pass that committed it
    (the model's uncertainty about the frame)."""

    tokens: torch.Tensor
    reward: torch.Tensor
    reward_prob: torch.Tensor
    termination_prob: torch.Tensor
    reward_probs: torch.Tensor
    token_entropy: torch.Tensor | None = None


def sample_mask(batch: int, slots: int, tokens: int, low: float, high: float, device=None) -> torch.Tensor:
    """Training mask bool (batch, slots, tokens): one ratio r ~ U(low, high) per sample (per-batch draws
    make training far noisier), ceil(r * tokens) positions masked in each slot, positions uniform."""
    ratio = torch.empty(batch, 1, 1, device=device).uniform_(low, high)
    ranks = torch.rand(batch, slots, tokens, device=device).argsort(-1).argsort(-1)
    return ranks < torch.ceil(ratio * tokens)


class DynamicsModel(nn.Module):
    """ST-transformer MaskGIT dynamics with reward and termination heads (see the module docstring)."""

    def __init__(self, cfg: DynamicsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_emb = nn.Embedding(cfg.codebook_size + 1, cfg.dim)  # + the mask token
        self.prev_emb = nn.Embedding(cfg.codebook_size, cfg.dim) if cfg.prev_token else None
        self.action_emb = nn.Embedding(cfg.num_actions, cfg.dim)
        spatial = cfg.tokens + (cfg.action_mode == "token")
        self.st = STTransformer(STConfig(
            dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, tokens=spatial,
            max_frames=cfg.context_frames, temporal_pos="rope", window=cfg.context_frames, attention=cfg.attention,
            temporal_every=cfg.temporal_every, kv_heads=cfg.kv_heads, dropout=cfg.dropout,
        ))  # fmt: skip
        self.head = nn.Linear(cfg.dim, cfg.codebook_size)
        values = torch.tensor(cfg.reward_values, dtype=torch.float32)
        self.zero_index = int((values == 0).nonzero())
        rewarded = len(values) - 1  # one logit per non-zero reward value, then the termination logit
        self.event_head = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, rewarded + 1))
        self.register_buffer("reward_values", values, persistent=False)
        # log class weights, removed from the event logits so probabilities stay calibrated
        self.register_buffer("event_bias", torch.tensor(
            [math.log(cfg.reward_pos_weight)] * rewarded + [math.log(cfg.termination_pos_weight)]
        ))  # fmt: skip

    def check_inputs(self, tokens: torch.Tensor, actions: torch.Tensor) -> None:
        """Raise a clear error for tokens or actions out of range."""
        k, a = self.cfg.codebook_size, self.cfg.num_actions
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= k):
            raise ValueError(f"tokens out of range: the model has {k} codes (0..{k - 1})")
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= a):
            raise ValueError(f"action out of range: the model has {a} actions (0..{a - 1})")

    def forward(self, prev: torch.Tensor, current: torch.Tensor, actions: torch.Tensor,
                cache: KVCache | None = None, commit: bool = True) -> DynamicsOutput:  # fmt: skip
        """prev int64 (B, T, S) tokens of each slot's previous frame; current int64 (B, T, S) with
        `mask_id` where masked; actions int64 (B, T): the action taken on the previous frame, or float
        (B, T, dim): those actions' embeddings given directly (a LAM trained together with the model,
        `genie_env.models.joint`)."""
        x = self.token_emb(current)
        if self.prev_emb is not None:
            x = x + self.prev_emb(prev)
        act = (actions if actions.is_floating_point() else self.action_emb(actions))[:, :, None]  # (B, T, 1, D)
        x = torch.cat([act, x], dim=2) if self.cfg.action_mode == "token" else x + act
        h = self.st(x, cache=cache, commit=commit)
        if self.cfg.action_mode == "token":
            pooled, frame = h[:, :, 0], h[:, :, 1:]
        else:
            pooled, frame = h.mean(2), h
        events = self.event_head(pooled).float() - self.event_bias
        return DynamicsOutput(self.head(frame), events)

    def reward_logits(self, events: torch.Tensor) -> torch.Tensor:
        """Logits float (..., R) over every reward value, in support order (the zero class's is 0)."""
        rewarded = events[..., :-1]
        zero = torch.zeros_like(events[..., :1])
        return torch.cat([rewarded[..., : self.zero_index], zero, rewarded[..., self.zero_index :]], -1)

    def event_probabilities(self, events: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated probabilities from `DynamicsOutput.events` (..., R): the reward distribution
        (..., R) over `reward_values` and the termination probability (...)."""
        return torch.softmax(self.reward_logits(events), -1), torch.sigmoid(events[..., -1])

    def rewarded_probability(self, reward_probs: torch.Tensor) -> torch.Tensor:
        """P(reward != 0) (...) from a reward distribution (..., R): summed over the non-zero values rather
        than 1 - P(0), which rounds small probabilities to 0."""
        return (reward_probs * (self.reward_values != 0)).sum(-1)

    # ------------------------------------------------------------------------- training
    def loss(self, tokens: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, terminations: torch.Tensor,
             prev: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
        """Training loss on windows: tokens int64 (B, W, h, w), actions int64 (B, W) (or their embeddings, as
        `forward` takes them), rewards float (B, W),
        terminations bool (B, W). `prev` int64 (B, W, S), the frames each slot sees as its previous frame,
        defaults to the real ones (teacher forcing; see `dreamed_prev` for the alternative).
        Returns the total loss and each term."""
        cfg = self.cfg
        b, w = tokens.shape[:2]
        z = tokens.reshape(b, w, cfg.tokens)
        prev = z if prev is None else prev
        target, masked, current = self.masked_targets(z)
        out = self(prev, current, actions)
        scored = masked[:, :-1]
        logits = out.logits[:, :-1][scored].float()
        ce = F.cross_entropy(logits, target[:, :-1][scored])
        accuracy = (logits.argmax(-1) == target[:, :-1][scored]).float().mean()
        copy_accuracy = (prev[:, :-1][scored] == target[:, :-1][scored]).float().mean()
        raw = out.events + self.event_bias  # training logits: the class weights act through the loss weights
        weights = torch.where(self.reward_values == 0, 1.0, cfg.reward_pos_weight)  # per reward value
        target = two_hot(rewards, self.reward_values)
        log_p = F.log_softmax(self.reward_logits(raw), -1)
        reward_loss = -(target * weights * log_p).sum(-1).mean()
        term_loss = F.binary_cross_entropy_with_logits(
            raw[..., -1], terminations.float(), pos_weight=self.event_bias[-1].exp()
        )
        total = ce + cfg.event_weight * (reward_loss + term_loss)
        return total, {
            "mask_ce": ce.detach(),
            "mask_accuracy": accuracy.detach(),
            "copy_accuracy": copy_accuracy.detach(),
            "reward_ce": reward_loss.detach(),
            "termination_bce": term_loss.detach(),
        }

    def masked_targets(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MaskGIT training inputs of windows z int64 (B, W, S): each slot's target (the next frame; zeros
        after the window), the mask bool (B, W, S) (`sample_mask`; the slot after the window always masked:
        its frame is unknown) and the current-frame input (`mask_id` where masked, the target elsewhere)."""
        cfg = self.cfg
        b, w = z.shape[:2]
        target = torch.cat([z[:, 1:], torch.zeros_like(z[:, :1])], dim=1)  # slot s predicts z_{s+1}
        masked = sample_mask(b, w, cfg.tokens, cfg.mask_min, cfg.mask_max, z.device)
        masked[:, -1] = True
        return target, masked, torch.where(masked, torch.full_like(target, cfg.mask_id), target)

    @torch.no_grad()
    def dreamed_prev(self, tokens: torch.Tensor, actions: torch.Tensor, real_frames: torch.Tensor) -> torch.Tensor:
        """The previous-frame inputs of a window as a dream would show them: row b keeps its first
        `real_frames[b]` frames real and replaces every later one with the model's own greedy one-step
        generation (K = 1, as the dream env samples), each made from the frames before it.
        tokens int64 (B, W, h, w), actions int64 (B, W), real_frames int64 (B,) in 1..W -> int64 (B, W, S).

        Training on these ("self-forcing") scores the frames and events that follow a dreamed
        approach against what really happened, so the event heads learn to fire on dreamed frames."""
        b, w = tokens.shape[:2]
        z = tokens.reshape(b, w, self.cfg.tokens)
        dreamed = torch.arange(w, device=z.device)[None] >= real_frames.to(z.device)[:, None]  # (B, W)
        if not bool(dreamed.any()):
            return z
        prev = z.clone()
        cache = self.new_cache(b)
        for t in range(w - 1):
            generated = self.step(cache, prev[:, t], actions[:, t]).tokens
            prev[:, t + 1] = torch.where(dreamed[:, t + 1, None], generated, z[:, t + 1])
        return prev

    # ------------------------------------------------------------------------- sampling
    def cache_bytes(self, batch: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> int:
        """Memory the KV cache of `batch` dreams computed in `dtype` on `device` takes (keys and values of every
        temporal block, in the dtypes `cache_dtypes` keeps)."""
        st = self.st.cfg
        blocks = sum(st.has_temporal(i) for i in range(st.depth))
        kv_width = (st.kv_heads or st.heads) * (st.dim // st.heads)
        per_element = sum(t.itemsize for t in cache_dtypes(device, dtype))
        return blocks * st.tokens * st.window * kv_width * per_element * batch

    def new_cache(self, batch: int) -> KVCache:
        """An empty KV cache for `batch` sequences (sliding window of `context_frames`), for `observe` and `step`."""
        return self.st.new_cache(batch)

    @torch.no_grad()
    def observe(self, cache: KVCache, prev: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Feed a known transition into the cache: prev int64 (B, S), the frame the action int64 (B,) was
        taken on. The next slot is the one `step` then generates (or a later `observe` fills). Returns the
        transition's probabilities float32 (B, 2) of a non-zero reward and of termination, as a dream would
        predict them."""
        reward, term = self.observe_events(cache, prev, action)
        return torch.stack([self.rewarded_probability(reward), term], 1)

    @torch.no_grad()
    def observe_events(
        self, cache: KVCache, prev: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`observe`, returning the transition's whole reward distribution float32 (B, R) over
        `reward_values` and its termination probability (B,)."""
        current = torch.full_like(prev, self.cfg.mask_id)
        events = self(prev[:, None], current[:, None], action[:, None], cache=cache).events[:, 0]
        return self.event_probabilities(events)

    @torch.no_grad()
    def prime(self, cache: KVCache, context: torch.Tensor, context_actions: torch.Tensor) -> None:
        """Feed a real context into the cache: context int64 (B, C, S) tokens, context_actions int64 (B, C-1)
        taken between them (C-1 `observe`s); `step` then continues from the last context frame."""
        for c in range(context_actions.shape[1]):
            self.observe(cache, context[:, c], context_actions[:, c])

    @torch.no_grad()
    def rollout(self, context: torch.Tensor, context_actions: torch.Tensor, actions: torch.Tensor, steps: int = 1,
                temperature: float = 0.0, generator: torch.Generator | None = None) -> list[StepOutput]:  # fmt: skip
        """The dream loop (evaluation, the world-model API and the dream env all run this one): prime a
        new cache with the context, then generate H frames. context int64 (B, C, S) tokens, context_actions
        int64 (B, C-1) taken between them, actions int64 (B, H) (actions[:, 0] taken on the last context
        frame) -> H step outputs (each generated frame with the reward and termination of the transition
        that made it). Raises ValueError for a context longer than the window or tokens or actions out of
        range."""
        if context.shape[1] > self.cfg.context_frames:
            raise ValueError(
                f"context of {context.shape[1]} frames is longer than the model's window of {self.cfg.context_frames}"
            )
        self.check_inputs(context, torch.cat([context_actions.flatten(), actions.flatten()]))
        cache = self.new_cache(len(context))
        self.prime(cache, context, context_actions)
        prev, outputs = context[:, -1], []
        for h in range(actions.shape[1]):
            outputs.append(self.step(cache, prev, actions[:, h], steps, temperature, generator))
            prev = outputs[-1].tokens
        return outputs

    @torch.no_grad()
    def step(
        self,
        cache: KVCache,
        prev: torch.Tensor,
        action: torch.Tensor,
        steps: int = 1,
        temperature: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        entropy: bool = False,
    ) -> StepOutput:
        """Generate the frame after prev int64 (B, S) under action int64 (B,) with K = `steps` MaskGIT
        refinement steps (cosine schedule; temperature 0 = most likely token) and commit it to the cache.

        `generator` is one torch.Generator for the batch, or one per batch element (then each row's
        samples depend only on its own generator, so a row samples the same alone or in any batch).
        `entropy` adds `token_entropy` to the output."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        b, s = prev.shape
        current = torch.full_like(prev, self.cfg.mask_id)
        token_entropy = torch.zeros(b, s, device=prev.device) if entropy else None
        for k in range(steps):
            last = k == steps - 1
            out = self(prev[:, None], current[:, None], action[:, None], cache=cache, commit=last)
            logits = out.logits[:, 0]
            if entropy:  # of the positions still masked: those this pass may commit
                logp = torch.log_softmax(logits.float(), -1)
                still = current == self.cfg.mask_id
                token_entropy = torch.where(still, -(logp.exp() * logp).sum(-1), token_entropy)
            if temperature > 0:
                probs = torch.softmax(logits.float() / temperature, -1)
                if isinstance(generator, list):
                    sampled = torch.stack(
                        [torch.multinomial(p, 1, generator=g)[:, 0] for p, g in zip(probs, generator)]
                    )
                else:
                    sampled = torch.multinomial(probs.view(-1, probs.shape[-1]), 1, generator=generator).view(b, s)
            else:
                sampled = logits.max(-1).indices  # = argmax (first maximum), without bf16 argmax's slow CPU kernel
                probs = None if last else torch.softmax(logits.float(), -1)  # confidences for re-masking
            still = current == self.cfg.mask_id
            if last:
                current = torch.where(still, sampled, current)
                break
            confidence = probs.gather(-1, sampled[..., None])[..., 0].masked_fill(~still, float("inf"))
            keep_masked = int(math.floor(s * math.cos(math.pi / 2 * (k + 1) / steps)))
            order = confidence.argsort(-1)  # least confident first
            remask = torch.zeros_like(still)
            remask.scatter_(1, order[:, :keep_masked], True)
            current = torch.where(still & ~remask, sampled, current)
        reward, term = self.event_probabilities(out.events[:, 0])
        expected = reward @ self.reward_values
        mean_entropy = token_entropy.mean(-1) if entropy else None
        return StepOutput(current, expected, self.rewarded_probability(reward), term, reward, mean_entropy)


class DynamicsObjective(nn.Module):
    """Training objective for the shared trainer: a window batch of token shards -> StepResult.

    With `self_forcing` p > 0, each window is, with probability p, trained on its own dream: a real
    prefix of 1..W-1 frames (uniform) and the model's greedy generations after it (`dreamed_prev`)."""

    def __init__(self, model: DynamicsModel, self_forcing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= self_forcing <= 1.0:
            raise ValueError(f"self_forcing is a probability in [0, 1], got {self_forcing}")
        self.model, self.self_forcing = model, self_forcing

    def forward(self, batch: dict[str, torch.Tensor]) -> StepResult:
        tokens, actions = batch["tokens"], batch["actions"]
        prev, metrics = None, {}
        if self.self_forcing > 0:
            b, w = tokens.shape[:2]
            dev = tokens.device  # so the metric stacks with the others on the training device
            real = torch.randint(1, w, (b,), device=dev)
            real = torch.where(torch.rand(b, device=dev) < self.self_forcing, real, torch.full_like(real, w))
            prev = self.model.dreamed_prev(tokens, actions, real)
            metrics["dreamed_fraction"] = (w - real).float().mean() / w
        loss, terms = self.model.loss(tokens, actions, batch["rewards"], batch["terminations"], prev=prev)
        return StepResult(loss, {**terms, **metrics})
