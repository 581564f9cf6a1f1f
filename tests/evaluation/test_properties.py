"""Property tests (hypothesis): bounds, monotonicity, perfect similarity, invariances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvd.evaluation import retrieval_metrics

PROTOCOLS = ("university1652", "sues200", "cvusa", "cvact")
KS = (1, 2, 3, 5, 10, 20)
SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def retrieval_problems(draw):
    """Small problems with coarse scores (many ties), junk, several or no true matches."""
    queries = draw(st.integers(1, 12))
    gallery = draw(st.integers(1, 30))
    locations = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    gallery_labels = rng.integers(-1, locations, gallery)
    query_labels = rng.integers(0, locations + 1, queries)
    levels = draw(st.sampled_from([3, 10, 1000]))
    similarity = rng.integers(0, levels, (queries, gallery)).astype(np.float64) / levels
    protocol = draw(st.sampled_from(PROTOCOLS))
    return similarity, query_labels, gallery_labels, protocol, rng


def scores(result):
    return {
        name: value for name, value in result.items() if name.startswith(("R@", "AP")) and name != "R@1%_K"
    }


@SETTINGS
@given(retrieval_problems())
def test_metrics_are_percentages_and_recall_is_monotone_in_k(problem):
    similarity, query_labels, gallery_labels, protocol, _ = problem
    result = retrieval_metrics(similarity, query_labels, gallery_labels, protocol, ks=KS)
    for name, value in scores(result).items():
        # AP sums 1/n_matches-weighted precisions in float64: n x (1/n) can round to 1 + 2e-16,
        # so the bound allows 1e-9 (about 1e-11 of the 100 scale); an AP off by a real amount is
        # still caught
        assert -1e-9 <= value <= 100.0 + 1e-9, name
    recalls = [result[f"R@{k}"] for k in KS]
    assert recalls == sorted(recalls)
    # The trapezoid rule never exceeds textbook AP: p'_i = (i-1)/r_i <= i/(r_i+1) as r_i >= i-1.
    assert result["AP"] <= result["AP_textbook"] + 1e-9


@SETTINGS
@given(retrieval_problems())
def test_perfect_similarity_scores_100(problem):
    _, _, gallery_labels, protocol, rng = problem
    locations = gallery_labels[gallery_labels >= 0]
    if locations.size == 0:
        return
    query_labels = rng.choice(locations, size=5)  # every query has a true match
    perfect = (query_labels[:, None] == gallery_labels[None, :]).astype(np.float64)
    result = retrieval_metrics(perfect, query_labels, gallery_labels, protocol, ks=KS)
    for name, value in scores(result).items():
        if name == "R@1%" and result["R@1%_K"] == 0:
            assert value == 0.0  # CVUSA/CVACT with < 100 references: K = floor(|R|/100) = 0
        else:
            assert value == pytest.approx(100.0), name


@SETTINGS
@given(retrieval_problems())
def test_permuting_gallery_or_queries_changes_nothing(problem):
    similarity, query_labels, gallery_labels, protocol, rng = problem
    expected = retrieval_metrics(similarity, query_labels, gallery_labels, protocol, ks=KS)
    columns = rng.permutation(similarity.shape[1])
    rows = rng.permutation(similarity.shape[0])
    shuffled = retrieval_metrics(
        similarity[rows][:, columns], query_labels[rows], gallery_labels[columns], protocol, ks=KS
    )
    for name, value in scores(expected).items():
        assert shuffled[name] == pytest.approx(value, abs=1e-9), name


@SETTINGS
@given(retrieval_problems(), st.integers(1, 13))
def test_chunk_size_does_not_change_results(problem, chunk_size):
    similarity, query_labels, gallery_labels, protocol, _ = problem
    whole = retrieval_metrics(similarity, query_labels, gallery_labels, protocol, chunk_size=10_000)
    chunked = retrieval_metrics(similarity, query_labels, gallery_labels, protocol, chunk_size=chunk_size)
    assert chunked == whole
