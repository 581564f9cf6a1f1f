"""The plain records every benchmark loader produces and every consumer (datasets, samplers,
evaluation, localization) reads.

Records hold paths and labels only, never pixels: a loader can list 90k images in well under a
second, and the records can be pickled to DataLoader workers cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JUNK_LABEL = -1
"""Evaluation label of gallery items that must be removed from the ranking (see protocols)."""

VIEWS = ("drone", "street", "satellite")


@dataclass(frozen=True)
class ImageRecord:
    """One image of an evaluation list (a query or a gallery item).

    `label` is the benchmark's location id as an integer (University-1652 folder name, CVUSA
    file number, ...) so that query and gallery labels compare directly; -1 marks junk.
    """

    path: Path
    label: int
    location: str
    view: str
    gps: tuple[float, float] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class PairRecord:
    """One training pair: a query view (drone or street) and the satellite view of its location.

    `label` is a contiguous index 0..n_locations-1 (what classification heads and samplers need);
    `location` keeps the id as written on disk.
    """

    query: Path
    satellite: Path
    label: int
    location: str
    gps: tuple[float, float] | None = None


@dataclass(frozen=True)
class RetrievalSplit:
    """One evaluation direction: queries ranked against a gallery under a named protocol."""

    name: str
    queries: list[ImageRecord]
    gallery: list[ImageRecord]
    protocol: str
    gallery_variant: str | None = None

    @property
    def query_labels(self) -> list[int]:
        """Labels in query order, as the evaluation protocols take them."""
        return [record.label for record in self.queries]

    @property
    def gallery_labels(self) -> list[int]:
        """Labels in gallery order (-1 = junk)."""
        return [record.label for record in self.gallery]


def contiguous_labels(locations: list[str]) -> dict[str, int]:
    """Map location ids to 0..n-1 in sorted order, so training labels do not depend on listing order."""
    return {location: index for index, location in enumerate(sorted(set(locations)))}
