"""The Earth as the toolkit measures it: a sphere of the mean radius, positions in WGS84 degrees.

Localization errors are reported in metres with the haversine formula on a sphere of the mean
Earth radius (IUGG R1 = 6,371,008.8 m). Against the WGS84 ellipsoid (pyproj's geodesic) this is
within 0.6 % everywhere (worst north-south at the equator), far below the size of a gallery
tile, and it needs no projection set-up, so the same number comes out of every tool that quotes
"haversine".

This is the lowest layer that needs coordinates: datasets (GPS columns, neighbour sampling) and
the localization tool (`cvd.geo`) both build on it, so neither imports the other for them.
Georeferencing (pixels <-> lat/lon through a CRS) stays in `cvd.geo.coords`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

EARTH_RADIUS_M = 6_371_008.8


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
    xyz = unit_vectors(lat, lon)
    w = np.ones(xyz.shape[:-1]) if weights is None else np.asarray(weights, dtype=np.float64)
    centre = (w[:, None] * xyz).sum(axis=0)
    x, y, z = centre / np.linalg.norm(centre)
    return float(np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))), float(np.degrees(np.arctan2(y, x)))


def unit_vectors(lat: ArrayLike, lon: ArrayLike) -> NDArray[np.float64]:
    """Degrees -> points on the unit sphere (shape (..., 3)): nearest neighbours and means of
    positions are then plain Euclidean operations, correct across the antimeridian and the poles."""
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)
