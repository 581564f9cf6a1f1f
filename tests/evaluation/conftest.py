"""Shared helpers of the evaluation tests: an independent reference of the University-1652 rules.

The reference follows the University-1652 evaluate script's per-query procedure literally
(full argsort of the row, junk removed from the ordering, positions of the true matches,
trapezoid AP, CMC) and shares no code with ``cvd.evaluation``. Its tie order is numpy's, so it
is only compared on scores without ties; ties are checked against hand-worked examples.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def university1652_reference(similarity, query_labels, gallery_labels) -> dict[str, float]:
    similarity = np.asarray(similarity, dtype=np.float64)
    query_labels = np.asarray(query_labels)
    gallery_labels = np.asarray(gallery_labels)
    num_queries, num_gallery = similarity.shape
    cmc = np.zeros(num_gallery)
    ap_total = ap_textbook_total = 0.0
    for q in range(num_queries):
        order = np.argsort(-similarity[q], kind="stable")
        order = order[gallery_labels[order] != -1]  # junk removed before ranking
        hits = np.flatnonzero(gallery_labels[order] == query_labels[q])
        if hits.size == 0:
            continue  # counts as a miss: the script still divides by all queries
        cmc[hits[0] :] += 1
        for i, rank in enumerate(hits, start=1):  # i: 1-based index of the true match
            precision = i / (rank + 1)
            previous = (i - 1) / rank if rank > 0 else 1.0
            ap_total += (previous + precision) / 2 / hits.size
            ap_textbook_total += precision / hits.size
    cmc = cmc / num_queries * 100

    def recall_at(k: int) -> float:
        return float(cmc[min(k, num_gallery) - 1])

    return {
        "R@1": recall_at(1),
        "R@5": recall_at(5),
        "R@10": recall_at(10),
        "R@1%": float(cmc[round(num_gallery * 0.01)]),
        "AP": ap_total / num_queries * 100,
        "AP_textbook": ap_textbook_total / num_queries * 100,
    }


@pytest.fixture
def u1652_reference() -> Callable[..., dict[str, float]]:
    return university1652_reference


@pytest.fixture
def random_retrieval() -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``make(seed, queries, gallery, locations, junk_fraction)`` -> (similarity, q_labels,
    g_labels): continuous scores (no ties), several true matches per query, some junk, and
    some queries whose location is missing from the gallery."""

    def make(seed: int, queries: int = 40, gallery: int = 120, locations: int = 30, junk: float = 0.1):
        rng = np.random.default_rng(seed)
        gallery_labels = rng.integers(0, locations, gallery)
        gallery_labels[rng.random(gallery) < junk] = -1
        query_labels = rng.integers(0, locations + 3, queries)
        similarity = rng.standard_normal((queries, gallery))
        return similarity, query_labels, gallery_labels

    return make
