"""Pixel <-> lat/lon georeferencing. Distances and range checks on the sphere: `cvd.earth`.

A `Georeference` maps pixel positions of an image to WGS84 through an affine transform into the
image's own CRS followed by pyproj, so GeoTIFFs in UTM or any other projection and plain images
with known corner coordinates (EPSG:4326) go through one code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cvd.earth import corners_problem, haversine_m

WGS84 = "EPSG:4326"


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
