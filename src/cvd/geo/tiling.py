"""Cut a large geo-referenced map (GeoTIFF, or any image with known corners) into gallery tiles.

Tiles are square on the ground: their size is asked for in metres (or pixels), converted to
pixels per axis with the map's ground sample distance at its centre, and laid on a regular grid
with the given stride. The last row and column are moved flush with the map's edge so every
pixel of the map lies in some tile. Each tile's centre and footprint are georeferenced from the
window's exact pixel bounds, so cutting never accumulates rounding drift.

GeoTIFFs are read window by window through rasterio (an optional dependency: the `geotiff`
extra), so a map larger than memory can be cut; plain images are read with Pillow and need their
corner coordinates.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cvd.atomic import atomic_output
from cvd.errors import DatasetLayoutError, ImageReadError
from cvd.extras import require_extra
from cvd.geo.coords import Georeference
from cvd.geo.gallery import GalleryTile, write_tiles_csv

TILE_FORMATS = ("png", "jpg")


@dataclass(frozen=True)
class Window:
    """A pixel rectangle of the map: columns [col, col + width), rows [row, row + height)."""

    col: int
    row: int
    width: int
    height: int


def grid_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one axis: every `stride` pixels, plus one flush with the far edge."""
    if tile <= 0 or stride <= 0:
        raise ValueError(f"tile size and stride must be positive, got tile={tile} stride={stride}")
    if tile > length:
        raise ValueError(f"tile of {tile} px does not fit in a map side of {length} px")
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def plan_windows(
    width: int, height: int, tile_w: int, tile_h: int, stride_x: int, stride_y: int
) -> list[Window]:
    """Row-major grid of tile windows covering a width x height map."""
    return [
        Window(col, row, tile_w, tile_h)
        for row in grid_starts(height, tile_h, stride_y)
        for col in grid_starts(width, tile_w, stride_x)
    ]


def window_geometry(georef: Georeference, window: Window) -> tuple[float, float, float, float, float, float]:
    """(lat, lon, north, west, south, east) of a window: its centre and its footprint's bounds.

    The footprint bounds enclose the window's four corners, which for a rotated or projected map
    are not themselves a lat/lon rectangle.
    """
    c0, r0, c1, r1 = window.col, window.row, window.col + window.width, window.row + window.height
    lat, lon = georef.pixel_to_latlon(
        [(c0 + c1) / 2.0, c0, c1, c1, c0],
        [(r0 + r1) / 2.0, r0, r0, r1, r1],
    )
    return (
        float(lat[0]),
        float(lon[0]),
        float(lat[1:].max()),
        float(lon[1:].min()),
        float(lat[1:].min()),
        float(lon[1:].max()),
    )


class MapSource:
    """A large image with its georeference, read one window at a time as uint8 RGB."""

    def __init__(self, path: Path, width: int, height: int, georef: Georeference) -> None:
        self.path = path
        self.width = width
        self.height = height
        self.georef = georef

    def read(self, window: Window) -> NDArray[np.uint8]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Release the file handle."""


class _PillowMap(MapSource):
    def __init__(self, path: Path, corners: tuple[float, float, float, float]) -> None:
        from PIL import Image

        # an operator's own map may exceed Pillow's decompression-bomb limit, which guards
        # against untrusted downloads, not local files chosen on purpose
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            image = Image.open(path)
            image.load()
        except OSError as error:
            raise ImageReadError(f"{path}: cannot read map image ({error})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = previous
        self._image = _as_rgb(image, path)
        super().__init__(
            path, image.width, image.height, Georeference.from_corners(image.width, image.height, *corners)
        )

    def read(self, window: Window) -> NDArray[np.uint8]:
        box = (window.col, window.row, window.col + window.width, window.row + window.height)
        return np.asarray(self._image.crop(box))


def _as_rgb(image: object, path: Path) -> object:
    """8-bit RGB version of a Pillow image, decoded as query images are (`cvd.data.images.to_rgb8`:
    16-bit and float samples scaled by their range), so tiles and queries agree."""
    from cvd.data.images import to_rgb8

    return to_rgb8(image, path)  # type: ignore[arg-type]


def _rasterio_message(error: BaseException) -> str:
    """GDAL's reason, which rasterio chains as the cause of its own "see previous exception"."""
    cause = error.__cause__
    return str(cause) if cause is not None and str(cause) else str(error)


