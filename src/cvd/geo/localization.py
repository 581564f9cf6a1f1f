"""Localize query images against a gallery index: top-k tiles, a position, a confidence, errors.

Position estimate. The search returns a pool of the best `max(k, POOL_SIZE)` tiles. Scores
become a posterior over the pool with a softmax at temperature tau = 0.05, the InfoNCE
temperature the models are trained with (paper section 4.1), so p_i is the model's own belief
that tile i is the match. The tiles that *agree* with the top-1 are those whose centres lie
within `agree_radius_m` of the top-1 centre (by default 1.5x the gallery's median tile spacing:
the top-1's direct and diagonal neighbours on a regular grid, never a look-alike across town).
If any other tile agrees, the estimate is the p-weighted mean of the agreeing centres (on the
sphere); otherwise it is the top-1 centre.

Confidence = the posterior mass of the agreeing tiles, sum of p_i over them, in (0, 1]. Near 1:
the model's belief is concentrated around the estimate; near 1/POOL_SIZE: the top-1 barely beats
unrelated places, so the position should not be trusted. It is a ranking signal for
operators, not a calibrated probability of being within some distance.

Metrics with ground truth, as Game4Loc (Ji et al., AAAI 2025; GTA-UAV repository,
game4loc/evaluate/gta.py and visloc.py) defines them, with haversine distances (Game4Loc uses
planar distances on GTA-UAV and geodesic ones on UAV-VisLoc; at gallery scales the difference
is below 0.6 %):
- Dis@K = mean over queries of the mean distance from the true position to the centres of the
  top-K tiles (K = 1, 3, 5), in metres;
- SDM@K = mean over queries of sum_i (K - i + 1) exp(-s d_i) / sum_i (K - i + 1), i = 1..K,
  s = 0.001 per metre;
- accuracy within t metres of the top-1 centre (Game4Loc's threshold curve) and of our estimate.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from cvd.earth import haversine_m, weighted_mean_latlon
from cvd.errors import CVDError, DatasetLayoutError
from cvd.geo.embedders import Embedder
from cvd.geo.field_images import MIN_SIDE_PX, read_rgb
from cvd.geo.gallery import open_csv_rows, parse_position, raise_line_errors
from cvd.geo.gallery_index import GalleryIndex

POOL_SIZE = 10
TEMPERATURE = 0.05
AGREE_SPACING_FACTOR = 1.5
DIS_KS = (1, 3, 5)
SDM_SCALE_PER_M = 0.001
THRESHOLDS_M = (25.0, 50.0, 100.0, 250.0)


@dataclass
class Estimate:
    lat: float
    lon: float
    confidence: float
    method: str  # "top1" or "weighted"
    n_agree: int


def softmax(scores: NDArray, temperature: float = TEMPERATURE) -> NDArray[np.float64]:
    """Posterior over candidates from cosine scores; -inf scores (padding) get zero mass."""
    logits = np.asarray(scores, dtype=np.float64) / temperature
    logits = logits - np.max(logits)
    weights = np.exp(logits)
    return weights / weights.sum()


def estimate_position(
    scores: NDArray, lat: NDArray, lon: NDArray, agree_radius_m: float, temperature: float = TEMPERATURE
) -> Estimate:
    """Position and confidence from a best-first candidate pool (see module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    keep = np.isfinite(scores)
    scores, lat, lon = scores[keep], np.asarray(lat)[keep], np.asarray(lon)[keep]
    posterior = softmax(scores, temperature)
    radius = agree_radius_m if math.isfinite(agree_radius_m) else 0.0
    agree = haversine_m(lat[0], lon[0], lat, lon) <= radius
    agree[0] = True
    confidence = float(posterior[agree].sum())
    if agree.sum() == 1:
        return Estimate(float(lat[0]), float(lon[0]), confidence, "top1", 1)
    est_lat, est_lon = weighted_mean_latlon(lat[agree], lon[agree], posterior[agree])
    return Estimate(est_lat, est_lon, confidence, "weighted", int(agree.sum()))


def default_agree_radius_m(index: GalleryIndex) -> float:
    """1.5x the gallery's median tile spacing (0 when unknown: top-1 only)."""
    spacing = index.manifest.get("tiles", {}).get("median_spacing_m", math.nan)
    return AGREE_SPACING_FACTOR * spacing if spacing and math.isfinite(spacing) else 0.0


@dataclass
class QueryResult:
    """One query's answer, or its error; `pool` holds (row, score) best first."""

    query: str
    error: str | None = None
    note: str | None = None
    estimate: Estimate | None = None
    pool_rows: list[int] = field(default_factory=list)
    pool_scores: list[float] = field(default_factory=list)
    gt: tuple[float, float] | None = None

    def pool_distances_m(self, index: GalleryIndex) -> NDArray[np.float64]:
        """Distance from the true position to each pool tile centre (needs `gt`)."""
        rows = np.asarray(self.pool_rows, dtype=np.int64)
        return haversine_m(self.gt[0], self.gt[1], index.lat[rows], index.lon[rows])

    def to_json(self, index: GalleryIndex, k: int) -> dict[str, Any]:
        """The JSON-lines record `cvd localize` prints."""
        if self.error is not None:
            return {"query": self.query, "ok": False, "error": self.error}
        top = []
        for rank, (row, score) in enumerate(zip(self.pool_rows[:k], self.pool_scores[:k]), start=1):
            tile = index.tiles[row]
            entry = {"rank": rank, "id": tile.id, "path": str(tile.path), "lat": tile.lat, "lon": tile.lon}
            entry["score"] = round(float(score), 6)
            top.append(entry)
        record: dict[str, Any] = {
            "query": self.query,
            "ok": True,
            "lat": self.estimate.lat,
            "lon": self.estimate.lon,
            "confidence": round(self.estimate.confidence, 6),
            "method": self.estimate.method,
            "n_agree": self.estimate.n_agree,
            "top_k": top,
        }
        if self.note:
            record["note"] = self.note
        if self.gt is not None:
            distances = self.pool_distances_m(index)
            record["gt_lat"], record["gt_lon"] = self.gt
            record["error_m"] = round(
                float(haversine_m(self.gt[0], self.gt[1], self.estimate.lat, self.estimate.lon)), 3
            )
            record["top1_error_m"] = round(float(distances[0]), 3)
        return record


def _embed_batch(embedder: Embedder, tensors: list[torch.Tensor]) -> NDArray[np.float32]:
    return embedder.embed(torch.stack(tensors))


def localize(
    embedder: Embedder,
    index: GalleryIndex,
    images: Sequence[str | os.PathLike],
    k: int = 5,
    batch_size: int = 16,
    agree_radius_m: float | None = None,
    temperature: float = TEMPERATURE,
    min_side: int = MIN_SIDE_PX,
    ground_truth: dict[str, tuple[float, float]] | None = None,
) -> list[QueryResult]:
    """Answer every query; a query that cannot be read gets an error and the others still run."""
    radius = default_agree_radius_m(index) if agree_radius_m is None else agree_radius_m
    pool = min(max(k, POOL_SIZE), len(index.tiles))
    results = [QueryResult(str(path)) for path in images]
    pending: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        vectors = _embed_batch(embedder, [tensor for _, tensor in pending])
        scores, rows = index.search(vectors, pool)
        for (position, _), row_scores, row_ids in zip(pending, scores, rows):
            result = results[position]
            valid = row_ids >= 0
            result.pool_rows = row_ids[valid].tolist()
            result.pool_scores = row_scores[valid].tolist()
            result.estimate = estimate_position(
                row_scores[valid], index.lat[row_ids[valid]], index.lon[row_ids[valid]], radius, temperature
            )
        pending.clear()

    for position, path in enumerate(images):
        result = results[position]
        if ground_truth is not None:
            result.gt = match_ground_truth(ground_truth, Path(path))
        try:
            image, result.note = read_rgb(path, min_side=min_side)
            pending.append((position, embedder.transform(image)))
        except CVDError as error:
            result.error = str(error)
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    return results


def read_ground_truth(csv_path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """True positions of queries from a CSV with `path` (or `image`) and `lat`, `lon` columns.

    Keys are the resolved path and, when unique, the bare file name, so the CSV may list either.
    Every bad line is reported by number in one error.
    """
    csv_path = Path(csv_path)
    header, rows = open_csv_rows(csv_path, [("path", "lat", "lon"), ("image", "lat", "lon")])
    key_column = "path" if "path" in header else "image"
    positions: dict[str, tuple[float, float]] = {}
    names: dict[str, list[tuple[float, float]]] = {}
    errors = []
    for number, row in rows:
        try:
            text = (row.get(key_column) or "").strip()
            if not text:
                raise ValueError(f"missing value in column '{key_column}'")
            lat, lon = parse_position(row, has_centre=True, has_bounds=False)[:2]
        except ValueError as error:
            errors.append(f"line {number}: {error}")
            continue
        path = Path(text) if Path(text).is_absolute() else csv_path.parent / text
        positions[str(path.resolve())] = (lat, lon)
        names.setdefault(Path(text).name, []).append((lat, lon))
    raise_line_errors(csv_path, errors)
    for name, found in names.items():
        if len(found) == 1:
            positions.setdefault(f"name:{name}", found[0])
    return positions


def match_ground_truth(
    ground_truth: dict[str, tuple[float, float]], path: Path
) -> tuple[float, float] | None:
    """A query's true position by resolved path, else by unique file name."""
    return ground_truth.get(str(Path(path).resolve())) or ground_truth.get(f"name:{Path(path).name}")


def dis_at_k(distances: Sequence[NDArray], ks: Sequence[int] = DIS_KS) -> dict[str, float]:
    """Game4Loc's Dis@K: mean over queries of the mean distance to the top-K tile centres."""
    return {f"Dis@{k}": float(np.mean([d[:k].mean() for d in distances])) for k in ks}


def sdm_at_k(
    distances: Sequence[NDArray], ks: Sequence[int] = DIS_KS, s: float = SDM_SCALE_PER_M
) -> dict[str, float]:
    """Game4Loc's SDM@K: rank-weighted exp(-s d) of the top-K tiles, averaged over queries."""
    out = {}
    for k in ks:
        values = []
        for d in distances:
            top = d[:k]
            weights = np.arange(k, k - len(top), -1, dtype=np.float64)  # K - i for 0-based rank i
            values.append(float((weights * np.exp(-s * top)).sum() / weights.sum()))
        out[f"SDM@{k}"] = float(np.mean(values))
    return out


def summarize(
    results: Sequence[QueryResult], index: GalleryIndex, thresholds_m: Sequence[float] = THRESHOLDS_M
) -> dict[str, Any]:
    """Dis@K, SDM@K and localization-error summary over the queries with ground truth."""
    answered = [r for r in results if r.error is None]
    judged = [r for r in answered if r.gt is not None]
    summary: dict[str, Any] = {
        "n_queries": len(results),
        "n_failed": len(results) - len(answered),
        "n_with_gt": len(judged),
        "n_without_gt": len(answered) - len(judged),
        "distance": "haversine, mean Earth radius 6371008.8 m",
    }
    if not judged:
        return summary
    distances = [r.pool_distances_m(index) for r in judged]
    errors = np.array([haversine_m(r.gt[0], r.gt[1], r.estimate.lat, r.estimate.lon) for r in judged])
    top1 = np.array([d[0] for d in distances])
    summary.update(dis_at_k(distances))
    summary.update(sdm_at_k(distances))
    summary["mean_error_m"] = float(errors.mean())
    summary["median_error_m"] = float(np.median(errors))
    summary["top1_mean_error_m"] = float(top1.mean())
    summary["top1_within_m"] = {f"{t:g}": float(np.mean(top1 < t)) for t in thresholds_m}
    summary["estimate_within_m"] = {f"{t:g}": float(np.mean(errors < t)) for t in thresholds_m}
    return summary


def check_ground_truth_coverage(results: Sequence[QueryResult], gt_path: Path) -> None:
    """Fail when a ground-truth CSV matches none of the queries (almost surely a wrong file)."""
    if results and all(r.gt is None for r in results):
        raise DatasetLayoutError(
            f"{gt_path}: none of the {len(results)} query image(s) is listed "
            "(matched by path, then by file name)"
        )
