"""World metres <-> WGS84 latitude/longitude for the synthetic world.

The world is a flat east/north plane in metres. We map it to the globe with a transverse
Mercator projection centred on the configured origin (pyproj): conformal, so tiles stay
north-up and square, and within a few kilometres of the origin its scale error is below
1e-6, i.e. the plane *is* a local tangent plane for our purposes.
"""

from __future__ import annotations

import numpy as np
from pyproj import CRS, Transformer


class GeoReference:
    """Converts world (x east, y north) metres to (lat, lon) degrees and back."""

    def __init__(self, origin_lat: float, origin_lon: float) -> None:
        self.origin_lat = float(origin_lat)
        self.origin_lon = float(origin_lon)
        self.proj4 = (
            f"+proj=tmerc +lat_0={self.origin_lat} +lon_0={self.origin_lon} +k=1 +x_0=0 +y_0=0 "
            "+ellps=WGS84 +units=m +no_defs"
        )
        local = CRS.from_proj4(self.proj4)
        self._to_wgs84 = Transformer.from_crs(local, "EPSG:4326", always_xy=True)
        self._from_wgs84 = Transformer.from_crs("EPSG:4326", local, always_xy=True)

    def to_latlon(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) in degrees, float64, for world metres."""
        lon, lat = self._to_wgs84.transform(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)

    def to_world(self, lat: np.ndarray | float, lon: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) metres for (lat, lon) degrees."""
        x, y = self._from_wgs84.transform(
            np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        )
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
