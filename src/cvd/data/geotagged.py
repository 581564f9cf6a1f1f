"""Users' own geo-tagged images: a folder and a CSV of path, lat, lon[, location][, view]."""

from __future__ import annotations

import csv as csv_module
import os
from collections import defaultdict
from pathlib import Path
from typing import ClassVar

import numpy as np

from cvd.data.layout import LayoutCheck, missing_files, report_missing_images
from cvd.data.records import VIEWS, ImageRecord, PairRecord, RetrievalSplit, contiguous_labels
from cvd.data.registry import register_dataset
from cvd.earth import latlon_problem
from cvd.errors import ConfigError
from cvd.schema import Option

EXPECTED_TREE = """\
<root>/                       <- the folder the CSV's paths are relative to
  <csv>                       header row, then one row per image:
                                path,lat,lon[,location][,view]
                              path: relative to the root (or absolute)
                              lat, lon: WGS84 degrees
                              location: optional id shared by the images of one place
                              view: drone | street | satellite (default drone)
  <the images the CSV names>"""


@register_dataset
class GeoTaggedFolder:
    """A folder of geo-tagged images described by a CSV (for users' own data).

    Rows with view `satellite` form the gallery; the others are queries. Without a `location`
    column (or with an empty cell), a satellite row is its own location (its file stem) and a
    query takes the location of the nearest satellite image (great-circle distance); queries
    farther than `max_distance_m` from every satellite image have no true match and are left
    out of pairs and evaluation. Evaluation labels are the location ids when all are integers,
    else their index in sorted order.
    """

    name = "geotagged"
    option_declarations: ClassVar[dict[str, Option]] = {
        "max_distance_m": Option(
            "float", "queries farther than this from every satellite have no match", low=0, low_open=True
        ),
    }

    def __init__(
        self,
        root: str | os.PathLike,
        csv: str | os.PathLike = "images.csv",
        protocol: str = "university1652",
        max_distance_m: float | None = None,
        strict: bool = False,
    ) -> None:
        self.root = Path(root).expanduser()
        self.protocol = protocol
        self.strict = strict
        check = LayoutCheck("geo-tagged folder", self.root, EXPECTED_TREE)
        csv_path = check.require_file(csv)
        check.raise_if_problems()
        rows = _read_rows(csv_path, self.root, check)
        check.raise_if_problems()
        self.missing = missing_files(row["path"] for row in rows)
        report_missing_images(check, self.missing, strict)
        check.raise_if_problems()
        missing = set(self.missing)
        rows = [row for row in rows if row["path"] not in missing]
        satellites = [row for row in rows if row["view"] == "satellite"]
        for row in satellites:
            row["location"] = row["location"] or row["path"].stem
        _assign_nearest(
            [row for row in rows if row["view"] != "satellite" and not row["location"]],
            satellites,
            max_distance_m,
        )
        self._rows = [row for row in rows if row["location"]]
        locations = sorted({row["location"] for row in self._rows})
        numeric = all(loc.lstrip("-").isdigit() for loc in locations)
        self._eval_label = {loc: (int(loc) if numeric else i) for i, loc in enumerate(locations)}

    def _satellites_by_location(self) -> dict[str, list[dict]]:
        by_location: dict[str, list[dict]] = defaultdict(list)
        for row in self._rows:
            if row["view"] == "satellite":
                by_location[row["location"]].append(row)
        if not by_location:
            raise ConfigError(f"geo-tagged folder {self.root}: the CSV has no rows with view 'satellite'")
        return by_location

    def train_pairs(self) -> list[PairRecord]:
        """Each query paired with each satellite image of its location."""
        satellites = self._satellites_by_location()
        queries = [r for r in self._rows if r["view"] != "satellite" and r["location"] in satellites]
        labels = contiguous_labels([r["location"] for r in queries])
        return [
            PairRecord(q["path"], s["path"], labels[q["location"]], q["location"], q["gps"])
            for q in queries
            for s in satellites[q["location"]]
        ]

    def eval_splits(self) -> list[RetrievalSplit]:
        """`<view>->satellite` for each query view present, against all satellite images."""
        satellites = self._satellites_by_location()
        gallery = [self._record(row) for rows in satellites.values() for row in rows]
        splits = []
        for view in ("drone", "street"):
            queries = [self._record(r) for r in self._rows if r["view"] == view]
            if queries:
                splits.append(RetrievalSplit(f"{view}->satellite", queries, gallery, self.protocol, None))
        return splits

    def _record(self, row: dict) -> ImageRecord:
        return ImageRecord(
            row["path"], self._eval_label[row["location"]], row["location"], row["view"], row["gps"]
        )


def _read_rows(csv_path: Path, root: Path, check: LayoutCheck) -> list[dict]:
    """Validated rows; every bad cell is a problem naming the file, line and column."""
    rows = []
    with open(csv_path, newline="") as handle:
        reader = csv_module.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        absent = [c for c in ("path", "lat", "lon") if c not in columns]
        if absent:
            check.add_problem(f"{csv_path}: header lacks column(s) {', '.join(absent)} (has {columns})")
            return []
        for line_number, raw in enumerate(reader, start=2):
            cells = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            try:
                lat, lon = float(cells["lat"]), float(cells["lon"])
            except ValueError:
                check.add_problem(
                    f"{csv_path}:{line_number}: lat/lon {cells['lat']!r}, {cells['lon']!r} are not numbers"
                )
                continue
            if latlon_problem(lat, lon) is not None:
                check.add_problem(f"{csv_path}:{line_number}: lat/lon ({lat}, {lon}) out of range")
                continue
            view = cells.get("view") or "drone"
            if view not in VIEWS:
                check.add_problem(f"{csv_path}:{line_number}: view {view!r} is not one of {VIEWS}")
                continue
            if not cells["path"]:
                check.add_problem(f"{csv_path}:{line_number}: empty path")
                continue
            path = Path(cells["path"])
            rows.append(
                {
                    "path": path if path.is_absolute() else root / path,
                    "gps": (lat, lon),
                    "location": cells.get("location", ""),
                    "view": view,
                }
            )
    if not rows and check.ok:
        check.add_problem(f"{csv_path}: no image rows")
    return rows


def _assign_nearest(queries: list[dict], satellites: list[dict], max_distance_m: float | None) -> None:
    """Give each query without a location the location of its nearest satellite image."""
    if not queries or not satellites:
        return
    from scipy.spatial import cKDTree

    from cvd.earth import EARTH_RADIUS_M, unit_vectors

    satellite_gps = np.asarray([s["gps"] for s in satellites], dtype=np.float64)
    query_gps = np.asarray([q["gps"] for q in queries], dtype=np.float64)
    tree = cKDTree(unit_vectors(satellite_gps[:, 0], satellite_gps[:, 1]))
    chord, nearest = tree.query(unit_vectors(query_gps[:, 0], query_gps[:, 1]))
    distance_m = 2.0 * EARTH_RADIUS_M * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))
    for query, index, metres in zip(queries, nearest, distance_m):
        if max_distance_m is None or metres <= max_distance_m:
            query["location"] = satellites[int(index)]["location"]
