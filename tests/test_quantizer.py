"""The vector quantizer: nearest code, straight-through gradients, loss terms, codebook health."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genie_env.models.quantizer import VectorQuantizer, kmeans, nearest_code


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 30), d=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_nearest_code_is_the_brute_force_nearest(n, k, d, seed):
    g = torch.Generator().manual_seed(seed)
    z, codebook = (
        torch.randn(n, d, generator=g, dtype=torch.float64),
        torch.randn(k, d, generator=g, dtype=torch.float64),
    )
    brute = (z[:, None] - codebook[None]).pow(2).sum(-1)
    idx = nearest_code(z, codebook)
    assert torch.allclose(brute.gather(1, idx[:, None])[:, 0], brute.min(1).values)


def test_straight_through_gradient_reaches_the_encoder():
    vq = VectorQuantizer(16, 4, kmeans_init=False)
    z = torch.randn(10, 4, requires_grad=True)
    out = vq(z)
    weights = torch.randn(10, 4)
    (out.quantized * weights).sum().backward()
    # d(quantized)/dz is the identity under straight-through
    assert torch.allclose(z.grad, weights)


def test_loss_terms_match_a_hand_computation():
    vq = VectorQuantizer(2, 2, kmeans_init=False)
    vq.codebook.data = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    vq.eval()
    out = vq(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert out.indices.tolist() == [0, 1]
    # selected = [[0, 1], [1, 1]]: squared errors 0, 1, 0, 0 over 4 values
    assert torch.isclose(out.codebook_loss, torch.tensor(0.25))
    assert torch.isclose(out.commitment_loss, torch.tensor(0.25))
    assert torch.allclose(out.quantized, torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    assert torch.isclose(out.usage, torch.tensor(1.0)) and torch.isclose(out.perplexity, torch.tensor(2.0))


def test_codebook_and_commitment_gradients_go_to_the_right_place():
    vq = VectorQuantizer(4, 3, kmeans_init=False)
    z = torch.randn(8, 3, requires_grad=True)
    out = vq(z)
    out.codebook_loss.backward(retain_graph=True)
    assert z.grad is None and vq.codebook.grad.abs().sum() > 0
    vq.codebook.grad = None
    out.commitment_loss.backward()
    assert z.grad.abs().sum() > 0 and vq.codebook.grad is None


def test_dead_codes_are_restarted_from_recent_encoder_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 2, dead_code_steps=3, kmeans_init=False)
    vq.codebook.data = torch.tensor([[0.0, 0.0]] * 4 + [[100.0, 100.0]] * 4) + torch.randn(8, 2) * 0.01
    data = torch.randn(64, 2) * 0.1
    for _ in range(3):
        vq(data)
    assert (vq.codebook.data[4:].abs() < 1.0).all()  # moved next to the data
    assert (vq.steps_unused[4:] == 0).all()


def test_kmeans_initialises_codes_on_the_data_clusters():
    torch.manual_seed(0)
    centers = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [0.0, -5.0]])
    data = torch.cat([c + 0.1 * torch.randn(50, 2) for c in centers])
    vq = VectorQuantizer(3, 2, kmeans_init=True)
    vq(data)
    assert bool(vq.initialized)
    found = nearest_code(centers, vq.codebook.data)
    assert sorted(found.tolist()) == [0, 1, 2]
    assert torch.cdist(centers, vq.codebook.data).min(1).values.max() < 0.5
    assert kmeans(data, 3).shape == (3, 2)


def test_ema_codebook_moves_toward_assigned_vectors_without_gradients():
    vq = VectorQuantizer(2, 2, ema=True, ema_decay=0.5, kmeans_init=False)
    vq.codebook.data = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    vq.ema_sum.copy_(vq.codebook.data)
    out = vq(torch.tensor([[1.0, 1.0], [1.0, 1.0]]))
    assert not vq.codebook.requires_grad and out.codebook_loss.item() == 0.0
    assert 0.0 < vq.codebook.data[0, 0] < 1.0
