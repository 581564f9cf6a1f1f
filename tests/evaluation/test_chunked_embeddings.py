"""Chunked evaluation from embeddings equals the metrics of the full similarity matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvd.errors import ConfigError
from cvd.evaluation import evaluate_embeddings, get_protocol, retrieval_metrics
from cvd.evaluation.ranks import TrueMatchIndex, chunk_ranks


def sparse_unit_embeddings(rng: np.random.Generator, count: int, dim: int = 16) -> np.ndarray:
    """Rows with four entries of +-1/2: unit norm exactly and every dot product a multiple of
    1/4, exact in float32, so any chunking or summation order gives identical (often tied)
    scores."""
    rows = np.zeros((count, dim))
    for row in rows:
        row[rng.choice(dim, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    return rows


@pytest.mark.parametrize("protocol", ["university1652", "cvusa"])
@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_chunked_embeddings_equal_full_similarity_with_many_ties(protocol, chunk_size):
    rng = np.random.default_rng(0)
    queries, gallery = sparse_unit_embeddings(rng, 50), sparse_unit_embeddings(rng, 90)
    gallery_labels = rng.integers(-1, 20, 90)
    query_labels = rng.integers(0, 22, 50)
    full = queries @ gallery.T  # independent: numpy float64
    expected = retrieval_metrics(full, query_labels, gallery_labels, protocol)
    got = evaluate_embeddings(
        torch.tensor(queries, dtype=torch.float32),
        query_labels,
        torch.tensor(gallery, dtype=torch.float32),
        gallery_labels,
        protocol,
        chunk_size=chunk_size,
    )
    assert got == expected


def test_embeddings_are_normalised_before_scoring(u1652_reference):
    # Cosine similarity: scaling embeddings must not change anything (a gallery item with a
    # large norm would otherwise outrank the others under a plain dot product).
    rng = np.random.default_rng(1)
    queries, gallery = rng.standard_normal((30, 8)), rng.standard_normal((40, 8))
    query_labels, gallery_labels = rng.integers(0, 10, 30), rng.integers(0, 10, 40)
    got = evaluate_embeddings(
        queries * rng.uniform(0.1, 10, (30, 1)),
        query_labels,
        gallery * rng.uniform(0.1, 10, (40, 1)),
        gallery_labels,
        chunk_size=4,
    )
    unit_q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    unit_g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    reference = u1652_reference(unit_q @ unit_g.T, query_labels, gallery_labels)
    for name in ("R@1", "R@5", "R@10", "R@1%", "AP", "AP_textbook"):
        assert got[name] == pytest.approx(reference[name], abs=1e-9)


@pytest.mark.parametrize("protocol", ["university1652", "cvact"])
@pytest.mark.parametrize("junk", [0.0, 0.2])
def test_torch_kernels_equal_numpy_kernels(protocol, junk):
    # The torch kernels serve GPUs; on CPU they must agree exactly with the numpy ones.
    rng = np.random.default_rng(2)
    gallery_labels = rng.integers(0, 6, 70)
    gallery_labels[rng.random(70) < junk] = -1
    query_labels = rng.integers(0, 7, 25)
    scores = torch.from_numpy(rng.integers(0, 12, (25, 70)).astype(np.float32))
    index = TrueMatchIndex(query_labels, gallery_labels)
    rules = get_protocol(protocol)
    for rows in (slice(0, 25), slice(3, 4)):
        block = scores[rows]
        by_numpy = chunk_ranks(block, rows, index, rules, backend="numpy")
        by_torch = chunk_ranks(block, rows, index, rules, backend="torch")
        np.testing.assert_array_equal(by_numpy[0], by_torch[0])
        np.testing.assert_array_equal(by_numpy[1], by_torch[1])
    # One true match per query takes the compare-and-count path in both kernels.
    single = TrueMatchIndex(np.arange(25) % 10, np.arange(70) % 35)
    np.testing.assert_array_equal(
        chunk_ranks(scores, slice(0, 25), single, rules, backend="numpy")[0],
        chunk_ranks(scores, slice(0, 25), single, rules, backend="torch")[0],
    )


def test_records_how_the_number_was_made():
    result = retrieval_metrics(
        np.eye(3),
        [0, 1, 2],
        [0, 1, 2],
        gallery_variant="official",
        flip_tta=True,
        split="drone->satellite",
        metadata={"config": "u1652_sample4geo.yaml"},
    )
    assert result["protocol"] == "university1652" and result["ties"] == "against_query"
    assert result["gallery_variant"] == "official" and result["flip_tta"] is True
    assert result["split"] == "drone->satellite"
    assert result["metadata"] == {"config": "u1652_sample4geo.yaml"}


def test_nan_embedding_is_refused_by_row():
    queries = np.ones((3, 4))
    queries[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"query_emb row 2"):
        evaluate_embeddings(queries, [0, 1, 2], np.ones((2, 4)), [0, 1])


def test_scores_overflowing_from_extreme_embeddings_are_refused():
    # Finite but huge query embeddings (queries are not normalised) overflow to inf scores.
    with pytest.raises(ValueError, match=r"similarity\[0, 0\] is NaN or infinite"):
        evaluate_embeddings(np.full((2, 4), 3e38, np.float32), [0, 1], np.ones((3, 4), np.float32), [0, 1, 2])


def test_nan_similarity_is_refused_with_its_position():
    similarity = np.zeros((3, 4), dtype=np.float32)
    similarity[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"similarity\[1, 3\]"):
        retrieval_metrics(similarity, [0, 1, 2], [0, 1, 2, 3], chunk_size=2)


@pytest.mark.parametrize(
    ("query_labels", "gallery_labels", "message"),
    [
        ([0, 1], [0, 1, 2], r"2 query_labels and 3 gallery_labels do not match the 3 x 3"),
        ([0, -1, 2], [0, 1, 2], r"query_labels\[1\] is -1"),
        ([0, 1, 2], [0, -2, 2], r"gallery_labels\[1\] = -2"),
        ([0.5, 1, 2], [0, 1, 2], r"query_labels must hold integer"),
    ],
)
def test_bad_labels_are_refused_by_name(query_labels, gallery_labels, message):
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(np.eye(3), query_labels, gallery_labels)


def test_gallery_variant_must_be_one_the_protocol_defines():
    with pytest.raises(ConfigError, match=r"gallery_variant 'all' .* 'university1652'"):
        retrieval_metrics(np.eye(2), [0, 1], [0, 1], gallery_variant="all")
    with pytest.raises(ConfigError, match=r"'cvusa' .*allowed: none"):
        retrieval_metrics(np.eye(2), [0, 1], [0, 1], "cvusa", gallery_variant="official")
    # The labels carry the variant (sample4geo: unqueried locations are -1); it is recorded.
    ok = retrieval_metrics(np.ones((2, 3)), [0, 1], [0, 1, -1], gallery_variant="sample4geo")
    assert ok["num_gallery_ranked"] == 2 and ok["gallery_variant"] == "sample4geo"


def test_gallery_wider_than_a_uint16_count(u1652_reference):
    # More than 65,535 columns: the per-row count needs a wider accumulator than uint16.
    rng = np.random.default_rng(4)
    gallery_labels = np.arange(70_000) % 1000
    query_labels = np.array([3, 999])
    similarity = rng.standard_normal((2, 70_000)).astype(np.float32)
    similarity[0, 3] = -10.0  # one true match of query 0 ranked behind > 65,535 items
    ours = retrieval_metrics(similarity, query_labels, gallery_labels)
    reference = u1652_reference(similarity, query_labels, gallery_labels)
    for name in ("R@1", "R@10", "R@1%", "AP", "AP_textbook"):
        assert ours[name] == pytest.approx(reference[name], abs=1e-9)
    single = np.arange(70_000)
    scores = np.linspace(1, 0, 70_000)[None, :].repeat(2, axis=0)
    result = retrieval_metrics(scores, [69_999, 0], single, ks=(1, 70_000))
    assert result["R@1"] == 50.0 and result["R@70000"] == 100.0  # last-ranked: r = 69,999
    assert result["AP_textbook"] == pytest.approx(100 * (1 + 1 / 70_000) / 2)
