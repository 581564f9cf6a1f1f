"""Named evaluation protocols: the exact rules behind each benchmark's published numbers.

Published cross-view numbers come from a few specific scripts whose definitions differ from
textbook ones (tie handling, the meaning of R@1%). A number is only comparable with a table when
it was computed by the same rules, so each rule set is a named object and every result records
the one it used. Definitions: ``shared/reference/benchmarks.md`` (section Metrics) and
``docs/evaluation.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
import torch

from cvd.data.records import JUNK_LABEL  # gallery items removed from every ranking
from cvd.errors import ConfigError

TiePolicy = Literal["against_query", "favour_query"]
OnePercentRule = Literal["cmc_round", "floor_div_100"]


@dataclass(frozen=True)
class Protocol:
    """One benchmark's ranking and metric rules.

    ``ties``: ``"against_query"`` ranks a true match after every non-junk gallery item scoring
    greater *or equal* (a collapsed model that scores everything the same gets the worst rank,
    never the best); ``"favour_query"`` counts only items scoring strictly greater (the
    Sample4Geo/TransGeo/GeoDTR CVUSA and CVACT scripts).
    ``one_percent``: ``"cmc_round"`` is University-1652's ``CMC[round(0.01 * |G|)]`` with ``|G|``
    every gallery item passed in (junk included, as the script's ``len(gallery_label)``);
    ``"floor_div_100"`` is ``rank < floor(|R| / 100)`` with ``|R|`` the ranked (non-junk)
    references.
    """

    name: str
    description: str
    ties: TiePolicy
    one_percent: OnePercentRule
    gallery_variants: tuple[str, ...] = ()
    per_altitude: bool = False
    source: str = ""

    def one_percent_k(self, num_gallery: int, num_ranked: int) -> int:
        """The K of R@1%: a query is a hit when the rank of its first true match is below K."""
        if self.one_percent == "cmc_round":
            # Python's round (half to even) of the float product, exactly as the script computes
            # it: 951 -> round(9.51) = 10 -> K = 11.
            return round(num_gallery * 0.01) + 1
        return num_ranked // 100

    def check_gallery_variant(self, gallery_variant: str | None) -> None:
        """Refuse a variant this protocol does not define, so a result never names a wrong one."""
        if gallery_variant is None:
            return
        if gallery_variant not in self.gallery_variants:
            allowed = ", ".join(self.gallery_variants) if self.gallery_variants else "none"
            raise ConfigError(
                f"gallery_variant {gallery_variant!r} is not defined for evaluation protocol "
                f"{self.name!r} (allowed: {allowed})"
            )


_U1652_RULES = (
    "AP by the trapezoid rule of University-1652's evaluate script "
    "(sum over true matches of (1/n) * (p'_i + p_i) / 2, p_i = i / (r_i + 1), "
    "p'_i = (i - 1) / r_i, p'_i = 1 when r_i = 0); junk (label -1) removed before ranking; "
    "R@K = first true match within the top K; R@1% = CMC[round(0.01 * |G|)]; "
    "ties counted against the query."
)

PROTOCOLS: Mapping[str, Protocol] = MappingProxyType(
    {
        "university1652": Protocol(
            name="university1652",
            description=_U1652_RULES
            + " Gallery variants for drone->satellite: 'official' ranks all 951 satellites, "
            "the 250 distractors included; 'sample4geo' labels buildings without a query -1 "
            "(junk), so 701 are ranked.",
            ties="against_query",
            one_percent="cmc_round",
            gallery_variants=("official", "sample4geo"),
            source="University-1652 evaluate_gpu.py (also LPN, MCCG, FSRA, Sample4Geo, Game4Loc)",
        ),
        "sues200": Protocol(
            name="sues200",
            description=_U1652_RULES + " Evaluated per altitude (150, 200, 250, 300 m): "
            "each altitude split is one evaluation; combine them with aggregate_altitudes().",
            ties="against_query",
            one_percent="cmc_round",
            gallery_variants=("official", "sample4geo"),
            per_altitude=True,
            source="SUES-200 benchmark (University-1652 rules, per altitude)",
        ),
        "cvusa": Protocol(
            name="cvusa",
            description="R@K: hit when fewer than K references score strictly greater than "
            "the true one (ties in the query's favour); R@1% with K = floor(|R| / 100) "
            "(88 for 8,884 references). AP (trapezoid rule on the same ranks) is reported for "
            "completeness; the peers' CVUSA tables do not use it.",
            ties="favour_query",
            one_percent="floor_div_100",
            source="Sample4Geo evaluate/cvusa_and_cvact.py (also TransGeo, GeoDTR)",
        ),
        "cvact": Protocol(
            name="cvact",
            description="Same rules as cvusa: R@K counts references scoring strictly greater "
            "than the true one (ties in the query's favour); R@1% with K = floor(|R| / 100).",
            ties="favour_query",
            one_percent="floor_div_100",
            source="Sample4Geo evaluate/cvusa_and_cvact.py (also TransGeo, GeoDTR)",
        ),
    }
)


def get_protocol(protocol: str | Protocol) -> Protocol:
    """Resolve a protocol name (as written in configs and dataset splits) to its rules."""
    if isinstance(protocol, Protocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        known = ", ".join(sorted(PROTOCOLS))
        raise ConfigError(f"unknown evaluation protocol {protocol!r} (known: {known})") from None


def mark_unqueried_as_junk(
    query_labels: torch.Tensor | np.ndarray, gallery_labels: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """Gallery labels of the ``sample4geo`` variant: locations no query asks for become junk.

    Sample4Geo and Game4Loc rank drone->satellite against the 701 buildings that have queries,
    not all 951; data loaders that keep the official labels can derive the variant here.
    """
    query = torch.as_tensor(query_labels).to(torch.int64).reshape(-1)
    gallery = torch.as_tensor(gallery_labels).to(torch.int64).reshape(-1).clone()
    gallery[~torch.isin(gallery, query)] = JUNK_LABEL
    return gallery


__all__ = [
    "JUNK_LABEL",
    "PROTOCOLS",
    "OnePercentRule",
    "Protocol",
    "TiePolicy",
    "get_protocol",
    "mark_unqueried_as_junk",
]
