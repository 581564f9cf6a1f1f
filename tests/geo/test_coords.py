"""Distances and georeferencing against hand-worked values and independent libraries (pyproj)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Geod

from cvd.earth import EARTH_RADIUS_M, haversine_m, latlon_problem, unit_vectors, weighted_mean_latlon
from cvd.geo.coords import Georeference

ONE_DEGREE_M = EARTH_RADIUS_M * math.pi / 180.0  # 111,195.08 m on the mean-radius sphere


def test_one_degree_of_latitude_and_of_longitude_at_the_equator():
    assert haversine_m(10.0, 5.0, 11.0, 5.0) == pytest.approx(ONE_DEGREE_M, rel=1e-12)
    assert haversine_m(0.0, 0.0, 0.0, 1.0) == pytest.approx(ONE_DEGREE_M, rel=1e-12)
    assert pytest.approx(111_195.08, abs=0.01) == ONE_DEGREE_M


def test_longitude_degree_shrinks_with_latitude_as_spherical_trigonometry_says():
    # two points on the 60th parallel, 1 degree apart: central angle 2 asin(cos 60 sin 0.5 deg)
    expected = 2 * EARTH_RADIUS_M * math.asin(math.cos(math.radians(60)) * math.sin(math.radians(0.5)))
    assert haversine_m(60.0, 10.0, 60.0, 11.0) == pytest.approx(expected, rel=1e-12)


def test_published_city_pair_paris_london():
    # Paris (48.8566 N, 2.3522 E) to London (51.5074 N, 0.1278 W): 343.5 km great-circle, the
    # figure distance calculators publish for these city-centre coordinates
    assert haversine_m(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343_500, abs=500)


def test_antipodes_and_zero():
    assert haversine_m(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * EARTH_RADIUS_M)
    assert haversine_m(45.0, 45.0, 45.0, 45.0) == 0.0


def test_haversine_is_within_0_6_percent_of_the_wgs84_geodesic():
    rng = np.random.default_rng(1)
    lat1, lat2 = rng.uniform(-80, 80, (2, 200))
    lon1, lon2 = rng.uniform(-180, 180, (2, 200))
    _, _, geodesic = Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)
    ours = haversine_m(lat1, lon1, lat2, lon2)
    assert np.all(np.abs(ours - geodesic) / geodesic < 0.006)


def test_latlon_problem_names_the_bad_value():
    assert latlon_problem(45.0, 170.0) is None
    assert "latitude 91.0" in latlon_problem(91.0, 0.0)
    assert "longitude -180.5" in latlon_problem(0.0, -180.5)
    assert "finite" in latlon_problem(float("nan"), 0.0)


def test_weighted_mean_across_the_antimeridian():
    lat, lon = weighted_mean_latlon([10.0, 10.0], [179.0, -179.0])
    assert abs(lon) == pytest.approx(180.0, abs=1e-9)
    assert lat == pytest.approx(10.0, abs=0.01)  # the mid-chord dips toward the pole by ~ 1e-3 deg


def test_weighted_mean_along_the_equator_matches_the_unit_vector_formula():
    lat, lon = weighted_mean_latlon([0.0, 0.0], [0.0, 10.0], [3.0, 1.0])
    ten = math.radians(10)
    assert lat == pytest.approx(0.0, abs=1e-12)
    assert lon == pytest.approx(math.degrees(math.atan2(math.sin(ten), 3 + math.cos(ten))), abs=1e-12)


def test_corner_georeference_maps_edges_and_centre():
    georef = Georeference.from_corners(200, 100, north=47.5, west=8.0, south=47.0, east=9.0)
    lat, lon = georef.pixel_to_latlon([0, 200, 100], [0, 100, 50])
    np.testing.assert_allclose(lat, [47.5, 47.0, 47.25])
    np.testing.assert_allclose(lon, [8.0, 9.0, 8.5])
    col, row = georef.latlon_to_pixel(47.1, 8.3)
    assert (float(col), float(row)) == pytest.approx((60.0, 80.0))


def test_utm_georeference_known_point_and_round_trip():
    # UTM zone 32N: easting 500,000 m on the equator is the central meridian, 9 deg E
    georef = Georeference((10.0, 0.0, 499_000.0, 0.0, -10.0, 1_000.0), "EPSG:32632")
    lat, lon = georef.pixel_to_latlon(100.0, 100.0)  # x = 500,000, y = 0
    assert float(lat) == pytest.approx(0.0, abs=1e-9)
    assert float(lon) == pytest.approx(9.0, abs=1e-9)
    cols, rows = np.array([3.25, 70.5, 199.0]), np.array([5.5, 0.0, 150.75])
    back = georef.latlon_to_pixel(*georef.pixel_to_latlon(cols, rows))
    np.testing.assert_allclose(back, [cols, rows], atol=1e-6)
    gsd = georef.ground_sample_distance_m(100.0, 100.0)
    # 10 grid metres are 10 / k0 ground metres on the central meridian (k0 = 0.9996); haversine's
    # sphere is within 0.6 % of the ellipsoid (worst north-south at the equator)
    assert gsd == pytest.approx((10.0 / 0.9996, 10.0 / 0.9996), rel=6e-3)


def test_ground_sample_distance_of_a_lat_lon_image():
    georef = Georeference.from_corners(1000, 1000, north=0.005, west=0.0, south=-0.005, east=0.01)
    gsd_x, gsd_y = georef.ground_sample_distance_m(500.0, 500.0)
    assert gsd_x == pytest.approx(ONE_DEGREE_M * 1e-5, rel=1e-6)
    assert gsd_y == pytest.approx(ONE_DEGREE_M * 1e-5, rel=1e-6)


def test_unit_vectors_by_hand():
    points = unit_vectors([0.0, 90.0, 0.0, 0.0, -90.0], [0.0, 33.0, 90.0, 180.0, 0.0])
    expected = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [-1, 0, 0], [0, 0, -1]], dtype=np.float64)
    np.testing.assert_allclose(points, expected, atol=1e-15)
    # 60 deg N on the prime meridian: (cos 60, 0, sin 60)
    np.testing.assert_allclose(unit_vectors(60.0, 0.0), [0.5, 0.0, math.sqrt(3) / 2], atol=1e-15)
