"""WGS84 coordinates: great-circle distances, range checks, and pixel <-> lat/lon georeferencing.

Localization errors are reported in metres with the haversine formula on a sphere of the mean
Earth radius (IUGG R1 = 6,371,008.8 m). Against the WGS84 ellipsoid (pyproj's geodesic) this is
within 0.6 % everywhere (worst north-south at the equator), far below the size of a gallery
tile, and it needs no projection set-up, so the same number comes out of every tool that quotes
"haversine".

A `Georeference` maps pixel positions of an image to WGS84 through an affine transform into the
image's own CRS followed by pyproj, so GeoTIFFs in UTM or any other projection and plain images
with known corner coordinates (EPSG:4326) go through one code path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

EARTH_RADIUS_M = 6_371_008.8
WGS84 = "EPSG:4326"


def haversine_m(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> NDArray[np.float64]:
    """Great-circle distance in metres between points given in degrees (broadcasts like numpy)."""
    phi1, lam1, phi2, lam2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lat1, lon1, lat2, lon2))
    half_dphi = (phi2 - phi1) / 2.0
    half_dlam = (lam2 - lam1) / 2.0
    a = np.sin(half_dphi) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(half_dlam) ** 2
    # clip guards against a > 1 from rounding for antipodal points
    return 2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def latlon_problem(lat: float, lon: float) -> str | None:
    """Why (lat, lon) is not a usable WGS84 position, or None when it is.

    Returned as text so CSV readers can prefix it with the file and line at fault.
    """
    if not (np.isfinite(lat) and np.isfinite(lon)):
        return f"latitude/longitude must be finite numbers, got ({lat}, {lon})"
    if not -90.0 <= lat <= 90.0:
        return f"latitude {lat} is outside [-90, 90]"
    if not -180.0 <= lon <= 180.0:
        return f"longitude {lon} is outside [-180, 180]"
    return None


def corners_problem(north: float, west: float, south: float, east: float) -> str | None:
    """Why N, W, S, E bounds are not a WGS84 box, or None: a latitude of 95 would cut tiles
    whose centres every later step (index, localize) refuses."""
    for name, value in (("north", north), ("south", south)):
        if not math.isfinite(value) or not -90.0 <= value <= 90.0:
            return f"{name} latitude {value:g} is outside [-90, 90]"
    for name, value in (("west", west), ("east", east)):
        if not math.isfinite(value) or not -180.0 <= value <= 180.0:
            return f"{name} longitude {value:g} is outside [-180, 180]"
    if not (north > south and east > west):
        return (
            f"corner bounds need north > south and east > west, got N{north:g} W{west:g} S{south:g} E{east:g}"
        )
    return None


def weighted_mean_latlon(
    lat: ArrayLike, lon: ArrayLike, weights: ArrayLike | None = None
) -> tuple[float, float]:
    """Weighted centre of points on the sphere, correct across the antimeridian and near the poles.

    Averaging degrees directly breaks at +-180 deg longitude; averaging unit vectors does not.
    """
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    w = np.ones_like(phi) if weights is None else np.asarray(weights, dtype=np.float64)
    xyz = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)
    centre = (w[:, None] * xyz).sum(axis=0)
    x, y, z = centre / np.linalg.norm(centre)
    return float(np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))), float(np.degrees(np.arctan2(y, x)))


@dataclass(frozen=True)
class Georeference:
    """Pixel -> CRS affine transform plus the CRS, as GDAL/rasterio define them.

    `transform` is (a, b, c, d, e, f): x = a*col + b*row + c, y = d*col + e*row + f, where
    (col, row) = (0, 0) is the top-left corner of the top-left pixel (not its centre), so the
    centre of pixel (i, j) is (i + 0.5, j + 0.5).
    """

    transform: tuple[float, float, float, float, float, float]
    crs: str = WGS84

    @classmethod
    def from_corners(
        cls, width: int, height: int, north: float, west: float, south: float, east: float
    ) -> Georeference:
        """Georeference of a north-up image whose outer edges lie at the given WGS84 bounds."""
        problem = corners_problem(north, west, south, east)
        if problem is not None:
            raise ValueError(problem)
        return cls(((east - west) / width, 0.0, west, 0.0, -(north - south) / height, north), WGS84)

    @cached_property
    def _to_wgs84(self):  # pyproj Transformer, built lazily
        from pyproj import Transformer

        return Transformer.from_crs(self.crs, WGS84, always_xy=True)

    @cached_property
    def _is_wgs84(self) -> bool:
        from pyproj import CRS

        return CRS.from_user_input(self.crs).equals(CRS.from_user_input(WGS84), ignore_axis_order=True)

    def pixel_to_crs(self, col: ArrayLike, row: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(x, y) in the image's CRS of pixel positions (corner convention, fractional allowed)."""
        a, b, c, d, e, f = self.transform
        col = np.asarray(col, dtype=np.float64)
        row = np.asarray(row, dtype=np.float64)
        return a * col + b * row + c, d * col + e * row + f

    def crs_to_pixel(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Inverse of `pixel_to_crs`."""
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        if det == 0:
            raise ValueError(f"georeference transform {self.transform} is not invertible")
        dx = np.asarray(x, dtype=np.float64) - c
        dy = np.asarray(y, dtype=np.float64) - f
        return (e * dx - b * dy) / det, (-d * dx + a * dy) / det

    def pixel_to_latlon(
        self, col: ArrayLike, row: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """WGS84 (lat, lon) in degrees of pixel positions."""
        x, y = self.pixel_to_crs(col, row)
        if self._is_wgs84:
            return y, x
        lon, lat = self._to_wgs84.transform(x, y)
        return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)

    def latlon_to_pixel(
        self, lat: ArrayLike, lon: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Pixel position (col, row) of WGS84 points; inverse of `pixel_to_latlon`."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if self._is_wgs84:
            return self.crs_to_pixel(lon, lat)
        from pyproj.enums import TransformDirection

        x, y = self._to_wgs84.transform(lon, lat, direction=TransformDirection.INVERSE)
        return self.crs_to_pixel(x, y)

    def ground_sample_distance_m(self, col: float, row: float) -> tuple[float, float]:
        """Ground metres per pixel along columns and rows around a pixel position.

        Measured on the ground (haversine between neighbouring pixels), so it holds for projected
        CRSs in any unit and for plain lat/lon images, where a degree of longitude shrinks with
        latitude.
        """
        lat, lon = self.pixel_to_latlon([col, col + 1.0, col], [row, row, row + 1.0])
        along_cols = float(haversine_m(lat[0], lon[0], lat[1], lon[1]))
        along_rows = float(haversine_m(lat[0], lon[0], lat[2], lon[2]))
        return along_cols, along_rows
