"""University-1652 (drone <-> satellite, also street <-> satellite), with both gallery protocols."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

from cvd.data.layout import LayoutCheck
from cvd.data.records import JUNK_LABEL, ImageRecord, PairRecord, RetrievalSplit, contiguous_labels
from cvd.data.registry import register_dataset
from cvd.errors import OptionError
from cvd.schema import Option

logger = logging.getLogger("cvd.data")

GALLERY_VARIANTS = ("official", "sample4geo")

EXPECTED_TREE = """\
University-Release/                       <- point the root here
  train/satellite/<id>/<id>.jpg           one satellite image per building (701 buildings)
  train/drone/<id>/image-NN.jpeg          ~54 drone images per building
  train/street/<id>/*.jpg                 street views (query_view="street")
  test/query_drone/<id>/image-NN.jpeg     701 buildings
  test/gallery_satellite/<id>/<id>.jpg    951 = 701 buildings + 250 distractors
  test/query_satellite/<id>/<id>.jpg      701 buildings
  test/gallery_drone/<id>/image-NN.jpeg   951 buildings (with the distractors)
  test/query_street/<id>/*.jpg, test/gallery_street/<id>/*.jpg   (query_view="street")
<id> is the zero-padded 4-digit building number, e.g. 0736."""


QUERY_VIEWS = ("drone", "street")


@register_dataset
class University1652:
    """The University-1652 benchmark at `root` (the `University-Release` folder).

    `query_view` picks the query branch's view: "drone" (the paper's tables) or "street".
    Evaluation labels are the building numbers; `eval_splits` offers both gallery protocols:
    `official` ranks all 951 satellite images (the 250 distractor buildings included), and
    `sample4geo` labels gallery items whose building has no query -1 (junk), so drone->satellite
    ranks against 701. Training uses the buildings that have both views; with `strict=True` a
    building folder present in one view and not the other is a layout error, else it is skipped
    with a warning (as the peers' loaders do).
    """

    name = "university1652"
    protocol = "university1652"
    option_declarations: ClassVar[dict[str, Option]] = {
        "query_view": Option("str", "the query view", choices=QUERY_VIEWS),
    }

    def __init__(self, root: str | os.PathLike, query_view: str = "drone", strict: bool = False) -> None:
        if query_view not in QUERY_VIEWS:
            raise OptionError("query_view", query_view, "must be 'drone' or 'street'")
        self.root = Path(root).expanduser()
        self.query_view = query_view
        self.strict = strict
        check = LayoutCheck("University-1652", self.root, EXPECTED_TREE)
        folders = {
            "train_satellite": "train/satellite",
            "train_query": f"train/{query_view}",
            "query": f"test/query_{query_view}",
            "gallery_satellite": "test/gallery_satellite",
            "query_satellite": "test/query_satellite",
            "gallery": f"test/gallery_{query_view}",
        }
        self._folders = folders
        directories = {key: check.require_dir(relative) for key, relative in folders.items()}
        self._images: dict[str, dict[str, list[Path]]] = {}
        for key, directory in directories.items():
            classes = check.class_folders(directory)
            check.numeric_names(directory, classes)
            self._images[key] = {location: check.images(path) for location, path in classes.items()}
        self._check_training_views(check, directories)
        check.raise_if_problems()

    def _check_training_views(self, check: LayoutCheck, directories: dict[str, Path]) -> None:
        """Buildings present in one training view and not the other."""
        satellite, query = self._images["train_satellite"], self._images["train_query"]
        only_query = sorted(set(query) - set(satellite))
        only_satellite = sorted(set(satellite) - set(query))
        counterparts = [directories["train_satellite"] / loc for loc in only_query] + [
            directories["train_query"] / loc for loc in only_satellite
        ]
        if not counterparts:
            return
        if self.strict:
            check.add_missing(counterparts)
        else:
            logger.warning(
                "University-1652: %d training buildings lack one view and are skipped (first: %s)",
                len(counterparts),
                counterparts[0],
            )

    def train_pairs(self) -> list[PairRecord]:
        """One pair per query image with its building's satellite image (Sample4Geo's pairing)."""
        satellite, query = self._images["train_satellite"], self._images["train_query"]
        locations = sorted(set(satellite) & set(query), key=int)
        labels = contiguous_labels(locations)
        return [
            PairRecord(query=image, satellite=satellite[loc][0], label=labels[loc], location=loc)
            for loc in locations
            for image in query[loc]
        ]

    def eval_splits(self, gallery_variant: str | Sequence[str] = "official") -> list[RetrievalSplit]:
        """query->satellite and satellite->query for each requested gallery variant."""
        variants = [gallery_variant] if isinstance(gallery_variant, str) else list(gallery_variant)
        for variant in variants:
            if variant not in GALLERY_VARIANTS:
                raise ValueError(f"gallery_variant must be one of {GALLERY_VARIANTS}, got {variant!r}")
        view = self.query_view
        splits = []
        for variant in variants:
            splits.append(
                self._split(f"{view}->satellite", "query", view, "gallery_satellite", "satellite", variant)
            )
            splits.append(
                self._split(f"satellite->{view}", "query_satellite", "satellite", "gallery", view, variant)
            )
        return splits

    def _split(
        self, name: str, query_key: str, query_view: str, gallery_key: str, gallery_view: str, variant: str
    ) -> RetrievalSplit:
        queries = _records(self._images[query_key], query_view, self._folders[query_key])
        queried = {record.location for record in queries}
        gallery = _records(
            self._images[gallery_key],
            gallery_view,
            self._folders[gallery_key],
            junk=(lambda loc: loc not in queried) if variant == "sample4geo" else None,
        )
        return RetrievalSplit(name, queries, gallery, self.protocol, variant)


def _records(
    images: dict[str, list[Path]], view: str, folder: str, junk: Callable[[str], bool] | None = None
) -> list[ImageRecord]:
    meta = {
        "folder": folder
    }  # one mapping shared by the split's records (read-only by convention; picklable)
    records = []
    for location, paths in images.items():
        label = JUNK_LABEL if junk is not None and junk(location) else int(location)
        records.extend(ImageRecord(path, label, location, view, None, meta) for path in paths)
    return records