def north_up_problem(transform: tuple[float, ...]) -> str | None:
    """Why a GeoTIFF's pixel -> CRS transform (a, b, c, d, e, f) does not describe a north-up
    map, or None: tiles are cut along pixel rows and columns and must look like the north-up
    satellite views the model was trained on, so rotated, sheared, mirrored or south-up maps are
    refused rather than tiled sideways or upside down."""
    a, b, _, d, e, _ = transform[:6]
    if b != 0.0 or d != 0.0:
        return (
            f"its geotransform has rotation/shear terms (b={b:g}, d={d:g}): the map is not north-up; "
            "warp it north-up first (e.g. gdalwarp)"
        )
    if e > 0.0:
        return (
            f"its pixel height is positive ({e:g}): the map is stored south-up (first row southmost); "
            "flip it north-up first (e.g. gdalwarp)"
        )
    if a < 0.0:
        return f"its pixel width is negative ({a:g}): the map is mirrored east-west; warp it first"
    if a == 0.0 or e == 0.0:
        return f"its geotransform has a zero pixel size (a={a:g}, e={e:g})"
    return None


class _RasterioMap(MapSource):
    def __init__(self, path: Path, corners: tuple[float, float, float, float] | None) -> None:
        rasterio = require_extra("rasterio", "geotiff", f"{path}: reading a GeoTIFF-type map")
        self._errors = (rasterio.errors.RasterioError, OSError)
        try:
            self._dataset = rasterio.open(path)
        except self._errors as error:
            raise ImageReadError(f"{path}: cannot open map ({_rasterio_message(error)})") from None
        try:
            self._check(path, corners)
        except BaseException:
            self._dataset.close()
            raise

    def _check(self, path: Path, corners: tuple[float, float, float, float] | None) -> None:
        dataset = self._dataset
        if dataset.dtypes[0] != "uint8":
            raise ImageReadError(
                f"{path}: band type {dataset.dtypes[0]} is not 8-bit; rescale it first "
                "(e.g. gdal_translate -ot Byte -scale)"
            )
        if dataset.count not in (1, 3, 4):
            raise ImageReadError(f"{path}: {dataset.count} bands; expected 1 (grey), 3 (RGB) or 4 (RGBA)")
        if corners is not None:
            georef = Georeference.from_corners(dataset.width, dataset.height, *corners)
        elif dataset.crs is None:
            raise DatasetLayoutError(
                f"{path}: the map has no georeference (CRS); pass its corner coordinates (--corners N,W,S,E)"
            )
        else:
            transform = tuple(dataset.transform)[:6]
            problem = north_up_problem(transform)
            if problem is not None:
                raise DatasetLayoutError(f"{path}: {problem}")
            georef = Georeference(transform, dataset.crs.to_wkt())
        super().__init__(path, dataset.width, dataset.height, georef)
        # A truncated file opens (its header is intact) and fails on its missing last blocks:
        # read the last row now, before any tile is written, rather than partway through.
        self.read(Window(0, dataset.height - 1, dataset.width, 1))

    def read(self, window: Window) -> NDArray[np.uint8]:
        from rasterio.windows import Window as RasterioWindow

        bands = [1, 1, 1] if self._dataset.count == 1 else [1, 2, 3]
        try:
            block = self._dataset.read(
                bands, window=RasterioWindow(window.col, window.row, window.width, window.height)
            )
        except self._errors as error:
            raise ImageReadError(
                f"{self.path}: cannot read map pixels (rows {window.row}-{window.row + window.height - 1}; "
                f"truncated or corrupt file?): {_rasterio_message(error)}"
            ) from None
        return np.ascontiguousarray(np.transpose(block, (1, 2, 0)))

    def close(self) -> None:
        self._dataset.close()


