"""Retrieval evaluation by the exact rules of each benchmark's published numbers.

``retrieval_metrics`` (a similarity matrix) and ``evaluate_embeddings`` (embeddings, scored in
chunks) return R@1/5/10, R@1%, University-1652 AP and textbook AP (x100) with the protocol,
gallery variant, TTA setting and sizes that produced them. See ``docs/evaluation.md``.
"""

from cvd.evaluation.extraction import embed_dataset
from cvd.evaluation.metrics import DEFAULT_KS, evaluate_embeddings, metrics_from_ranks, retrieval_metrics
from cvd.evaluation.protocols import (
    JUNK_LABEL,
    PROTOCOLS,
    Protocol,
    get_protocol,
    mark_unqueried_as_junk,
)
from cvd.evaluation.ranks import MatchRanks
from cvd.evaluation.results import aggregate_altitudes, format_altitude_table, summary_line, write_json
from cvd.evaluation.similarity import cosine_similarity_chunks

__all__ = [
    "DEFAULT_KS",
    "JUNK_LABEL",
    "PROTOCOLS",
    "MatchRanks",
    "Protocol",
    "aggregate_altitudes",
    "cosine_similarity_chunks",
    "embed_dataset",
    "evaluate_embeddings",
    "format_altitude_table",
    "get_protocol",
    "mark_unqueried_as_junk",
    "metrics_from_ranks",
    "retrieval_metrics",
    "summary_line",
    "write_json",
]
