"""info_nce against values worked by hand on a 3x3 example, and against torch's cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cvd.losses import info_nce

# Unit vectors whose cosines are round numbers: S = Q R^T =
#   [[1.0, 0.6, 0.0],
#    [0.0, 0.8, 0.6],
#    [0.0, 0.0, 0.8]]
# With tau = 0.5 the logits are 2 S: [[2, 1.2, 0], [0, 1.6, 1.2], [0, 0, 1.6]].
QUERY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
REFERENCE = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.6, 0.8]])
E = math.exp


def test_matches_the_hand_computation():
    # L_i = log(sum_j exp(l_ij)) - l_ii, averaged over the three rows.
    row1 = math.log(E(2) + E(1.2) + E(0)) - 2  # 0.46037
    row2 = math.log(E(0) + E(1.6) + E(1.2)) - 1.6  # 0.62712
    row3 = math.log(E(0) + E(0) + E(1.6)) - 1.6  # 0.33918
    expected = (row1 + row2 + row3) / 3
    assert expected == pytest.approx(0.47556, abs=1e-4)  # the same sum done on paper
    assert info_nce(QUERY, REFERENCE, tau=0.5).item() == pytest.approx(expected, abs=1e-6)


def test_symmetric_is_the_mean_of_both_directions_by_hand():
    rows = [
        math.log(E(2) + E(1.2) + 1) - 2,
        math.log(1 + E(1.6) + E(1.2)) - 1.6,
        math.log(1 + 1 + E(1.6)) - 1.6,
    ]
    # Columns of the logit matrix: [2, 0, 0], [1.2, 1.6, 0], [0, 1.2, 1.6].
    columns = [
        math.log(E(2) + 1 + 1) - 2,
        math.log(E(1.2) + E(1.6) + 1) - 1.6,
        math.log(1 + E(1.2) + E(1.6)) - 1.6,
    ]
    expected = 0.5 * (sum(rows) / 3 + sum(columns) / 3)
    assert info_nce(QUERY, REFERENCE, tau=0.5, symmetric=True).item() == pytest.approx(expected, abs=1e-6)


def test_items_sharing_a_location_are_not_each_others_negatives():
    labels = torch.tensor([0, 0, 1])  # items 1 and 2 show the same place
    # Positive pairs (1,1), (1,2), (2,1), (2,2), (3,3); each keeps only its true negatives.
    pairs = [
        math.log(E(2) + E(0)) - 2,  # (1,1): negatives {3}
        math.log(E(1.2) + E(0)) - 1.2,  # (1,2): negatives {3}
        math.log(E(0) + E(1.2)) - 0,  # (2,1): negatives {3}
        math.log(E(1.6) + E(1.2)) - 1.6,  # (2,2): negatives {3}
        math.log(E(0) + E(0) + E(1.6)) - 1.6,  # (3,3): negatives {1, 2}
    ]
    expected = sum(pairs) / len(pairs)
    got = info_nce(QUERY, REFERENCE, tau=0.5, labels=labels)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_contrasting_a_batch_with_itself_excludes_self_pairs():
    # Items = REFERENCE rows; cosines 1-2: 0.6, 1-3: 0.0, 2-3: 0.48; tau 0.5 doubles them.
    labels = torch.tensor([0, 0, 1])
    pair_12 = math.log(E(1.2) + E(0.0)) - 1.2  # query 1: positive 2, negative 3
    pair_21 = math.log(E(1.2) + E(0.96)) - 1.2  # query 2: positive 1, negative 3
    expected = (pair_12 + pair_21) / 2  # query 3 has no positive
    got = info_nce(REFERENCE, None, tau=0.5, labels=labels)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_label_smoothing_matches_torch_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    query, reference = torch.randn(6, 8, generator=generator), torch.randn(6, 8, generator=generator)
    logits = F.normalize(query) @ F.normalize(reference).T / 0.05
    expected = F.cross_entropy(logits, torch.arange(6), label_smoothing=0.1)
    got = info_nce(query, reference, tau=0.05, label_smoothing=0.1)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_learnable_logit_scale_replaces_tau_and_gets_a_gradient():
    scale = torch.tensor(2.0, requires_grad=True)
    got = info_nce(QUERY, REFERENCE, logit_scale=scale)
    assert got.item() == pytest.approx(info_nce(QUERY, REFERENCE, tau=0.5).item(), abs=1e-6)
    got.backward()
    assert scale.grad is not None and scale.grad.item() != 0


def test_unique_labels_equal_the_unlabelled_loss_and_no_positive_is_an_error():
    generator = torch.Generator().manual_seed(1)
    query, reference = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    labelled = info_nce(query, reference, labels=torch.tensor([7, 3, 9, 1, 4]))
    # two code paths (label mask vs diagonal) on a loss of ~8: compared to 1e-6 of it, ~9 float32
    # ulps, where abs=1e-6 allowed one ulp
    assert labelled.item() == pytest.approx(info_nce(query, reference).item(), rel=1e-6)
    with pytest.raises(ValueError, match="no positive"):
        info_nce(query, reference, labels=torch.arange(5), ref_labels=torch.arange(5) + 10)
