"""Geo-localization: coordinates, map tiling, the gallery index, and localization of queries.

Submodules: `coords` (haversine, georeferencing), `gallery` (tile CSV), `tiling` (cut a map),
`index` (faiss index + manifest), `embed` (resumable sharded embedding), `embedders` (model
loading and identity), `localization` (localize: position, confidence, Dis@K), `figure` (PNG per query).
Names from the torch-dependent modules load on first use, so `import cvd.geo` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from cvd.earth import EARTH_RADIUS_M, haversine_m, weighted_mean_latlon
from cvd.geo.coords import Georeference
from cvd.geo.gallery import GalleryTile, read_tiles_csv, tiles_from_records, write_tiles_csv

_LAZY = {
    "GalleryIndex": "cvd.geo.gallery_index",
    "IndexParams": "cvd.geo.gallery_index",
    "ModelInfo": "cvd.geo.gallery_index",
    "choose_index_type": "cvd.geo.gallery_index",
    "QueryResult": "cvd.geo.localization",
    "estimate_position": "cvd.geo.localization",
    "localize": "cvd.geo.localization",
    "read_ground_truth": "cvd.geo.localization",
    "summarize": "cvd.geo.localization",
    "load_embedder": "cvd.geo.embedders",
    "cut_map": "cvd.geo.tiling",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cvd.geo' has no attribute {name!r}")


__all__ = [
    "EARTH_RADIUS_M",
    "GalleryTile",
    "Georeference",
    "haversine_m",
    "read_tiles_csv",
    "tiles_from_records",
    "weighted_mean_latlon",
    "write_tiles_csv",
    *_LAZY,
]
