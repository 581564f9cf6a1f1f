"""Helpers of the dataset tests: the fake-tree writers of tests/data/<benchmark>/ and references."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def load_writer(benchmark: str) -> ModuleType:
    """Import tests/data/<benchmark>/write_tree.py (test folders are not packages)."""
    path = DATA_DIR / benchmark / "write_tree.py"
    spec = importlib.util.spec_from_file_location(f"fake_tree_{benchmark}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def writers() -> dict[str, ModuleType]:
    return {name: load_writer(name) for name in ("university1652", "sues200", "cvusa", "cvact")}


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres (the textbook haversine formula, mean Earth radius)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


# WGS84 and UTM constants for the independent reference below.
_A = 6_378_137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
_EP2 = _E2 / (1 - _E2)
_K0 = 0.9996


def meridian_arc(lat_deg: float) -> float:
    """Meridian arc length from the equator (Snyder, Map Projections: A Working Manual, eq. 3-21)."""
    phi = math.radians(lat_deg)
    e2, e4, e6 = _E2, _E2**2, _E2**3
    return _A * (
        (1 - e2 / 4 - 3 * e4 / 64 - 5 * e6 / 256) * phi
        - (3 * e2 / 8 + 3 * e4 / 32 + 45 * e6 / 1024) * math.sin(2 * phi)
        + (15 * e4 / 256 + 45 * e6 / 1024) * math.sin(4 * phi)
        - (35 * e6 / 3072) * math.sin(6 * phi)
    )


def utm_south_to_latlon(easting: float, northing: float, zone: int) -> tuple[float, float]:
    """Inverse transverse Mercator by Snyder's series (eqs. 8-18 to 8-25): a reference for pyproj."""
    x = easting - 500_000.0
    y = northing - 10_000_000.0
    mu = (y / _K0) / (_A * (1 - _E2 / 4 - 3 * _E2**2 / 64 - 5 * _E2**3 / 256))
    e1 = (1 - math.sqrt(1 - _E2)) / (1 + math.sqrt(1 - _E2))
    phi1 = (
        mu
        + (3 * e1 / 2 - 27 * e1**3 / 32) * math.sin(2 * mu)
        + (21 * e1**2 / 16 - 55 * e1**4 / 32) * math.sin(4 * mu)
        + (151 * e1**3 / 96) * math.sin(6 * mu)
        + (1097 * e1**4 / 512) * math.sin(8 * mu)
    )
    c1 = _EP2 * math.cos(phi1) ** 2
    t1 = math.tan(phi1) ** 2
    n1 = _A / math.sqrt(1 - _E2 * math.sin(phi1) ** 2)
    r1 = _A * (1 - _E2) / (1 - _E2 * math.sin(phi1) ** 2) ** 1.5
    d = x / (n1 * _K0)
    phi = phi1 - (n1 * math.tan(phi1) / r1) * (
        d**2 / 2
        - (5 + 3 * t1 + 10 * c1 - 4 * c1**2 - 9 * _EP2) * d**4 / 24
        + (61 + 90 * t1 + 298 * c1 + 45 * t1**2 - 252 * _EP2 - 3 * c1**2) * d**6 / 720
    )
    lam = (
        d
        - (1 + 2 * t1 + c1) * d**3 / 6
        + (5 - 2 * c1 + 28 * t1 - 3 * c1**2 + 8 * _EP2 + 24 * t1**2) * d**5 / 120
    ) / math.cos(phi1)
    return math.degrees(phi), 6 * zone - 183 + math.degrees(lam)


@pytest.fixture(scope="session")
def refs() -> SimpleNamespace:
    """Independent reference formulas, as a fixture (test modules cannot import conftest)."""
    return SimpleNamespace(
        haversine_m=haversine_m, meridian_arc=meridian_arc, utm_south_to_latlon=utm_south_to_latlon
    )
