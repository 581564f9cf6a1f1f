"""SUES-200 (drone <-> satellite at 150/200/250/300 m), raw download or the split script's layout."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from cvd.data.layout import LayoutCheck
from cvd.data.records import JUNK_LABEL, ImageRecord, PairRecord, RetrievalSplit, contiguous_labels
from cvd.data.registry import register_dataset
from cvd.data.university1652 import GALLERY_VARIANTS
from cvd.errors import OptionError
from cvd.schema import Option

logger = logging.getLogger("cvd.data")

ALTITUDES = (150, 200, 250, 300)

# The benchmark's 120 training locations, as listed in `script/indexs.yaml` of the SUES-200
# benchmark repository (github.com/Reza-Zhu/SUES-200-Benchmark). Its split script draws them
# from an unsorted glob, so they are not the first 120 ids: this list is the only way to
# reproduce the published split from the raw download. The other 80 ids are the test set.
_OFFICIAL_TRAIN_IDS_TEXT = (
    "0001 0002 0003 0004 0005 0006 0007 0009 0010 0011 0013 0015 0016 0020 0021 0024 0025 0026 "
    "0027 0028 0029 0030 0031 0032 0033 0034 0036 0037 0039 0043 0044 0045 0051 0055 0056 0057 "
    "0058 0060 0064 0066 0067 0069 0070 0073 0074 0076 0077 0080 0081 0082 0084 0085 0086 0087 "
    "0088 0089 0090 0091 0094 0096 0097 0100 0101 0102 0103 0104 0105 0106 0113 0116 0118 0119 "
    "0120 0123 0125 0126 0127 0129 0132 0134 0137 0139 0141 0142 0145 0146 0147 0148 0149 0151 "
    "0152 0155 0156 0157 0158 0159 0160 0163 0166 0167 0168 0169 0171 0174 0179 0180 0182 0183 "
    "0184 0185 0186 0187 0191 0192 0193 0196 0197 0198 0199 0200"
)
OFFICIAL_TRAIN_IDS = tuple(_OFFICIAL_TRAIN_IDS_TEXT.split())

RAW_TREE = """\
raw layout (the download, SUES-200-512x512/ is the root):
  drone_view_512/<0001..0200>/<150|200|250|300>/<0..49>.jpg
  satellite-view/<0001..0200>/0.png"""

SPLIT_TREE = """\
split layout (the benchmark's split script; lowercase train/ and test/ are accepted too):
  Training/<h>/drone/<120 train ids>/*.jpg       Training/<h>/satellite/<id>/0.png
  Testing/<h>/query_drone/<80 test ids>/*.jpg    Testing/<h>/query_satellite/<80 test ids>/0.png
  Testing/<h>/gallery_drone/<all 200 ids>/       Testing/<h>/gallery_satellite/<all 200 ids>/
  <h> is the altitude in metres: 150, 200, 250 or 300."""


LAYOUTS = ("auto", "raw", "split")  # auto: whichever of the two is on disk


@register_dataset
class SUES200:
    """The SUES-200 benchmark at `root`, for one or several altitudes.

    `layout`: "raw" (the download), "split" (Training/Testing folders), or "auto" (whichever is
    there). The raw layout is split into the benchmark's 120 training / 80 test locations:
    `train_ids` overrides the list, `train_fraction` instead takes the first fraction of the
    sorted ids (for trees that are not the real benchmark, e.g. synthetic ones). As in the
    benchmark, the satellite gallery holds all locations (the training ones are distractors) and
    the drone gallery all locations' drone images at that altitude.
    """

    name = "sues200"
    protocol = "sues200"
    option_declarations: ClassVar[dict[str, Option]] = {
        "layout": Option("str", "raw release or train/test split folders", choices=LAYOUTS),
        "train_fraction": Option(
            "float", "raw layout: share of locations for training", low=0, high=1, low_open=True
        ),
    }
    eval_option_declarations: ClassVar[dict[str, Option]] = {
        "gallery_variant": Option("str", "which satellites form the gallery", choices=GALLERY_VARIANTS),
    }

    def __init__(
        self,
        root: str | os.PathLike,
        altitude: int | Sequence[int] = 150,
        layout: str = "auto",
        train_ids: Sequence[str] | None = None,
        train_fraction: float | None = None,
        strict: bool = False,
    ) -> None:
        self.root = Path(root).expanduser()
        self.altitudes = list(altitude) if isinstance(altitude, list | tuple) else [altitude]
        if any(height not in ALTITUDES for height in self.altitudes):
            raise OptionError(
                "altitude", altitude, f"SUES-200 altitudes are {', '.join(map(str, ALTITUDES))}"
            )
        if layout not in LAYOUTS:
            raise OptionError("layout", layout, "must be 'auto', 'raw' or 'split'")
        if train_ids is not None and train_fraction is not None:
            raise OptionError("train_fraction", train_fraction, "give train_ids or train_fraction, not both")
        self.strict = strict
        self.layout = self._detect(layout)
        # per altitude: folder key -> location -> images
        self._images: dict[int, dict[str, dict[str, list[Path]]]] = {}
        if self.layout == "raw":
            self._scan_raw(train_ids, train_fraction)
        else:
            self._scan_split()

    # -- layout detection and scanning --------------------------------------------------------
    def _split_dirs(self) -> tuple[Path, Path]:
        """Training/Testing, or the lowercase train/test some peers' copies use."""
        train = self.root / "Training"
        test = self.root / "Testing"
        if not train.is_dir() and (self.root / "train").is_dir():
            train = self.root / "train"
        if not test.is_dir() and (self.root / "test").is_dir():
            test = self.root / "test"
        return train, test

    def _detect(self, layout: str) -> str:
        if layout != "auto":
            return layout
        train, test = self._split_dirs()
        if train.is_dir() or test.is_dir():
            return "split"
        if (self.root / "drone_view_512").is_dir() or (self.root / "satellite-view").is_dir():
            return "raw"
        check = LayoutCheck("SUES-200", self.root, f"{RAW_TREE}\n{SPLIT_TREE}")
        for relative in ("drone_view_512", "satellite-view", "Training", "Testing"):
            check.require_dir(relative)
        check.add_problem("found neither the raw layout nor the split layout (either is accepted)")
        check.raise_if_problems()
        return "raw"  # unreachable: the check above raised

    def _scan_raw(self, train_ids: Sequence[str] | None, train_fraction: float | None) -> None:
        check = LayoutCheck("SUES-200", self.root, RAW_TREE)
        if any(d.is_dir() for d in self._split_dirs()) and not (self.root / "drone_view_512").is_dir():
            check.add_hint("the split layout (Training/, Testing/) is present: use layout='split' or 'auto'")
        drone_dir = check.require_dir("drone_view_512")
        satellite_dir = check.require_dir("satellite-view")
        satellite_locations = check.class_folders(satellite_dir)
        drone_locations = check.class_folders(drone_dir)
        check.numeric_names(satellite_dir, satellite_locations)
        check.numeric_names(drone_dir, drone_locations)
        satellites = {loc: check.images(path) for loc, path in satellite_locations.items()}
        if satellites and drone_locations:
            check.add_missing(drone_dir / loc for loc in sorted(set(satellites) - set(drone_locations)))
            check.add_missing(satellite_dir / loc for loc in sorted(set(drone_locations) - set(satellites)))
        drones = {
            height: {loc: check.images(path / str(height)) for loc, path in drone_locations.items()}
            for height in self.altitudes
        }
        locations = sorted(satellites)
        if train_fraction is not None:
            chosen = locations[: round(train_fraction * len(locations))]
        else:
            chosen = list(OFFICIAL_TRAIN_IDS if train_ids is None else train_ids)
            absent = [loc for loc in chosen if loc not in satellites]
            if absent and satellites:
                check.add_missing(satellite_dir / loc for loc in absent)
                origin = "the benchmark's official list" if train_ids is None else "train_ids"
                check.add_hint(
                    f"{len(absent)} training ids of {origin} have no folder; for a tree that is not "
                    "the full benchmark pass train_ids=[...] or train_fraction=..."
                )
        check.raise_if_problems()
        self.train_ids = sorted(chosen)
        train_set = set(self.train_ids)
        self.test_ids = [loc for loc in locations if loc not in train_set]
        for height in self.altitudes:
            self._images[height] = {
                "train_drone": {loc: drones[height][loc] for loc in self.train_ids},
                "train_satellite": {loc: satellites[loc] for loc in self.train_ids},
                "query_drone": {loc: drones[height][loc] for loc in self.test_ids},
                "query_satellite": {loc: satellites[loc] for loc in self.test_ids},
                "gallery_drone": drones[height],
                "gallery_satellite": satellites,
            }

    def _scan_split(self) -> None:
        check = LayoutCheck("SUES-200", self.root, SPLIT_TREE)
        train, test = self._split_dirs()
        if (self.root / "drone_view_512").is_dir() and not train.is_dir():
            check.add_hint("the raw layout (drone_view_512/) is present: use layout='raw' or 'auto'")
        folders = {
            "train_drone": (train, "drone"),
            "train_satellite": (train, "satellite"),
            "query_drone": (test, "query_drone"),
            "query_satellite": (test, "query_satellite"),
            "gallery_drone": (test, "gallery_drone"),
            "gallery_satellite": (test, "gallery_satellite"),
        }
        for height in self.altitudes:
            images: dict[str, dict[str, list[Path]]] = {}
            for key, (base, leaf) in folders.items():
                directory = check.require_dir(Path(base.name) / str(height) / leaf)
                classes = check.class_folders(directory)
                check.numeric_names(directory, classes)
                images[key] = {loc: check.images(path) for loc, path in classes.items()}
            self._images[height] = images
        check.raise_if_problems()
        first = self._images[self.altitudes[0]]
        self.train_ids = sorted(set(first["train_drone"]) & set(first["train_satellite"]))
        self.test_ids = sorted(first["query_drone"])

    # -- records --------------------------------------------------------------------------------
    def train_pairs(self) -> list[PairRecord]:
        """One pair per drone image with its location's satellite image, for every chosen altitude.

        Labels are per location across altitudes, so a sampler never puts two altitudes of one
        location in a batch.
        """
        pairs = []
        labels = contiguous_labels(self.train_ids)
        for height in self.altitudes:
            images = self._images[height]
            for loc in self.train_ids:
                satellite = images["train_satellite"].get(loc)
                if not satellite:
                    continue
                pairs.extend(
                    PairRecord(query=path, satellite=satellite[0], label=labels[loc], location=loc)
                    for path in images["train_drone"].get(loc, [])
                )
        return pairs

    def eval_splits(self, gallery_variant: str = "official") -> list[RetrievalSplit]:
        """drone->satellite and satellite->drone for each chosen altitude (named `.../<h>m`).

        `official`: the benchmark's galleries as its split script writes them (all 200 locations,
        the 120 training ones as distractors). `sample4geo`: gallery items of locations without a
        query are junk (removed from the ranking), as Sample4Geo and Game4Loc evaluate.
        """
        if gallery_variant not in GALLERY_VARIANTS:
            raise OptionError(
                "gallery_variant", gallery_variant, f"must be one of {', '.join(GALLERY_VARIANTS)}"
            )
        splits = []
        for height in self.altitudes:
            images = self._images[height]
            for query_view, gallery_view in (("drone", "satellite"), ("satellite", "drone")):
                queries = _records(images[f"query_{query_view}"], query_view, height)
                queried = {record.location for record in queries} if gallery_variant == "sample4geo" else None
                gallery = _records(images[f"gallery_{gallery_view}"], gallery_view, height, keep=queried)
                name = f"{query_view}->{gallery_view}/{height}m"
                splits.append(RetrievalSplit(name, queries, gallery, self.protocol, gallery_variant))
        return splits


def _records(
    images: dict[str, list[Path]], view: str, height: int, keep: set[str] | None = None
) -> list[ImageRecord]:
    """Records of one view at one altitude; locations outside `keep` (when given) are junk."""
    meta = {"altitude": height}  # one mapping shared by the split's records (read-only; picklable)
    return [
        ImageRecord(
            path, JUNK_LABEL if keep is not None and loc not in keep else int(loc), loc, view, None, meta
        )
        for loc, paths in images.items()
        for path in paths
    ]
