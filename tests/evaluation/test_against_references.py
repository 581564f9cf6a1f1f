"""Metrics against independent references on random data: the University-1652 procedure,
a Sample4Geo-style CVUSA loop, and torchmetrics' retrieval metrics (textbook AP, hit rate)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMAP, RetrievalRecall

from cvd.evaluation import retrieval_metrics

METRICS = ("R@1", "R@5", "R@10", "R@1%", "AP", "AP_textbook")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("protocol", ["university1652", "sues200"])
def test_university1652_rules_match_the_per_query_procedure(
    seed, protocol, random_retrieval, u1652_reference
):
    similarity, query_labels, gallery_labels = random_retrieval(seed)
    ours = retrieval_metrics(similarity, query_labels, gallery_labels, protocol, chunk_size=7)
    reference = u1652_reference(similarity, query_labels, gallery_labels)
    for name in METRICS:
        assert ours[name] == pytest.approx(reference[name], abs=1e-9), name


def test_float32_scores_with_one_true_match_each(u1652_reference):
    # The drone->satellite shape: one true match per query, float32 scores, distractors.
    rng = np.random.default_rng(11)
    gallery_labels = np.arange(300)
    query_labels = rng.integers(0, 200, 500)
    similarity = rng.standard_normal((500, 300)).astype(np.float32)
    ours = retrieval_metrics(torch.from_numpy(similarity), torch.from_numpy(query_labels), gallery_labels)
    reference = u1652_reference(similarity, query_labels, gallery_labels)
    for name in METRICS:
        assert ours[name] == pytest.approx(reference[name], abs=1e-9), name


def sample4geo_style_cvusa(similarity, query_labels, reference_labels, ks=(1, 5, 10)):
    """Per query: count references scoring strictly greater than the true one; hit if < K."""
    hits = np.zeros(len(ks) + 1)
    top_one_percent = len(reference_labels) // 100
    column_of = {label: column for column, label in enumerate(reference_labels)}
    for q, label in enumerate(query_labels):
        true_score = similarity[q, column_of[label]]
        higher = int((similarity[q] > true_score).sum())
        for j, k in enumerate((*ks, top_one_percent)):
            hits[j] += higher < k
    return hits / len(query_labels) * 100


@pytest.mark.parametrize("protocol", ["cvusa", "cvact"])
def test_cvusa_rules_match_a_strictly_greater_count(protocol):
    rng = np.random.default_rng(5)
    num_references = 640  # K(1%) = 6
    reference_labels = rng.permutation(num_references)
    query_labels = rng.permutation(num_references)[:300]
    # Coarse scores so that ties with the true reference are common.
    similarity = rng.integers(0, 40, (300, num_references)).astype(np.float32)
    ours = retrieval_metrics(similarity, query_labels, reference_labels, protocol)
    expected = sample4geo_style_cvusa(similarity, query_labels, reference_labels)
    assert ours["R@1%_K"] == 6
    got = [ours["R@1"], ours["R@5"], ours["R@10"], ours["R@1%"]]
    assert got == pytest.approx(list(expected), abs=1e-9)


def torchmetrics_inputs(similarity, query_labels, gallery_labels):
    keep = gallery_labels != -1  # junk removed before ranking
    # torchmetrics 1.9 treats items with a score <= 0 as not relevant (``target`` is masked by
    # ``preds > 0``), so shift the scores above 0: the ranking is unchanged.
    shifted = similarity - similarity.min() + 1.0
    scores = torch.as_tensor(shifted[:, keep])
    target = torch.as_tensor(query_labels[:, None] == gallery_labels[keep][None, :])
    indexes = torch.arange(scores.shape[0])[:, None].expand_as(scores)
    return scores.reshape(-1), target.reshape(-1), indexes.reshape(-1)


@pytest.mark.parametrize("seed", range(3))
def test_textbook_ap_and_recall_match_torchmetrics(seed, random_retrieval):
    similarity, query_labels, gallery_labels = random_retrieval(seed, queries=60, gallery=150, locations=25)
    preds, target, indexes = torchmetrics_inputs(similarity, query_labels, gallery_labels)
    ours = retrieval_metrics(similarity, query_labels, gallery_labels, ks=(1, 3, 5, 10))
    # Queries without a true match score 0 in both (torchmetrics' empty_target_action="neg").
    assert ours["num_queries_without_match"] > 0
    expected_ap = RetrievalMAP(empty_target_action="neg")(preds, target, indexes=indexes)
    assert ours["AP_textbook"] == pytest.approx(100 * float(expected_ap), abs=1e-4)
    for k in (1, 3, 5, 10):
        hit_rate = RetrievalHitRate(top_k=k, empty_target_action="neg")(preds, target, indexes=indexes)
        assert ours[f"R@{k}"] == pytest.approx(100 * float(hit_rate), abs=1e-4), k


def test_single_true_match_recall_equals_torchmetrics_recall():
    # With exactly one true match per query, R@K is also torchmetrics' RetrievalRecall@K.
    rng = np.random.default_rng(3)
    gallery_labels = np.arange(80)
    query_labels = rng.integers(0, 80, 100)
    similarity = rng.standard_normal((100, 80))
    preds, target, indexes = torchmetrics_inputs(similarity, query_labels, gallery_labels)
    ours = retrieval_metrics(similarity, query_labels, gallery_labels)
    for k in (1, 5, 10):
        recall = RetrievalRecall(top_k=k)(preds, target, indexes=indexes)
        assert ours[f"R@{k}"] == pytest.approx(100 * float(recall), abs=1e-4)
