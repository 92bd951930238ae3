"""Prioritised level replay over dream starts (`--start-curriculum plr`): the sampler, the episode scores
it is fed from a PPO rollout, and a tiny dream agent trained with it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from genie_env.agents.curriculum import PrioritizedContexts, episode_scores
from genie_env.agents.train import AgentConfig, make_vec_env, train_agent


def test_every_context_is_tried_once_before_replay_takes_over_and_high_scores_replay_more():
    plr = PrioritizedContexts(8, temperature=0.5, staleness=0.1)
    rng = np.random.default_rng(0)
    for _ in range(8):
        i = plr.sample(rng)
        plr.update(i, score=float(i))  # context i teaches i
    assert plr.seen.sum() >= 5  # unseen contexts are drawn while many remain
    p = plr.probabilities()
    assert p.sum() == pytest.approx(1.0) and np.all(p[~plr.seen] == 0)
    seen = np.flatnonzero(plr.seen)
    assert seen[p[seen].argmax()] == seen.max()  # the highest score replays most
    while not plr.seen.all():
        plr.update(plr.sample(rng), 0.0)
    plr.scores[:] = np.arange(8)
    draws = np.bincount([plr.sample(rng) for _ in range(4000)], minlength=8)
    assert draws[7] > draws[6] > draws[0] > 0  # rank-prioritised; staleness keeps the lowest alive
    flat = PrioritizedContexts(8, temperature=1e6, staleness=0.0)  # a hot temperature: near uniform
    flat.seen[:] = True
    flat.scores[:] = np.arange(8)
    assert np.allclose(flat.probabilities(), 1 / 8, atol=1e-4)
    with pytest.raises(ValueError, match="temperature > 0"):
        PrioritizedContexts(4, temperature=0.0)


def test_episode_scores_are_the_mean_absolute_advantage_of_each_episode_segment():
    advantages = np.array([[1.0, -2.0], [-3.0, 2.0], [5.0, 2.0], [1.0, 4.0]])
    contexts = np.array([[4, -1], [4, -1], [7, -1], [7, -1]])  # env 1 does not dream (Dyna's real env)
    dones = np.array([[False, False], [True, False], [False, True], [False, False]])
    assert episode_scores(advantages, contexts, dones) == [(4, 2.0), (7, 3.0)]  # the last is cut by the rollout


def test_a_dream_agent_trains_with_plr_and_scores_the_contexts_it_started_from(tiny_world_model, tmp_path, monkeypatch):
    cfg = AgentConfig(env="dream", world_model=str(tiny_world_model), steps=256, num_envs=4, n_steps=32,
                      batch_size=64, n_epochs=1, horizon=8, precision="fp32", start_curriculum="plr")  # fmt: skip
    env = make_vec_env(cfg)
    sampler = env.context_sampler
    env.reset()
    _, _, _, infos = env.step(np.zeros(4, np.int64))
    assert all(0 <= info["context_index"] < sampler.size for info in infos)
    env.close()
    assert make_vec_env(AgentConfig(env="dream", world_model=str(tiny_world_model), num_envs=4, n_steps=32,
                                    batch_size=64)).context_sampler is None  # fmt: skip
    scored = []
    update = PrioritizedContexts.update
    monkeypatch.setattr(PrioritizedContexts, "update", lambda self, i, score: (scored.append((i, score)),
                                                                             update(self, i, score)))  # fmt: skip
    train_agent(cfg, tmp_path / "plr", progress=False)
    # 2 rollouts of 4 envs x 32 steps, dreams of at most 8 steps: at least 4 episodes per env and rollout
    assert len(scored) >= 2 * 4 * 4 and all(0 <= i < sampler.size and s >= 0 for i, s in scored)
    assert any(s > 0 for _, s in scored)
    # the scores are saved with the checkpoint and a resumed run takes them up again
    state = json.loads((tmp_path / "plr" / "checkpoints" / "plr.json").read_text())
    assert len(state["seen"]) > 0 and state["starts"] >= 2 * 4 * 4
    train_agent(dataclasses.replace(cfg, steps=384), tmp_path / "plr", resume=True, progress=False)
    resumed = json.loads((tmp_path / "plr" / "checkpoints" / "plr.json").read_text())
    assert resumed["starts"] > state["starts"] and set(state["seen"]) <= set(resumed["seen"])
    fresh = PrioritizedContexts(sampler.size + 1)
    with pytest.raises(ValueError, match="plr.json scores"):
        fresh.load(state, "plr.json")
    with pytest.raises(ValueError, match="--start-curriculum plr is for dreams"):
        AgentConfig(env="real", start_curriculum="plr")
    with pytest.raises(ValueError, match="unknown --start-curriculum"):
        AgentConfig(start_curriculum="hard-first")
