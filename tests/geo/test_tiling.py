"""Cutting maps into tiles: grid arithmetic, centre/footprint georeferencing, pixels, bad maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from pyproj import Transformer

from cvd.errors import DatasetLayoutError, ImageReadError
from cvd.geo.gallery import read_tiles_csv
from cvd.geo.tiling import cut_map, grid_starts, plan_windows


def test_grid_starts_step_by_stride_and_end_flush_with_the_edge():
    assert grid_starts(100, 30, 20) == [0, 20, 40, 60, 70]
    assert grid_starts(100, 30, 35) == [0, 35, 70]
    assert grid_starts(90, 30, 30) == [0, 30, 60]
    assert grid_starts(30, 30, 10) == [0]
    with pytest.raises(ValueError, match="does not fit"):
        grid_starts(20, 30, 10)


def test_windows_cover_every_pixel_exactly_as_planned():
    windows = plan_windows(103, 61, 25, 20, 15, 12)
    covered = np.zeros((61, 103), dtype=int)
    for w in windows:
        covered[w.row : w.row + w.height, w.col : w.col + w.width] += 1
    assert covered.min() >= 1
    assert len(windows) == len(grid_starts(103, 25, 15)) * len(grid_starts(61, 20, 12))


def coded_image(width: int, height: int) -> np.ndarray:
    """Pixel (r, c) holds (c % 256, r % 256, (c // 256) * 16 + r // 256): each position readable."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([cols % 256, rows % 256, (cols // 256) * 16 + rows // 256], axis=-1).astype(np.uint8)


def test_cut_plain_image_with_corners_centres_and_pixels(tmp_path, helpers):
    width, height = 120, 80
    north, west, south, east = 47.40, 8.50, 47.36, 8.56
    source = helpers.save_png(tmp_path / "map.png", coded_image(width, height))
    tiles = cut_map(
        source, tmp_path / "out", tile_size=40, stride=20, unit="px", corners=(north, west, south, east)
    )
    assert len(tiles) == 5 * 3  # cols 0,20,40,60,80 ; rows 0,20,40
    deg_per_px_lon = (east - west) / width
    deg_per_px_lat = (north - south) / height
    for tile in tiles:
        pixels = np.asarray(Image.open(tile.path))
        col0, row0 = int(pixels[0, 0, 0]), int(pixels[0, 0, 1])  # decode the tile's top-left position
        assert pixels.shape == (40, 40, 3)
        np.testing.assert_array_equal(pixels, coded_image(width, height)[row0 : row0 + 40, col0 : col0 + 40])
        # centre of the window [col0, col0 + 40) is 20 px in, on the pixel-corner grid
        assert tile.lon == pytest.approx(west + (col0 + 20) * deg_per_px_lon, abs=1e-12)
        assert tile.lat == pytest.approx(north - (row0 + 20) * deg_per_px_lat, abs=1e-12)
        assert (tile.north, tile.west) == pytest.approx(
            (north - row0 * deg_per_px_lat, west + col0 * deg_per_px_lon)
        )
        assert (tile.south, tile.east) == pytest.approx(
            (north - (row0 + 40) * deg_per_px_lat, west + (col0 + 40) * deg_per_px_lon)
        )
    # the CSV written alongside reads back to the same tiles, bit for bit
    assert read_tiles_csv(tmp_path / "out" / "tiles.csv") == tiles


def write_utm_geotiff(path, array, origin_e, origin_n, pixel_m, dtype="uint8", crs="EPSG:32632"):
    import rasterio
    from rasterio.transform import from_origin

    bands = array.transpose(2, 0, 1) if array.ndim == 3 else array[None]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=bands.shape[2],
        height=bands.shape[1],
        count=bands.shape[0],
        dtype=dtype,
        crs=crs,
        transform=from_origin(origin_e, origin_n, pixel_m, pixel_m),
    ) as dataset:
        dataset.write(bands.astype(dtype))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_cut_utm_geotiff_by_ground_size(tmp_path):
    pytest.importorskip("rasterio")
    origin_e, origin_n, pixel_m = 465_000.0, 5_250_000.0, 2.0  # UTM 32N, near Zurich
    path = tmp_path / "ortho.tif"
    write_utm_geotiff(path, coded_image(100, 60), origin_e, origin_n, pixel_m)
    tiles = cut_map(path, tmp_path / "out", tile_size=40.0, stride=40.0, unit="m")  # 20 px tiles
    to_wgs84 = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    assert len(tiles) == 5 * 3
    for tile in tiles:
        pixels = np.asarray(Image.open(tile.path))
        assert pixels.shape == (20, 20, 3)
        col0, row0 = int(pixels[0, 0, 0]), int(pixels[0, 0, 1])
        lon, lat = to_wgs84.transform(origin_e + (col0 + 10) * pixel_m, origin_n - (row0 + 10) * pixel_m)
        assert (tile.lat, tile.lon) == pytest.approx((lat, lon), abs=1e-9)


def test_ground_size_of_lat_lon_tiles_is_square_on_the_ground(tmp_path, helpers):
    # at 60 deg N a degree of longitude is half a degree of latitude on the ground
    width, height = 400, 200
    source = helpers.save_png(tmp_path / "map.png", coded_image(width, height))
    tiles = cut_map(source, tmp_path / "out", tile_size=500.0, unit="m", corners=(60.02, 10.0, 60.0, 10.08))
    tile = tiles[0]
    ns = (tile.north - tile.south) * math.pi / 180 * 6_371_008.8
    ew = (tile.east - tile.west) * math.pi / 180 * 6_371_008.8 * math.cos(math.radians(tile.lat))
    assert ns == pytest.approx(500.0, rel=0.02)
    assert ew == pytest.approx(500.0, rel=0.02)


def test_map_errors_name_the_file(tmp_path, helpers):
    small = helpers.save_png(tmp_path / "small.png", np.zeros((10, 10, 3)))
    with pytest.raises(DatasetLayoutError, match=r"small\.png.*does not fit"):
        cut_map(small, tmp_path / "o1", tile_size=20, unit="px", corners=(1.0, 0.0, 0.0, 1.0))
    with pytest.raises(DatasetLayoutError, match=r"small\.png.*corner coordinates"):
        cut_map(small, tmp_path / "o2", tile_size=5, unit="px")
    with pytest.raises(DatasetLayoutError, match=r"absent\.tif.*not found"):
        cut_map(tmp_path / "absent.tif", tmp_path / "o3", tile_size=5, unit="px")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        cut_map(broken, tmp_path / "o4", tile_size=5, unit="px", corners=(1.0, 0.0, 0.0, 1.0))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning", "ignore::UserWarning")
def test_geotiff_errors_name_the_file(tmp_path):
    pytest.importorskip("rasterio")
    import rasterio

    deep = tmp_path / "deep.tif"
    write_utm_geotiff(deep, np.zeros((30, 30, 3)), 465_000.0, 5_250_000.0, 2.0, dtype="uint16")
    with pytest.raises(ImageReadError, match=r"deep\.tif.*uint16.*8-bit"):
        cut_map(deep, tmp_path / "o1", tile_size=10, unit="px")
    bare = tmp_path / "bare.tif"
    with rasterio.open(bare, "w", driver="GTiff", width=30, height=30, count=3, dtype="uint8") as dataset:
        dataset.write(np.zeros((3, 30, 30), dtype=np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"bare\.tif.*no georeference"):
        cut_map(bare, tmp_path / "o2", tile_size=10, unit="px")
