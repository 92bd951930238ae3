"""The reward head as a distribution over reward values: its support, two-hot targets, calibration through
the real loss, the rewards a dream returns in each events mode, and CoinRun's models unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genie_env.models.dynamics import DynamicsConfig, DynamicsModel, sample_mask
from genie_env.models.rewards import MAX_REWARD_VALUES, dream_rewards, reward_support, two_hot

TINY = dict(codebook_size=16, grid=2, dim=32, depth=1, heads=2, context_frames=4)


def test_support_is_the_seen_values_with_zero_or_symlog_bins_when_there_are_many():
    assert reward_support(np.array([0, 10, 0, 10], np.float32)) == (0.0, 10.0)  # CoinRun
    assert reward_support(np.array([1.0, -4.0, 1.0, 2.0, -3.0, -8.0], np.float32)) == (-8, -4, -3, 0, 1, 2)  # fruitbot
    assert reward_support(np.array([5.0], np.float32)) == (0.0, 5.0)  # 0 is always a class
    assert reward_support(np.zeros(3, np.float32)) == (0.0,)
    many = np.linspace(-50, 1000, 500).astype(np.float32)
    bins = reward_support(many)
    assert len(bins) <= MAX_REWARD_VALUES and 0.0 in bins and list(bins) == sorted(bins)
    assert bins[0] == pytest.approx(-50, rel=1e-5) and bins[-1] == pytest.approx(1000, rel=1e-5)
    gaps = np.diff([b for b in bins if b > 0])
    assert (gaps[1:] > gaps[:-1]).all()  # symlog spacing: wider bins further from 0
    with pytest.raises(ValueError, match="NaN or infinity"):
        reward_support(np.array([np.nan], np.float32))


def test_two_hot_targets_put_the_reward_on_its_support_and_keep_its_mean():
    support = torch.tensor([-4.0, 0.0, 1.0, 10.0])
    rewards = torch.tensor([[0.0, 1.0, -4.0, 10.0], [0.5, 5.5, -1.0, 30.0]])
    target = two_hot(rewards, support)
    assert target.shape == (2, 4, 4) and torch.allclose(target.sum(-1), torch.ones(2, 4))
    assert torch.equal(target[0], torch.eye(4)[[1, 2, 0, 3]])  # values on the support: one-hot
    mean = target @ support
    assert torch.allclose(mean[1, :3], rewards[1, :3])  # between two values: the mean is the reward itself
    assert mean[1, 3] == 10.0  # beyond the support: clipped to its end
    assert torch.equal(two_hot(rewards, torch.tensor([0.0])), torch.ones(2, 4, 1))


def test_coinruns_reward_loss_is_the_weighted_coin_bce_of_the_models_trained_before():
    model = DynamicsModel(DynamicsConfig(**TINY))
    assert model.event_head[-1].out_features == 2 and model.event_bias.shape == (2,)  # the old layout
    torch.manual_seed(0)
    tokens = torch.randint(0, 16, (6, 4, 2, 2))
    actions = torch.randint(0, 15, (6, 4))
    rewards = torch.zeros(6, 4)
    rewards[::2, 1] = 10.0
    terminations = rewards > 0
    torch.manual_seed(1)
    _, terms = model.loss(tokens, actions, rewards, terminations)
    b, w = tokens.shape[:2]
    z = tokens.reshape(b, w, 4)
    torch.manual_seed(1)  # the loss's mask draw, again
    mask = sample_mask(b, w, 4, 0.5, 1.0)
    mask[:, -1] = True
    target = torch.cat([z[:, 1:], torch.zeros_like(z[:, :1])], 1)
    events = model(z, torch.where(mask, torch.full_like(target, 16), target), actions).events
    raw = events + model.event_bias
    legacy = F.binary_cross_entropy_with_logits(raw[..., 0], (rewards > 0).float(), pos_weight=torch.tensor(10.0))
    assert terms["reward_ce"].item() == pytest.approx(legacy.item(), rel=1e-5)


def test_the_weighted_loss_gives_calibrated_reward_probabilities():
    """Train only the event head's bias (so its output is one distribution for every input) through the
    model's own loss, on rewards drawn -4: 5%, 0: 80%, 1: 15%: the rare classes weigh 10 times more in the
    loss, yet the probabilities the model gives are the frequencies."""
    torch.manual_seed(0)
    cfg = DynamicsConfig(**TINY, reward_values=(-4.0, 0.0, 1.0))
    model = DynamicsModel(cfg)
    last = model.event_head[-1]
    assert last.out_features == 3  # the two non-zero values and the termination
    last.weight.data.zero_()
    for p in model.parameters():
        p.requires_grad_(False)
    last.bias.requires_grad_(True)
    optim = torch.optim.Adam([last.bias], lr=0.1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        draw = torch.rand(64, 4, generator=gen)
        rewards = torch.where(draw < 0.05, -4.0, torch.where(draw < 0.2, 1.0, 0.0))
        tokens = torch.randint(0, 16, (64, 4, 2, 2), generator=gen)
        loss, _ = model.loss(
            tokens, torch.zeros(64, 4, dtype=torch.long), rewards, torch.zeros(64, 4, dtype=torch.bool)
        )
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        events = model(
            torch.zeros(1, 1, 4, dtype=torch.long), torch.full((1, 1, 4), 16), torch.zeros(1, 1, dtype=torch.long)
        ).events
        probs, _ = model.event_probabilities(events)
    assert probs[0, 0].numpy() == pytest.approx([0.05, 0.80, 0.15], abs=0.03)


def test_dream_rewards_in_each_events_mode():
    coinrun = np.array([0.0, 10.0])
    probs = np.array([[0.7, 0.3], [0.4, 0.6]])
    assert np.allclose(dream_rewards(probs, coinrun, "expected"), [3.0, 6.0])
    assert np.array_equal(dream_rewards(probs, coinrun, "threshold"), [0.0, 10.0])
    assert np.array_equal(dream_rewards(probs, coinrun, "sample", np.array([0.2, 0.7])), [10.0, 0.0])
    values = np.array([-4.0, 0.0, 1.0, 10.0])
    probs = np.array([[0.1, 0.45, 0.3, 0.15], [0.0, 0.9, 0.1, 0.0]])
    assert np.allclose(dream_rewards(probs, values, "expected"), [-0.4 + 0.3 + 1.5, 0.1])
    # a reward has probability 0.55 >= 0.5 in row 0: its likeliest non-zero value, 1; row 1 none
    assert np.array_equal(dream_rewards(probs, values, "threshold"), [1.0, 0.0])
    # sampling walks the non-zero values in order (-4, 1, 10), then 0
    draws = np.array([0.05, 0.2, 0.5, 0.6])
    got = dream_rewards(np.repeat(probs[:1], 4, 0), values, "sample", draws)
    assert np.array_equal(got, [-4.0, 1.0, 10.0, 0.0])
    uniform = np.random.default_rng(0).random(20000)
    drawn = dream_rewards(np.repeat(probs[:1], 20000, 0), values, "sample", uniform)
    assert [np.mean(drawn == v) for v in values] == pytest.approx(probs[0], abs=0.01)
    with pytest.raises(ValueError, match="unknown events mode 'mean'"):
        dream_rewards(probs, values, "mean")


def test_a_support_without_zero_or_out_of_order_is_refused():
    with pytest.raises(ValueError, match="must hold 0"):
        DynamicsConfig(reward_values=(1.0, 10.0))
    with pytest.raises(ValueError, match="strictly increasing"):
        DynamicsConfig(reward_values=(0.0, 10.0, 1.0))


def test_the_reward_value_report_scores_which_reward_and_its_expected_size():
    from genie_env.evaluate.dynamics import reward_values_report

    values = np.array([-4.0, 0.0, 1.0])
    dist = np.array([[0.0, 1.0, 0.0], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    rewards = np.array([0.0, 1.0, -4.0, -4.0])  # the last: the model bets on +1 where -4 came
    report = reward_values_report(dist, values, rewards)
    assert report["rewarded_transitions"] == 3 and report["value_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["per_value"] == {"-4": {"transitions": 2, "value_accuracy": 0.5},
                                   "1": {"transitions": 1, "value_accuracy": 1.0}}  # fmt: skip
    expected = dist @ values
    assert report["expected_reward_mae"] == pytest.approx(np.abs(expected - rewards).mean(), abs=1e-5)
