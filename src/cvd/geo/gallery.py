"""Gallery tiles and their geo metadata: the tile CSV format, read with per-line errors.

A gallery tile is an image file plus the WGS84 position of its centre and, when known, the
bounding box of its ground footprint. The CSV is the one exchange format between tile sources
(a folder of tiles, a cut map, a benchmark gallery) and the index, so it is strict: every bad
line is reported with its number, and nothing half-parsed reaches the index.

CSV columns (header required, any order, extra columns ignored):
- `path`: the tile image, relative to the CSV's folder or absolute.
- `id` (optional): a unique name for the tile; defaults to `path`.
- either `lat`, `lon`: the tile centre, or `north`, `west`, `south`, `east`: the tile's
  corner bounds (north-west and south-east corners), whose midpoint is taken as the centre;
  both may be given (the centre then wins and the bounds are kept as the footprint, and may be
  left empty on rows whose footprint is unknown).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvd.atomic import atomic_output
from cvd.earth import latlon_problem
from cvd.errors import DatasetLayoutError

CENTRE_COLUMNS = ("lat", "lon")
BOUNDS_COLUMNS = ("north", "west", "south", "east")
TILE_CSV_COLUMNS = ("id", "path", "lat", "lon", "north", "west", "south", "east")
MAX_LISTED_ERRORS = 20


@dataclass(frozen=True)
class GalleryTile:
    """One geo-referenced gallery image; footprint bounds are nan where unknown."""

    id: str
    path: Path
    lat: float
    lon: float
    north: float = math.nan
    west: float = math.nan
    south: float = math.nan
    east: float = math.nan

    @property
    def has_footprint(self) -> bool:
        return not any(math.isnan(v) for v in (self.north, self.west, self.south, self.east))


def bounds_centre(north: float, west: float, south: float, east: float) -> tuple[float, float]:
    """Centre of north-up bounds, taking the short way across the antimeridian when west > east."""
    if east < west:
        east += 360.0
    lon = (west + east) / 2.0
    if lon > 180.0:
        lon -= 360.0
    return (north + south) / 2.0, lon


def _float_field(row: dict[str, str], name: str) -> float:
    text = (row.get(name) or "").strip()
    if not text:
        raise ValueError(f"missing value in column '{name}'")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"column '{name}' is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"column '{name}' is not a finite number: {text!r}")
    return value


def parse_position(row: dict[str, str], has_centre: bool, has_bounds: bool) -> tuple[float, ...]:
    """(lat, lon, north, west, south, east) of one CSV row; raises ValueError saying what is wrong."""
    bounds = (math.nan,) * 4
    if has_bounds and has_centre and not any((row.get(name) or "").strip() for name in BOUNDS_COLUMNS):
        has_bounds = False  # with a centre given, the footprint is optional per row
    if has_bounds:
        north, west, south, east = (_float_field(row, name) for name in BOUNDS_COLUMNS)
        for lat, lon in ((north, west), (south, east)):
            problem = latlon_problem(lat, lon)
            if problem:
                raise ValueError(problem)
        if north <= south:
            raise ValueError(f"north ({north}) must be greater than south ({south})")
        bounds = (north, west, south, east)
    if has_centre:
        lat, lon = _float_field(row, "lat"), _float_field(row, "lon")
    else:
        lat, lon = bounds_centre(*bounds)
    problem = latlon_problem(lat, lon)
    if problem:
        raise ValueError(problem)
    return (lat, lon, *bounds)


def open_csv_rows(
    csv_path: Path, required_any: Sequence[Sequence[str]]
) -> tuple[list[str], list[tuple[int, dict]]]:
    """Header and (line number, row) pairs of a CSV, or a DatasetLayoutError naming the file.

    Header names are matched case-insensitively with surrounding spaces removed;
    `required_any` lists column groups of which at least one must be complete.
    """
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            lines = list(reader)
    except OSError as error:
        raise DatasetLayoutError(f"{csv_path}: cannot read CSV ({error.strerror or error})") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise DatasetLayoutError(f"{csv_path}: not a readable UTF-8 CSV ({error})") from None
    if not lines:
        raise DatasetLayoutError(f"{csv_path}: empty file, expected a header line")
    header = [name.strip().lower() for name in lines[0]]
    if not any(all(column in header for column in group) for group in required_any):
        wanted = " or ".join("+".join(group) for group in required_any)
        raise DatasetLayoutError(f"{csv_path} line 1: header {lines[0]} lacks the columns {wanted}")
    rows = []
    for number, values in enumerate(lines[1:], start=2):
        if not any(v.strip() for v in values):
            continue
        rows.append((number, dict(zip(header, values))))
    return header, rows


def raise_line_errors(csv_path: Path, errors: list[str]) -> None:
    """One DatasetLayoutError listing every bad line (the first few in full)."""
    if not errors:
        return
    listed = "; ".join(errors[:MAX_LISTED_ERRORS])
    more = f"; ... and {len(errors) - MAX_LISTED_ERRORS} more" if len(errors) > MAX_LISTED_ERRORS else ""
    raise DatasetLayoutError(f"{csv_path}: {len(errors)} bad line(s): {listed}{more}")


def read_tiles_csv(csv_path: str | os.PathLike, check_files: bool = True) -> list[GalleryTile]:
    """Gallery tiles of a tile CSV; every bad line is reported, by number, in one error."""
    csv_path = Path(csv_path)
    header, rows = open_csv_rows(csv_path, [("path", *CENTRE_COLUMNS), ("path", *BOUNDS_COLUMNS)])
    has_centre = all(c in header for c in CENTRE_COLUMNS)
    has_bounds = all(c in header for c in BOUNDS_COLUMNS)
    base = csv_path.parent
    tiles: list[GalleryTile] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for number, row in rows:
        try:
            path_text = (row.get("path") or "").strip()
            if not path_text:
                raise ValueError("missing value in column 'path'")
            path = Path(path_text) if Path(path_text).is_absolute() else base / path_text
            tile_id = (row.get("id") or "").strip() or path_text
            if tile_id in seen:
                raise ValueError(f"duplicate id {tile_id!r} (first on line {seen[tile_id]})")
            position = parse_position(row, has_centre, has_bounds)
            if check_files and not path.is_file():
                raise ValueError(f"tile image not found: {path}")
        except ValueError as error:
            errors.append(f"line {number}: {error}")
            continue
        seen[tile_id] = number
        tiles.append(GalleryTile(tile_id, path, *position))
    raise_line_errors(csv_path, errors)
    if not tiles:
        raise DatasetLayoutError(f"{csv_path}: no tiles listed (only a header line)")
    return tiles


def _path_for_csv(path: Path, base: Path) -> str:
    """Tile path as written to a CSV: relative to the CSV when below it, so the folder can move."""
    path = Path(path)
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def write_tiles_csv(tiles: Iterable[GalleryTile], csv_path: str | os.PathLike) -> None:
    """Write tiles in the format `read_tiles_csv` reads (full float precision, atomically)."""
    csv_path = Path(csv_path)
    with atomic_output(csv_path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TILE_CSV_COLUMNS)
        for tile in tiles:
            bounds = [
                "" if math.isnan(v) else repr(v) for v in (tile.north, tile.west, tile.south, tile.east)
            ]
            writer.writerow(
                [tile.id, _path_for_csv(tile.path, csv_path.parent), repr(tile.lat), repr(tile.lon), *bounds]
            )


def tiles_from_records(records: Iterable[Any]) -> list[GalleryTile]:
    """Gallery tiles of a benchmark gallery (`cvd.data.ImageRecord`s that carry GPS).

    Duck-typed on `.path`, `.gps` and `.location` so any record list with positions works.
    """
    tiles: list[GalleryTile] = []
    missing: list[str] = []
    for record in records:
        gps = getattr(record, "gps", None)
        if gps is None or any(math.isnan(v) for v in gps):
            missing.append(str(record.path))
            continue
        problem = latlon_problem(*gps)
        if problem:
            raise DatasetLayoutError(f"{record.path}: {problem}")
        tile_id = f"{getattr(record, 'location', '')}/{Path(record.path).name}".lstrip("/")
        tiles.append(GalleryTile(tile_id, Path(record.path), float(gps[0]), float(gps[1])))
    if missing:
        raise DatasetLayoutError(
            f"{len(missing)} gallery image(s) have no GPS position, e.g. {missing[0]}; "
            "a localization gallery needs a position for every tile"
        )
    return tiles
