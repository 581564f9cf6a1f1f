"""Retrieval metrics (R@K, R@1%, AP) by a named protocol, from a similarity matrix or embeddings.

Both entry points compute the ranks of the true matches once (:mod:`cvd.evaluation.ranks`) and
derive every figure from those ranks, so R@K, R@1% and both APs always agree with one ranking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cvd.evaluation.protocols import Protocol, get_protocol
from cvd.evaluation.ranks import (
    MatchRanks,
    TrueMatchIndex,
    as_labels,
    ranks_from_chunks,
    similarity_row_chunks,
)
from cvd.evaluation.similarity import as_embeddings, cosine_similarity_chunks, default_chunk_size

DEFAULT_KS = (1, 5, 10)

ArrayLike = torch.Tensor | np.ndarray


def metrics_from_ranks(
    ranks: MatchRanks, protocol: str | Protocol, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, Any]:
    """R@K, R@1%, University-1652 AP and textbook AP (all x100) from true-match ranks.

    Every average is over all queries, matched or not, as the University-1652 script divides
    by ``len(query_label)``: a query with no true match in the gallery scores 0.
    """
    rules = get_protocol(protocol)
    if ranks.ties != rules.ties:
        raise ValueError(
            f"ranks were computed with ties {ranks.ties!r} but protocol {rules.name!r} ranks ties "
            f"{rules.ties!r}: recompute the ranks with this protocol"
        )
    num_queries = ranks.num_queries
    if num_queries == 0:
        raise ValueError("no queries to evaluate: query_labels is empty")
    for k in ks:
        if int(k) != k or k < 1:
            raise ValueError(f"ks must be positive integers; got {k!r}")
    first = ranks.first()
    one_percent_k = rules.one_percent_k(ranks.num_gallery, ranks.num_ranked)

    result: dict[str, Any] = {}
    for k in ks:
        result[f"R@{int(k)}"] = _percent_below(first, int(k))
    result["R@1%"] = _percent_below(first, one_percent_k)
    result["R@1%_K"] = one_percent_k

    counts = ranks.counts
    query_of = np.repeat(np.arange(num_queries), counts)
    # i: 0-based position of each true match among its query's true matches.
    i = (np.arange(ranks.ranks.size) - ranks.offsets[:-1][query_of]).astype(np.float64)
    r = ranks.ranks.astype(np.float64)
    weight = 1.0 / counts[query_of].astype(np.float64)
    precision = (i + 1.0) / (r + 1.0)
    # University-1652 trapezoid: precision just before this match, 1 when it is ranked first.
    previous_precision = np.where(r > 0, i / np.maximum(r, 1.0), 1.0)
    result["AP"] = _sum_percent(weight * (previous_precision + precision) / 2.0, num_queries)
    result["AP_textbook"] = _sum_percent(weight * precision, num_queries)

    result.update(
        protocol=rules.name,
        ties=rules.ties,
        num_queries=num_queries,
        num_gallery=ranks.num_gallery,
        num_gallery_ranked=ranks.num_ranked,
        num_queries_without_match=int((counts == 0).sum()),
    )
    return result


def retrieval_metrics(
    similarity: ArrayLike,
    query_labels: ArrayLike | Iterable[int],
    gallery_labels: ArrayLike | Iterable[int],
    protocol: str | Protocol = "university1652",
    *,
    gallery_variant: str | None = None,
    flip_tta: bool = False,
    split: str | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of a full (Q, G) similarity matrix (torch or numpy) under ``protocol``.

    ``gallery_variant`` (e.g. ``"official"`` / ``"sample4geo"``), ``flip_tta`` and ``split`` do
    not change the computation: the labels already encode the variant (junk = -1) and TTA
    happened at embedding time. They are recorded so every number names how it was made.
    Rows are ranked ``chunk_size`` at a time to bound the temporaries.
    """
    rules = get_protocol(protocol)
    rules.check_gallery_variant(gallery_variant)
    scores = torch.as_tensor(similarity).detach()
    if scores.ndim != 2:
        raise ValueError(f"similarity must be 2-D (queries, gallery); got shape {tuple(scores.shape)}")
    index = _true_match_index(query_labels, gallery_labels, scores.shape)
    rows = chunk_size or default_chunk_size(scores.shape[1])
    ranks = ranks_from_chunks(similarity_row_chunks(scores, rows), index, rules)
    return _finish(ranks, rules, ks, gallery_variant, flip_tta, split, metadata)


def evaluate_embeddings(
    query_emb: ArrayLike,
    query_labels: ArrayLike | Iterable[int],
    gallery_emb: ArrayLike,
    gallery_labels: ArrayLike | Iterable[int],
    protocol: str | Protocol = "university1652",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    *,
    gallery_variant: str | None = None,
    flip_tta: bool = False,
    split: str | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of cosine retrieval from embeddings, never holding more than one chunk of scores.

    Same output as :func:`retrieval_metrics`. ``chunk_size`` query rows are scored at a time
    (default: about 16M scores per chunk); ``device`` is where scores are computed (default:
    the gallery embeddings' device).
    """
    rules = get_protocol(protocol)
    rules.check_gallery_variant(gallery_variant)
    queries = as_embeddings(query_emb, "query_emb")
    gallery = as_embeddings(gallery_emb, "gallery_emb")
    shape = (queries.shape[0], gallery.shape[0])
    index = _true_match_index(query_labels, gallery_labels, shape)
    # Ranks within a query row do not depend on the query's norm: only the gallery is normalised.
    chunks = cosine_similarity_chunks(queries, gallery, chunk_size, device, normalise_queries=False)
    # Scores are still checked: un-normalised queries of extreme norm could overflow to inf.
    ranks = ranks_from_chunks(chunks, index, rules)
    return _finish(ranks, rules, ks, gallery_variant, flip_tta, split, metadata)


def _true_match_index(
    query_labels: ArrayLike | Iterable[int],
    gallery_labels: ArrayLike | Iterable[int],
    shape: tuple[int, int],
) -> TrueMatchIndex:
    """Validated labels -> index of true matches.

    The gallery variant is not checked against the labels: a query subset (``max_queries``,
    a shard) legitimately leaves locations without a query that the variant does not junk.
    """
    queries = as_labels(query_labels, "query_labels")
    gallery = as_labels(gallery_labels, "gallery_labels")
    if (queries.size, gallery.size) != tuple(shape):
        raise ValueError(
            f"{queries.size} query_labels and {gallery.size} gallery_labels do not match "
            f"the {shape[0]} x {shape[1]} queries x gallery"
        )
    return TrueMatchIndex(queries, gallery)


def _finish(
    ranks: MatchRanks,
    rules: Protocol,
    ks: Sequence[int],
    gallery_variant: str | None,
    flip_tta: bool,
    split: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    result = metrics_from_ranks(ranks, rules, ks)
    result.update(gallery_variant=gallery_variant, flip_tta=bool(flip_tta), split=split)
    if metadata:
        result["metadata"] = dict(metadata)
    return result


def _percent_below(first: np.ndarray, k: int) -> float:
    return float(np.count_nonzero(first < k)) / first.size * 100.0


def _sum_percent(per_match: np.ndarray, num_queries: int) -> float:
    return float(per_match.sum()) / num_queries * 100.0


__all__ = ["DEFAULT_KS", "evaluate_embeddings", "metrics_from_ranks", "retrieval_metrics"]
