"""Hand-built rankings whose metrics are worked out by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from cvd.evaluation import get_protocol, retrieval_metrics


def row_with_true_match_at(position: int, gallery_size: int = 12) -> np.ndarray:
    """Scores 1.0 > 0.99 > ... with the true match (column 0) placed at 1-based ``position``."""
    scores = np.linspace(1.0, 0.5, gallery_size)
    row = np.empty(gallery_size)
    others = iter(range(1, gallery_size))
    for slot, value in enumerate(scores):
        row[0 if slot == position - 1 else next(others)] = value
    return row


@pytest.mark.parametrize(
    ("position", "ap", "ap_textbook", "r1", "r5", "r10"),
    [
        # rank 1 (r = 0): p = 1/1, p' = 1 by definition -> AP = (1 + 1) / 2 = 1; textbook 1.
        (1, 100.0, 100.0, 100.0, 100.0, 100.0),
        # rank 2 (r = 1): p = 1/2, p' = 0/1 = 0 -> AP = (0 + 1/2) / 2 = 0.25; textbook 1/2.
        (2, 25.0, 50.0, 0.0, 100.0, 100.0),
        # rank 10 (r = 9): p = 1/10, p' = 0/9 = 0 -> AP = 0.05; textbook 0.1; only R@10 hits.
        (10, 5.0, 10.0, 0.0, 0.0, 100.0),
    ],
)
def test_single_true_match(position, ap, ap_textbook, r1, r5, r10):
    gallery_labels = [7] + [100 + j for j in range(11)]
    result = retrieval_metrics(row_with_true_match_at(position)[None, :], [7], gallery_labels)
    assert result["AP"] == pytest.approx(ap)
    assert result["AP_textbook"] == pytest.approx(ap_textbook)
    assert (result["R@1"], result["R@5"], result["R@10"]) == (r1, r5, r10)
    assert result["num_queries"] == 1 and result["num_gallery"] == 12


def test_three_queries_average_over_queries():
    # The three rows above in one matrix: AP = (1 + 0.25 + 0.05) / 3 = 0.43333;
    # R@1 = 1/3, R@5 = 2/3, R@10 = 3/3. |G| = 12 -> round(0.12) = 0 -> R@1% = CMC[0] = R@1.
    similarity = np.stack([row_with_true_match_at(p) for p in (1, 2, 10)])
    result = retrieval_metrics(similarity, [7, 7, 7], [7] + [100 + j for j in range(11)])
    assert result["AP"] == pytest.approx(100 * 1.3 / 3)
    assert result["AP_textbook"] == pytest.approx(100 * 1.6 / 3)
    assert result["R@1"] == pytest.approx(100 / 3)
    assert result["R@5"] == pytest.approx(200 / 3)
    assert result["R@10"] == pytest.approx(100.0)
    assert result["R@1%_K"] == 1 and result["R@1%"] == pytest.approx(100 / 3)


def test_three_true_matches_at_ranks_2_4_6():
    # True matches at 1-based ranks 2, 4, 6 -> 0-based r = 1, 3, 5, n = 3:
    #   i=1: p = 1/2, p' = 0/1 = 0    -> (0 + 0.5) / 2       = 0.25
    #   i=2: p = 2/4, p' = 1/3        -> (1/3 + 1/2) / 2     = 0.416667
    #   i=3: p = 3/6, p' = 2/5        -> (0.4 + 0.5) / 2     = 0.45
    #   University-1652 AP = (0.25 + 0.416667 + 0.45) / 3 = 0.372222
    #   textbook AP = (1/2 + 2/4 + 3/6) / 3 = 0.5
    labels = np.array([9, 1, 8, 1, 7, 1, 4, 5])  # location 1 at positions 2, 4, 6
    similarity = np.linspace(1.0, 0.3, labels.size)[None, :]  # column order = ranking
    result = retrieval_metrics(similarity, [1], labels)
    assert result["AP"] == pytest.approx(100 * (0.25 + (1 / 3 + 0.5) / 2 + 0.45) / 3)
    assert result["AP"] == pytest.approx(37.2222, abs=1e-4)
    assert result["AP_textbook"] == pytest.approx(50.0)
    assert (result["R@1"], result["R@5"]) == (0.0, 100.0)


def test_junk_above_the_true_match_is_removed_before_ranking():
    # Columns by score: junk 0.9, junk 0.8, true 0.7, other 0.6.
    similarity = np.array([[0.9, 0.8, 0.7, 0.6]])
    # With the two junk items removed the true match is first: everything 100.
    junk = retrieval_metrics(similarity, [5], [-1, -1, 5, 6])
    assert (junk["R@1"], junk["AP"], junk["AP_textbook"]) == (100.0, 100.0, 100.0)
    assert junk["num_gallery"] == 4 and junk["num_gallery_ranked"] == 2
    # Same scores, items labelled as other locations instead: rank 3 (r = 2),
    # AP = (0/2 + 1/3) / 2 = 1/6, textbook 1/3, R@1 = 0.
    distractors = retrieval_metrics(similarity, [5], [1, 2, 5, 6])
    assert distractors["R@1"] == 0.0
    assert distractors["AP"] == pytest.approx(100 / 6)
    assert distractors["AP_textbook"] == pytest.approx(100 / 3)


def test_ties_count_against_the_query_under_university1652_and_for_it_under_cvusa():
    # Scores: true 0.5, two others tied at 0.5, one other at 0.9.
    similarity = np.array([[0.5, 0.5, 0.5, 0.9]])
    labels = [1, 2, 3, 4]
    # University-1652 policy: tied items rank before the true match -> r = 3:
    # R@1 = 0, R@5 = 100, AP = (0/3 + 1/4) / 2 = 0.125.
    u1652 = retrieval_metrics(similarity, [1], labels, "university1652")
    assert (u1652["R@1"], u1652["R@5"]) == (0.0, 100.0)
    assert u1652["AP"] == pytest.approx(12.5)
    # CVUSA rule: only strictly greater scores count -> r = 1: AP = (0 + 1/2) / 2 = 0.25.
    cvusa = retrieval_metrics(similarity, [1], labels, "cvusa")
    assert (cvusa["R@1"], cvusa["R@5"]) == (0.0, 100.0)
    assert cvusa["AP"] == pytest.approx(25.0)


def test_collapsed_model_scores_worst_not_best_under_university1652():
    # All scores equal (e.g. a model that outputs a constant): against-the-query ties put the
    # true match last among the 4 ranked items (r = 3), so R@1 = 0 rather than 100.
    similarity = np.zeros((2, 4))
    result = retrieval_metrics(similarity, [1, 2], [1, 2, 3, 4])
    assert result["R@1"] == 0.0
    assert result["AP"] == pytest.approx(12.5)  # (0/3 + 1/4) / 2 per query
    # The CVUSA rule, as in Sample4Geo's script, counts nothing strictly greater: R@1 = 100.
    assert retrieval_metrics(similarity, [1, 2], [1, 2, 3, 4], "cvusa")["R@1"] == 100.0


def test_tied_true_matches_keep_their_order_among_tied_others():
    # Two true matches and one other all at 0.5: the other goes first (ties against the query),
    # the true matches take 0-based ranks 1 and 2:
    #   i=1: p = 1/2, p' = 0/1 -> 0.25;  i=2: p = 2/3, p' = 1/2 -> (0.5 + 0.6667) / 2 = 0.58333
    #   AP = (0.25 + 0.58333) / 2 = 0.416667; textbook (1/2 + 2/3) / 2 = 0.58333.
    result = retrieval_metrics(np.array([[0.5, 0.5, 0.5]]), [3], [3, 3, 8])
    assert result["AP"] == pytest.approx(100 * (0.25 + (0.5 + 2 / 3) / 2) / 2)
    assert result["AP_textbook"] == pytest.approx(100 * (0.5 + 2 / 3) / 2)
    assert result["R@1"] == 0.0


def test_query_without_true_match_counts_as_a_miss():
    # Query 0 is ranked first (AP 1); query 1's location is not in the gallery: it still
    # counts in the denominator, as in the University-1652 script -> AP = R@1 = 50.
    similarity = np.array([[0.9, 0.1], [0.9, 0.1]])
    result = retrieval_metrics(similarity, [1, 42], [1, 2])
    assert result["R@1"] == 50.0 and result["AP"] == 50.0
    assert result["num_queries"] == 2 and result["num_queries_without_match"] == 1


def test_cvusa_one_percent_is_fewer_than_floor_r_over_100_strictly_greater():
    # |R| = 250 references -> K = floor(250 / 100) = 2: a hit needs < 2 strictly greater.
    num_references = 250
    labels = np.arange(num_references)
    base = np.linspace(0.0, 0.4, num_references)
    rows = []
    for greater in (0, 1, 2):  # true reference 0 at 0.5; `greater` others at 0.9
        row = base.copy()
        row[0] = 0.5
        row[1 : 1 + greater] = 0.9
        rows.append(row)
    tied = base.copy()  # one strictly greater and five tied with the true one: 1 < 2 -> hit
    tied[0], tied[1], tied[2:7] = 0.5, 0.9, 0.5
    rows.append(tied)
    result = retrieval_metrics(np.stack(rows), [0, 0, 0, 0], labels, "cvusa")
    assert result["R@1%_K"] == 2
    assert result["R@1%"] == pytest.approx(75.0)  # hits: 0, 1, tied; miss: 2
    assert result["R@1"] == pytest.approx(25.0)  # only the row with none strictly greater


def test_university1652_one_percent_is_cmc_at_round_one_percent_of_gallery():
    # |G| = 951 -> round(9.51) = 10 -> CMC[10]: hit when the first true match's 0-based rank
    # is <= 10 (K = 11).
    num_gallery = 951
    labels = np.arange(num_gallery)
    base = np.linspace(0.0, 0.4, num_gallery)
    rows = []
    for rank in (10, 11):
        row = base.copy()
        row[0] = 0.5
        row[1 : 1 + rank] = 0.9
        rows.append(row)
    result = retrieval_metrics(np.stack(rows), [0, 0], labels)
    assert result["R@1%_K"] == 11
    assert result["R@1%"] == 50.0


@pytest.mark.parametrize(
    ("protocol", "num_gallery", "expected_k"),
    [
        ("university1652", 951, 11),  # round(9.51) = 10, + 1
        ("university1652", 250, 3),  # round(2.5) = 2 (Python rounds half to even), + 1
        ("university1652", 350, 5),  # 350 * 0.01 = 3.5000000000000004 -> 4, + 1
        ("university1652", 51355, 515),  # round(513.55) = 514, + 1
        ("sues200", 200, 3),  # round(2.0) = 2, + 1
        ("cvusa", 8884, 88),  # floor(88.84)
        ("cvact", 8884, 88),
        ("cvusa", 99, 0),  # floor(0.99): R@1% is 0 by the peers' definition
    ],
)
def test_one_percent_k(protocol, num_gallery, expected_k):
    assert get_protocol(protocol).one_percent_k(num_gallery, num_gallery) == expected_k
