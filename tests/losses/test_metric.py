"""Classification and triplet losses against values worked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from cvd.losses.metric import batch_hard_triplet, classification_loss, soft_margin_triplet


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_classification_loss_sums_parts_like_lpn():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    # -log(e^2 / (e^2 + 1)) and -log(e / (1 + e)), averaged over the batch
    one = 0.5 * (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.e / (1 + math.e)))
    assert classification_loss(logits, labels).item() == pytest.approx(one, rel=1e-6)
    assert classification_loss([logits, logits], labels).item() == pytest.approx(2 * one, rel=1e-6)
    assert classification_loss([logits, logits], labels, reduction="mean").item() == pytest.approx(
        one, rel=1e-6
    )


def test_batch_hard_triplet_hand_worked():
    # 1-D points: a=0, b=1 (location 0); c=1.2, d=3.5 (location 1)
    points = torch.tensor([[0.0], [1.0], [1.2], [3.5]])
    labels = torch.tensor([0, 0, 1, 1])
    # a: hardest positive 1 (b), nearest negative 1.2 (c) -> 1 - 1.2 + 0.3 = 0.1
    # b: 1 (a) vs 0.2 (c) -> 1.1; c: 2.3 (d) vs 0.2 (b) -> 2.4; d: 2.3 (c) vs 2.5 (b) -> 0.1
    expected = (0.1 + 1.1 + 2.4 + 0.1) / 4
    assert batch_hard_triplet(points, labels, margin=0.3).item() == pytest.approx(expected, abs=1e-5)


def test_batch_hard_triplet_query_vs_reference():
    queries = torch.tensor([[0.0], [2.0]])
    references = torch.tensor([[0.5], [1.0]])
    labels = torch.tensor([0, 1])
    # q0: positive r0 at 0.5, negative r1 at 1.0 -> relu(0.5 - 1.0 + 0.3) = 0
    # q1: positive r1 at 1.0, negative r0 at 1.5 -> relu(1.0 - 1.5 + 0.3) = 0 ; margin 1 -> 0.5 and 0.5
    loss = batch_hard_triplet(queries, labels, margin=1.0, ref_emb=references, ref_labels=labels)
    assert loss.item() == pytest.approx(0.5, abs=1e-6)


def test_soft_margin_triplet_hand_worked():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    references = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # squared distances 2 - 2 cos: d(q0,r0)=0, d(q0,r1)=0.8, d(q1,r0)=2, d(q1,r1)=0.4
    q_terms = [softplus(10 * (0 - 0.8)), softplus(10 * (0.4 - 2))]  # anchors q0, q1
    r_terms = [softplus(10 * (0 - 2)), softplus(10 * (0.4 - 0.8))]  # anchors r0, r1
    expected = 0.5 * (sum(q_terms) / 2 + sum(r_terms) / 2)
    assert soft_margin_triplet(queries, references).item() == pytest.approx(expected, rel=1e-5)


def test_triplets_have_gradients():
    x = torch.randn(6, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    (batch_hard_triplet(x, labels) + soft_margin_triplet(x, x.flip(0), labels)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
