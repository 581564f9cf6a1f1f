"""A validation split of the training locations, for choosing settings without the test set.

``data.val_fraction`` holds out that share of the training locations (drawn with
``data.val_seed``, independent of the training seed, so every seed and every variant is judged on
the same buildings). Their pairs leave the training set; their query images and satellite images
become retrieval splits ("val: drone->satellite", ...) evaluated with the benchmark's protocol
next to the test splits.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cvd.data import ImageRecord, PairRecord, RetrievalSplit
from cvd.errors import ConfigError

VAL_PREFIX = "val: "
_STREET_PROTOCOLS = ("cvusa", "cvact")


def hold_out(
    pairs: list[PairRecord], fraction: float, seed: int
) -> tuple[list[PairRecord], list[PairRecord]]:
    """(training pairs relabelled 0..n-1, held-out pairs) with ``fraction`` of the locations held out."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"data.val_fraction: must lie in [0, 1), got {fraction!r}")
    locations = sorted({pair.location for pair in pairs})
    count = round(fraction * len(locations))
    if fraction > 0 and not 1 <= count < len(locations):
        raise ConfigError(
            f"data.val_fraction = {fraction} of {len(locations)} training locations holds out {count}: "
            "need at least one to validate on and one to train on"
        )
    rng = np.random.default_rng(seed)
    held = {locations[i] for i in rng.permutation(len(locations))[:count]}
    kept = sorted({location for location in locations if location not in held})
    labels = {location: index for index, location in enumerate(kept)}
    train = [dataclasses.replace(p, label=labels[p.location]) for p in pairs if p.location not in held]
    return train, [pair for pair in pairs if pair.location in held]


def validation_splits(pairs: list[PairRecord], query_view: str, protocol: str) -> list[RetrievalSplit]:
    """Query -> satellite (and satellite -> query where the benchmark ranks both ways) over ``pairs``."""
    if not pairs:
        return []
    queries = [ImageRecord(p.query, p.label, p.location, query_view, p.gps) for p in pairs]
    first = {}
    for pair in pairs:
        first.setdefault(pair.label, pair)
    satellites = [
        ImageRecord(p.satellite, p.label, p.location, "satellite", p.gps) for _, p in sorted(first.items())
    ]
    splits = [RetrievalSplit(f"{VAL_PREFIX}{query_view}->satellite", queries, satellites, protocol, None)]
    if protocol not in _STREET_PROTOCOLS:
        splits.append(
            RetrievalSplit(f"{VAL_PREFIX}satellite->{query_view}", satellites, queries, protocol, None)
        )
    return splits


def query_view_of(benchmark: object) -> str:
    """The benchmark's query view: its own ``query_view``, else street for CVUSA/CVACT, else drone."""
    view = getattr(benchmark, "query_view", None)
    if view:
        return str(view)
    return "street" if getattr(benchmark, "protocol", "") in _STREET_PROTOCOLS else "drone"
