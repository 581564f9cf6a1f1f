"""The tile CSV: centre vs corner positions, per-line errors, round trips, benchmark galleries."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cvd.errors import DatasetLayoutError
from cvd.geo.gallery import GalleryTile, bounds_centre, read_tiles_csv, tiles_from_records, write_tiles_csv


@pytest.fixture()
def tile_folder(tmp_path: Path, helpers) -> Path:
    for name in ("a.png", "b.png", "sub/c.png"):
        helpers.save_png(tmp_path / name, np.zeros((8, 8, 3)))
    return tmp_path


def test_centre_and_corner_csvs_give_the_same_centres(tile_folder):
    (tile_folder / "centre.csv").write_text("path,lat,lon\na.png,47.25,8.5\nsub/c.png,-33.9,151.2\n")
    (tile_folder / "corner.csv").write_text(
        "path,north,west,south,east\na.png,47.5,8.0,47.0,9.0\nsub/c.png,-33.8,151.1,-34.0,151.3\n"
    )
    centre = read_tiles_csv(tile_folder / "centre.csv")
    corner = read_tiles_csv(tile_folder / "corner.csv")
    for c, k in zip(centre, corner):
        assert (c.lat, c.lon) == pytest.approx((k.lat, k.lon), abs=1e-12)
    assert corner[0].has_footprint and not centre[0].has_footprint
    assert corner[1].path == tile_folder / "sub" / "c.png"
    assert corner[1].id == "sub/c.png"  # the path is the default id


def test_bounds_across_the_antimeridian():
    assert bounds_centre(1.0, 179.0, -1.0, -179.0) == pytest.approx((0.0, 180.0))
    assert bounds_centre(1.0, 178.0, -1.0, -176.0) == pytest.approx((0.0, -179.0))


def test_every_bad_line_is_reported_with_its_number(tile_folder):
    csv_path = tile_folder / "tiles.csv"
    csv_path.write_text(
        "id,path,lat,lon\n"
        "ok,a.png,10,20\n"  # line 2
        "nolat,b.png,,20\n"  # line 3
        "text,b.png,north,20\n"  # line 4
        "high,b.png,91,20\n"  # line 5
        "west,b.png,10,-181\n"  # line 6
        "ok,b.png,10,20\n"  # line 7: duplicate id
        "gone,missing.png,10,20\n"  # line 8
        "\n"  # blank lines are ignored
        "inf,b.png,inf,20\n"  # line 10
    )
    with pytest.raises(DatasetLayoutError) as caught:
        read_tiles_csv(csv_path)
    message = str(caught.value)
    assert str(csv_path) in message and "7 bad line(s)" in message
    for expected in (
        "line 3: missing value in column 'lat'",
        "line 4: column 'lat' is not a number: 'north'",
        "line 5: latitude 91.0 is outside [-90, 90]",
        "line 6: longitude -181.0 is outside [-180, 180]",
        "line 7: duplicate id 'ok' (first on line 2)",
        "line 8: tile image not found",
        "line 10: column 'lat' is not a finite number",
    ):
        assert expected in message
    assert "line 2:" not in message


def test_header_without_position_columns(tile_folder):
    (tile_folder / "bad.csv").write_text("path,x,y\na.png,1,2\n")
    with pytest.raises(DatasetLayoutError, match=r"bad\.csv line 1: header .* lacks the columns"):
        read_tiles_csv(tile_folder / "bad.csv")
    (tile_folder / "empty.csv").write_text("")
    with pytest.raises(DatasetLayoutError, match=r"empty\.csv: empty file"):
        read_tiles_csv(tile_folder / "empty.csv")
    with pytest.raises(DatasetLayoutError, match=r"nothere\.csv: cannot read"):
        read_tiles_csv(tile_folder / "nothere.csv")


def test_inverted_bounds_are_rejected(tile_folder):
    (tile_folder / "inv.csv").write_text("path,north,west,south,east\na.png,47.0,8.0,47.5,9.0\n")
    with pytest.raises(DatasetLayoutError, match=r"line 2: north \(47.0\) must be greater than south"):
        read_tiles_csv(tile_folder / "inv.csv")


def test_write_read_round_trip_keeps_full_precision(tile_folder, tmp_path):
    tiles = [
        GalleryTile("x", tile_folder / "a.png", 47.123456789012345, 8.987654321098765, 47.2, 8.9, 47.0, 9.1),
        GalleryTile("y", tile_folder / "sub" / "c.png", -0.1 + 1e-15, 179.99999999999),
    ]
    write_tiles_csv(tiles, tile_folder / "out.csv")
    back = read_tiles_csv(tile_folder / "out.csv")
    assert back[0] == tiles[0]
    assert (back[1].lat, back[1].lon, back[1].path) == (tiles[1].lat, tiles[1].lon, tiles[1].path)
    assert math.isnan(back[1].north)


def test_tiles_from_benchmark_records_need_gps(tmp_path):
    records = [
        SimpleNamespace(path=tmp_path / "0000001.jpg", location="0000001", gps=(40.0, -75.0)),
        SimpleNamespace(path=tmp_path / "0000002.jpg", location="0000002", gps=(40.1, -75.1)),
    ]
    tiles = tiles_from_records(records)
    assert [(t.id, t.lat, t.lon) for t in tiles] == [
        ("0000001/0000001.jpg", 40.0, -75.0),
        ("0000002/0000002.jpg", 40.1, -75.1),
    ]
    records.append(SimpleNamespace(path=tmp_path / "0000003.jpg", location="0000003", gps=None))
    with pytest.raises(DatasetLayoutError, match=r"1 gallery image\(s\) have no GPS.*0000003\.jpg"):
        tiles_from_records(records)
