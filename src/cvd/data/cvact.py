"""CVACT (ground panorama <-> satellite, Canberra): ACT_data.mat, CVACT_val and CVACT_test."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cvd.data.layout import LayoutCheck, missing_files, report_missing_images
from cvd.data.records import ImageRecord, PairRecord, RetrievalSplit
from cvd.data.registry import register_dataset
from cvd.errors import OptionError
from cvd.schema import Option

CVACT_UTM_CRS = "EPSG:32755"
"""CVACT's `utm` coordinates: WGS 84 / UTM zone 55 south (Canberra lies at about 149.1 E, 35.3 S)."""

EXPECTED_TREE = """\
CVACT/                                                      <- point the root here
  ACT_data.mat            panoIds, utm (N x 2), trainSet.trainInd, valSet.valInd (CVACT_val),
                          valSetAll.valInd (CVACT_test); indices are 1-based (MATLAB)
  ANU_data_small/streetview/<panoId>_grdView.jpg            panoramas (832x1664)
  ANU_data_small/satview_polish/<panoId>_satView_polish.jpg satellites (1200x1200)
  ANU_data_test/streetview/..., ANU_data_test/satview_polish/...   (split="test" only)"""

SPLIT_FIELDS = {
    "train": ("trainSet", "trainInd"),
    "val": ("valSet", "valInd"),
    "test": ("valSetAll", "valInd"),
}


SPLITS = ("val", "test")  # CVACT_val, CVACT_test
UTM_COLUMN_ORDERS = ("auto", "easting_northing", "northing_easting")


@register_dataset
class CVACT:
    """The CVACT benchmark at `root`, evaluated on `split="val"` (CVACT_val) or `"test"` (CVACT_test).

    Training and CVACT_val images live in `ANU_data_small/`, CVACT_test in `ANU_data_test/`.
    The .mat indices are 1-based; the evaluation label of an image is its 1-based row in
    `panoIds` (pano ids are strings, labels must be integers). GPS comes from `utm`, converted
    from UTM zone 55 south (EPSG:32755) to WGS84 lat/lon with pyproj; `utm_columns` says which
    column is which ("auto" tells them apart by magnitude: CVACT eastings are below 1e6 m,
    its southern-hemisphere northings about 6.1e6 m). Images listed by the .mat but absent are
    skipped with a warning and counted in `.missing`, as the peers do (CVACT_test is
    distributed incomplete); under `strict=True` they are a layout error.
    """

    name = "cvact"
    protocol = "cvact"
    option_declarations: ClassVar[dict[str, Option]] = {
        "split": Option("str", "evaluation set: CVACT_val or CVACT_test", choices=SPLITS),
        "utm_columns": Option(
            "str",
            "column order of the UTM coordinates",
            choices=UTM_COLUMN_ORDERS,
        ),
    }

    def __init__(
        self, root: str | os.PathLike, split: str = "val", strict: bool = False, utm_columns: str = "auto"
    ) -> None:
        if split not in SPLITS:
            raise OptionError("split", split, "must be 'val' or 'test'")
        if utm_columns not in UTM_COLUMN_ORDERS:
            raise OptionError(
                "utm_columns", utm_columns, "must be auto, easting_northing or northing_easting"
            )
        self.root = Path(root).expanduser()
        self.split = split
        self.strict = strict
        check = LayoutCheck("CVACT", self.root, EXPECTED_TREE)
        mat_path = check.require_file("ACT_data.mat")
        for folder in ("ANU_data_small",) + (("ANU_data_test",) if split == "test" else ()):
            check.require_dir(f"{folder}/streetview")
            check.require_dir(f"{folder}/satview_polish")
        check.raise_if_problems()

        content = _load_mat(mat_path, check)
        check.raise_if_problems()
        self.pano_ids = [str(x).strip() for x in np.ravel(content["panoIds"])]
        utm = np.asarray(content["utm"], dtype=np.float64).reshape(-1, 2)
        if len(utm) != len(self.pano_ids):
            check.add_problem(f"{mat_path}: utm has {len(utm)} rows but panoIds has {len(self.pano_ids)}")
        self._indices = {
            name: _zero_based(
                content[struct][field], len(self.pano_ids), f"{mat_path}: {struct}.{field}", check
            )
            for name, (struct, field) in SPLIT_FIELDS.items()
            if name == "train" or name == split
        }
        check.raise_if_problems()
        self.gps = utm_to_latlon(utm, utm_columns)

        self.missing = missing_files(
            path
            for name, rows in self._indices.items()
            for row in rows
            for path in self._paths(row, "ANU_data_test" if name == "test" else "ANU_data_small")
        )
        report_missing_images(check, self.missing, strict)
        check.raise_if_problems()

    def _paths(self, row: int, folder: str) -> tuple[Path, Path]:
        pano = self.pano_ids[row]
        return (
            self.root / folder / "streetview" / f"{pano}_grdView.jpg",
            self.root / folder / "satview_polish" / f"{pano}_satView_polish.jpg",
        )

    def _rows(self, name: str) -> list[tuple[int, Path, Path]]:
        """(0-based row, ground, satellite) of a split's images that exist."""
        folder = "ANU_data_test" if name == "test" else "ANU_data_small"
        missing = set(self.missing)
        rows = []
        for row in self._indices[name]:
            ground, satellite = self._paths(row, folder)
            if ground not in missing and satellite not in missing:
                rows.append((row, ground, satellite))
        return rows

    def _gps(self, row: int) -> tuple[float, float] | None:
        lat, lon = self.gps[row]
        return (float(lat), float(lon)) if np.isfinite(lat) and np.isfinite(lon) else None

    def train_pairs(self) -> list[PairRecord]:
        """trainSet.trainInd pairs from ANU_data_small; labels 0..n-1 in .mat order."""
        return [
            PairRecord(
                query=ground, satellite=sat, label=label, location=self.pano_ids[row], gps=self._gps(row)
            )
            for label, (row, ground, sat) in enumerate(self._rows("train"))
        ]

    def eval_splits(self) -> list[RetrievalSplit]:
        """street->satellite on CVACT_val or CVACT_test (protocol `cvact`); label = 1-based .mat row."""
        rows = self._rows(self.split)
        queries = [
            ImageRecord(g, row + 1, self.pano_ids[row], "street", self._gps(row), {"split": self.split})
            for row, g, _ in rows
        ]
        gallery = [
            ImageRecord(s, row + 1, self.pano_ids[row], "satellite", self._gps(row), {"split": self.split})
            for row, _, s in rows
        ]
        return [RetrievalSplit("street->satellite", queries, gallery, self.protocol, None)]