def open_map(path: str | os.PathLike, corners: tuple[float, float, float, float] | None = None) -> MapSource:
    """Open a map for tiling: a GeoTIFF with its own georeference, or an image with corners.

    `corners` = (north, west, south, east) in WGS84 degrees of the image's outer edges.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: map file not found")
    if path.suffix.lower() in (".tif", ".tiff", ".vrt", ".jp2", ".img"):
        return _RasterioMap(path, corners)
    if corners is None:
        raise DatasetLayoutError(
            f"{path}: a plain image has no georeference; "
            "pass its corner coordinates in degrees (--corners N,W,S,E; in Python corners=(n, w, s, e))"
        )
    return _PillowMap(path, corners)


def tile_pixels(source: MapSource, size: float, unit: str) -> tuple[int, int]:
    """Tile width and height in pixels for a tile side of `size` metres or pixels."""
    check_tiling(size, None, unit)
    if unit == "px":
        return round(size), round(size)
    gsd_x, gsd_y = source.georef.ground_sample_distance_m(source.width / 2.0, source.height / 2.0)
    width, height = round(size / gsd_x), round(size / gsd_y)
    if min(width, height) < 1:
        raise ValueError(
            f"tile size {size:g} m is less than one pixel of this map ({gsd_x:.3g} x {gsd_y:.3g} m per pixel)"
        )
    return width, height


def size_problem(name: str, value: float, unit: str) -> str | None:
    """Why a tile size or stride cannot be meant, or None: it must be finite, positive, and at
    least one pixel in px (a zero stride used to mean 1 px silently: a tile per pixel)."""
    if unit not in ("m", "px"):
        return f"unit must be 'm' or 'px', got {unit!r}"
    if not math.isfinite(value) or value <= 0 or (unit == "px" and value < 1):
        bound = "at least 1 px" if unit == "px" else "a positive number of metres"
        return f"{name} must be {bound}, got {value:g} {unit}"
    return None


def check_tiling(tile_size: float, stride: float | None, unit: str) -> None:
    """ValueError naming the value when tile size or stride cannot be meant (`size_problem`)."""
    for name, value in (("tile size", tile_size), ("stride", stride)):
        problem = None if value is None else size_problem(name, value, unit)
        if problem is not None:
            raise ValueError(problem)


def iter_map_tiles(
    source: MapSource, tile_size: float, stride: float | None = None, unit: str = "m"
) -> Iterator[tuple[Window, tuple[float, ...]]]:
    """Windows of the tiling and their geometry (centre and footprint), row-major."""
    check_tiling(tile_size, stride, unit)
    tile_w, tile_h = tile_pixels(source, tile_size, unit)
    stride = tile_size / 2.0 if stride is None else stride
    stride_x = round(tile_w * stride / tile_size)
    stride_y = round(tile_h * stride / tile_size)
    if min(stride_x, stride_y) < 1:
        raise ValueError(f"stride {stride:g} {unit} is less than one pixel of this map")
    try:
        windows = plan_windows(source.width, source.height, tile_w, tile_h, stride_x, stride_y)
    except ValueError as error:
        raise DatasetLayoutError(f"{source.path}: {error}") from None
    for window in windows:
        yield window, window_geometry(source.georef, window)


def cut_map(
    map_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    tile_size: float,
    stride: float | None = None,
    unit: str = "m",
    corners: tuple[float, float, float, float] | None = None,
    tile_format: str = "png",
    resize_px: int | None = None,
    progress: bool = False,
) -> list[GalleryTile]:
    """Cut a map into tile images under `out_dir`/tiles and write `out_dir`/tiles.csv.

    Returns the tiles in the CSV's order. `stride` defaults to half the tile (50 % overlap), so a
    drone view centred anywhere is covered by some tile to within a quarter tile of its centre.
    Tile files that already exist are kept (a re-run after an interruption resumes).
    """
    from PIL import Image

    from cvd.progress import progress_bar

    if tile_format not in TILE_FORMATS:
        raise ValueError(f"tile format must be one of {TILE_FORMATS}, got {tile_format!r}")
    if resize_px is not None and resize_px < 1:
        raise ValueError(f"resize must be at least 1 px, got {resize_px}")
    check_tiling(tile_size, stride, unit)  # before the map is opened: the cheapest mistakes first
    out_dir = Path(out_dir)
    tile_dir = out_dir / "tiles"
    source = open_map(map_path, corners)
    stem = Path(map_path).stem
    tiles: list[GalleryTile] = []
    try:
        planned = list(iter_map_tiles(source, tile_size, stride, unit))
        tile_dir.mkdir(parents=True, exist_ok=True)  # nothing is written before the plan holds
        width = len(str(max(source.width, source.height)))
        for window, geometry in progress_bar(planned, desc=f"cutting {stem}", unit="tile", enabled=progress):
            tile_id = f"{stem}_r{window.row:0{width}d}_c{window.col:0{width}d}"
            path = tile_dir / f"{tile_id}.{tile_format}"
            if not path.is_file():
                image = Image.fromarray(source.read(window))
                if resize_px:
                    image = image.resize((resize_px, resize_px), Image.Resampling.BICUBIC)
                with atomic_output(path, fsync=False) as temporary:  # a lost tile is cut again
                    image.save(temporary, format="PNG" if tile_format == "png" else "JPEG", quality=95)
            tiles.append(GalleryTile(tile_id, path, *geometry))
    finally:
        source.close()
    write_tiles_csv(tiles, out_dir / "tiles.csv")
    return tiles
