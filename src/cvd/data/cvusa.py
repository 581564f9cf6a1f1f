"""CVUSA (ground panorama <-> satellite): the 19zl split files, optional GPS and polar satellites."""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path
from typing import ClassVar

from cvd.data.layout import LayoutCheck, missing_files, report_missing_images
from cvd.data.records import ImageRecord, PairRecord, RetrievalSplit
from cvd.data.registry import register_dataset
from cvd.earth import latlon_problem
from cvd.schema import Option

logger = logging.getLogger("cvd.data")

EXPECTED_TREE = """\
CVUSA/                                  <- point the root here (the folder holding splits/)
  bingmap/19/0000001.jpg                satellite, 750x750
  streetview/panos/0000001.jpg          panorama, 224x1232
  splits/train-19zl.csv                 35,532 rows, no header: sat,ground,ground_anno
  splits/val-19zl.csv                   8,884 rows
  split_locations/all.csv               optional GPS: sat_lat,sat_long,ground_lat,ground_long,...
                                        (no header, row n = image number n)
  polarmap/19/0000001.png               optional polar satellites, 122x671 (polar=True)"""


@register_dataset
class CVUSA:
    """The CVUSA benchmark at `root` (CVUSA/ or its `dataset/` folder, whichever holds `splits/`).

    Pairs and evaluation lists follow `splits/train-19zl.csv` and `splits/val-19zl.csv`; the
    evaluation label is the image number (`0000123` -> 123). GPS (the ground camera's, from
    `split_locations/all.csv`, row n-1 for image n as Sample4Geo reads it) is attached when the
    file exists. `polar=True` uses the polar-transformed satellites `polarmap/19/<n>.png`
    instead of `bingmap/19/` (make them with `cvd.data.transforms.polar_transform`). Images
    named by a split file but missing are skipped with a warning (`.missing`), or are a layout
    error under `strict=True`.
    """

    name = "cvusa"
    protocol = "cvusa"
    option_declarations: ClassVar[dict[str, Option]] = {
        "polar": Option("bool", "read the polar-transformed satellites (SAFA's files)"),
    }

    def __init__(self, root: str | os.PathLike, polar: bool = False, strict: bool = False) -> None:
        self.root = Path(root).expanduser()
        self.polar = polar
        self.strict = strict
        check = LayoutCheck("CVUSA", self.root, EXPECTED_TREE)
        split_files = {
            "train": check.require_file("splits/train-19zl.csv"),
            "val": check.require_file("splits/val-19zl.csv"),
        }
        check.require_dir("polarmap/19" if polar else "bingmap/19")
        check.require_dir("streetview/panos")
        gps_file = self.root / "split_locations" / "all.csv"
        check.raise_if_problems()

        self._rows = {split: self._read_split(path, check) for split, path in split_files.items()}
        self._gps = _read_gps(gps_file, check) if gps_file.is_file() else None
        paths = [p for rows in self._rows.values() for _, sat, ground in rows for p in (sat, ground)]
        self.missing = missing_files(paths)
        report_missing_images(check, self.missing, strict)
        check.raise_if_problems()
        if self._gps is not None:
            largest = max((number for rows in self._rows.values() for number, _, _ in rows), default=0)
            if largest > len(self._gps):
                logger.warning(
                    "CVUSA: %s has %d rows but the splits reference image %d; those images get no GPS",
                    gps_file, len(self._gps), largest,
                )  # fmt: skip

    def _read_split(self, path: Path, check: LayoutCheck) -> list[tuple[int, Path, Path]]:
        """(image number, satellite path, ground path) per row of a 19zl split file."""
        rows = []
        with open(path, newline="") as handle:
            for line_number, row in enumerate(csv.reader(handle), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 2:
                    check.add_problem(f"{path}:{line_number}: expected 'sat,ground[,anno]', got {row!r}")
                    continue
                satellite, ground = row[0].strip(), row[1].strip()
                digits = re.sub(r"\D", "", Path(satellite).stem)
                if not digits:
                    check.add_problem(f"{path}:{line_number}: no image number in {satellite!r}")
                    continue
                if self.polar:
                    satellite = f"polarmap/19/{Path(satellite).stem}.png"
                rows.append((int(digits), self.root / satellite, self.root / ground))
        if not rows:
            check.add_problem(f"{path}: the split file lists no image pairs")
        return rows

    def _usable(self, split: str) -> list[tuple[int, Path, Path]]:
        missing = set(self.missing)
        return [row for row in self._rows[split] if row[1] not in missing and row[2] not in missing]

    def gps_of(self, number: int) -> tuple[float, float] | None:
        """Ground GPS of image `number` from all.csv, None without the file or the row."""
        if self._gps is None or not 1 <= number <= len(self._gps):
            return None
        return self._gps[number - 1]

    def train_pairs(self) -> list[PairRecord]:
        """The training split's pairs; labels 0..n-1 in image-number order."""
        rows = sorted(self._usable("train"))
        return [
            PairRecord(
                query=ground, satellite=sat, label=label, location=f"{number:07d}", gps=self.gps_of(number)
            )
            for label, (number, sat, ground) in enumerate(rows)
        ]

    def eval_splits(self) -> list[RetrievalSplit]:
        """street->satellite on the validation split (8,884 each way), protocol `cvusa`."""
        rows = self._usable("val")
        queries = [
            ImageRecord(ground, number, f"{number:07d}", "street", self.gps_of(number))
            for number, _, ground in rows
        ]
        gallery = [
            ImageRecord(sat, number, f"{number:07d}", "satellite", self.gps_of(number))
            for number, sat, _ in rows
        ]
        return [RetrievalSplit("street->satellite", queries, gallery, self.protocol, None)]


def _read_gps(path: Path, check: LayoutCheck) -> list[tuple[float, float] | None]:
    """Ground (lat, lon) per row of all.csv; a header line, if any, is skipped."""
    coordinates: list[tuple[float, float] | None] = []
    with open(path, newline="") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            try:
                lat, lon = float(row[2]), float(row[3])
            except (IndexError, ValueError):
                if line_number == 1:
                    continue  # header
                check.add_problem(f"{path}:{line_number}: expected ground_lat,ground_long in columns 3-4")
                coordinates.append(None)
                continue
            coordinates.append((lat, lon) if latlon_problem(lat, lon) is None else None)
    return coordinates
