"""Does the reconstruction constraint work? Held-out errors of the cross reconstructions (eq. 4)
against predictors that need no content, and how much the output moves when the content does.

A decoder that ignores its content input (the failure of the paper's module as first
implemented here: it rebuilt the same image whatever it was given) shows as a matched error no
better than the mean predictor and a content sensitivity of 0.
"""

from __future__ import annotations

from typing import Any

import torch

from cvd.analysis.factors import Factors
from cvd.models.cvd import CVD
from cvd.models.model import reconstruction_target


def matched_rows(query: Factors, satellite: Factors) -> tuple[torch.Tensor, torch.Tensor]:
    """(satellite row of each query's location, one query row per satellite's location).

    Locations present in only one view are left out (-1 is never returned: rows without a
    partner are dropped by the caller through ``query_keep`` / ``satellite_keep``)."""
    satellite_of = {record.label: row for row, record in enumerate(satellite.records)}
    query_of: dict[int, int] = {}
    for row, record in enumerate(query.records):
        query_of.setdefault(record.label, row)
    sat_rows = torch.tensor([satellite_of.get(r.label, -1) for r in query.records])
    query_rows = torch.tensor([query_of.get(r.label, -1) for r in satellite.records])
    return sat_rows, query_rows


def other_location(labels: list[int], shift: int = 1) -> torch.Tensor:
    """For each row, a row of another location: the same position in the sorted list of locations
    moved by ``shift`` (deterministic, and never the row's own location when there are two or more)."""
    locations = sorted(set(labels))
    if len(locations) < 2:
        raise ValueError("the swap test needs images of at least two locations")
    first_row: dict[int, int] = {}
    for row, label in enumerate(labels):
        first_row.setdefault(label, row)
    moved = {loc: first_row[locations[(i + shift) % len(locations)]] for i, loc in enumerate(locations)}
    return torch.tensor([moved[label] for label in labels])


@torch.no_grad()
def _decode(
    cvd: CVD, content: torch.Tensor, viewpoint: torch.Tensor, branch: str, size: tuple[int, int]
) -> torch.Tensor:
    chunks = [
        cvd.reconstruct(content[i : i + 64], viewpoint[i : i + 64], branch, size).float()
        for i in range(0, len(content), 64)
    ]
    return torch.cat(chunks)


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean())


def branch_report(cvd: CVD, own: Factors, other_content: torch.Tensor) -> dict[str, Any]:
    """Errors of D^branch(other view's content, own viewpoint) on ``own``'s held-out images.

    ``other_content`` is row-aligned with ``own``: the other view's content of the same location.
    """
    branch = "satellite" if own.view == "satellite" else "query"
    target = reconstruction_target(cvd, own.images, {"features": own.features}, branch).float()
    size = tuple(target.shape[-2:])
    labels = [record.label for record in own.records]
    swap = other_location(labels)
    matched = _decode(cvd, other_content, own.viewpoint, branch, size)
    swapped_content = _decode(cvd, other_content[swap], own.viewpoint, branch, size)
    swapped_viewpoint = _decode(cvd, other_content, own.viewpoint[swap], branch, size)
    zero_content = _decode(cvd, torch.zeros_like(other_content), own.viewpoint, branch, size)
    mean_prediction = target.mean(0, keepdim=True).expand_as(target)
    # the per-image mean colour (image target) / channel means (feature map): no layout at all
    spatial_mean = target.mean(dim=(2, 3), keepdim=True).expand_as(target) if target.ndim == 4 else None
    spread = _mse(matched, matched.mean(0, keepdim=True))
    mean_error = _mse(mean_prediction, target)
    return {
        "target": cvd.reconstruct_kind,
        "images": len(labels),
        "mse_matched": _mse(matched, target),
        "mse_content_of_another_location": _mse(swapped_content, target),
        "mse_viewpoint_of_another_image": _mse(swapped_viewpoint, target),
        "mse_zero_content": _mse(zero_content, target),
        "mse_mean_predictor": mean_error,
        "mse_per_image_mean_predictor": None if spatial_mean is None else _mse(spatial_mean, target),
        "relative_mse_matched": _mse(matched, target) / mean_error if mean_error > 0 else float("nan"),
        # 0: the output does not depend on the content at all; 2: as different as two unrelated outputs
        "content_sensitivity": _mse(matched, swapped_content) / spread if spread > 0 else 0.0,
        "viewpoint_sensitivity": _mse(matched, swapped_viewpoint) / spread if spread > 0 else 0.0,
    }


def reconstruction_report(cvd: CVD, query: Factors, satellite: Factors) -> dict[str, Any]:
    """:func:`branch_report` for both decoders, D^q (query rebuilt from satellite content) and D^s."""
    sat_rows, query_rows = matched_rows(query, satellite)
    keep_query = torch.nonzero(sat_rows >= 0).flatten()
    keep_satellite = torch.nonzero(query_rows >= 0).flatten()
    own_query = query.subset(keep_query)
    own_satellite = satellite.subset(keep_satellite)
    return {
        "query": branch_report(cvd, own_query, satellite.content[sat_rows[keep_query]]),
        "satellite": branch_report(cvd, own_satellite, query.content[query_rows[keep_satellite]]),
    }