def utm_to_latlon(utm: np.ndarray, columns: str = "auto") -> np.ndarray:
    """(N, 2) CVACT UTM zone 55S coordinates -> (N, 2) WGS84 (lat, lon) degrees, via pyproj.

    `columns`: "easting_northing", "northing_easting", or "auto" (by magnitude: a UTM easting
    lies in 100,000..900,000 m, a northing in Canberra near 6,100,000 m).
    """
    from pyproj import Transformer

    utm = np.asarray(utm, dtype=np.float64).reshape(-1, 2)
    if len(utm) == 0:
        return np.empty((0, 2))
    if columns == "auto":
        first, second = np.nanmedian(np.abs(utm[:, 0])), np.nanmedian(np.abs(utm[:, 1]))
        columns = "northing_easting" if first > 1e6 >= second else "easting_northing"
    easting, northing = (utm[:, 0], utm[:, 1]) if columns == "easting_northing" else (utm[:, 1], utm[:, 0])
    transformer = Transformer.from_crs(CVACT_UTM_CRS, "EPSG:4326", always_xy=True)
    lon, lat = transformer.transform(easting, northing)
    return np.stack([np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)], axis=1)


def _load_mat(path: Path, check: LayoutCheck) -> dict[str, Any]:
    """The .mat fields the loader needs; each absent one is a named problem."""
    from scipy.io import loadmat

    try:
        content = loadmat(path, simplify_cells=True)
    except (ValueError, OSError, NotImplementedError) as error:
        check.add_problem(f"{path}: cannot read the MATLAB file ({error})")
        return {}
    for key in ("panoIds", "utm"):
        if key not in content:
            check.add_problem(f"{path}: field '{key}' is missing")
    for struct, field in SPLIT_FIELDS.values():
        if not isinstance(content.get(struct), dict) or field not in content[struct]:
            check.add_problem(f"{path}: field '{struct}.{field}' is missing")
    return content


def _zero_based(indices: Any, size: int, where: str, check: LayoutCheck) -> list[int]:
    """MATLAB 1-based indices -> 0-based rows; out-of-range ones are a named problem."""
    values = np.atleast_1d(np.asarray(indices)).ravel()
    if values.size and not np.all(np.equal(np.mod(values, 1), 0)):
        check.add_problem(f"{where}: indices are not integers")
        return []
    values = values.astype(np.int64)
    bad = values[(values < 1) | (values > size)]
    if bad.size:
        hint = (
            " (index 0 found: the indices must be 1-based, as MATLAB writes them)" if (bad == 0).any() else ""
        )
        check.add_problem(f"{where}: {bad.size} indices outside 1..{size}, e.g. {int(bad[0])}{hint}")
        return []
    return (values - 1).tolist()
