"""Camera models and occlusion, checked against projections computed here from first principles.

Scenes are hand-made (flat grey ground, a red marker, optionally a tall building) and lit
neutrally, so a pixel is red exactly where the marker is visible.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cvd.data.synthetic import DroneShot, Material, OrthoCamera, Scene, drone_camera, render


def _pinhole_projection(point, shot: DroneShot, centre, ground, size, vfov_deg):
    """Independent camera model: orbit position from the shot, look-at frame, square-pixel K."""
    az = math.radians(shot.azimuth_deg)
    target = np.array([centre[0] + shot.aim[0], centre[1] + shot.aim[1], ground])
    back = shot.altitude / math.tan(math.radians(shot.pitch_deg))
    eye = target + np.array([-back * math.sin(az), -back * math.cos(az), shot.altitude])
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rel = np.asarray(point, dtype=float) - eye
    x, y, z = rel @ right, rel @ down, rel @ forward
    focal = (size / 2) / math.tan(math.radians(vfov_deg) / 2)
    return focal * x / z + size / 2, focal * y / z + size / 2


@pytest.mark.parametrize("point", [(0.0, 0.0), (23.0, -11.0), (-30.5, 17.25)])
def test_satellite_marker_lands_on_its_georeferenced_pixel(synth, point):
    raster = synth.flat_scene(half=80.0)
    synth.paint_marker(raster, point[0], point[1], radius=1.0)
    scene = Scene(raster)
    camera = OrthoCamera(centre=(2.0, -3.0), extent=100.0, width=100, height=100)  # 1 m per pixel
    image = render(camera, [(scene, scene.shade(synth.neutral_capture()))])
    col, row = synth.centroid(synth.red_mask(image))
    # north-up: column grows east, row grows south, tile centre at the image centre
    assert col == pytest.approx(point[0] - 2.0 + 50.0, abs=0.6)
    assert row == pytest.approx(-(point[1] + 3.0) + 50.0, abs=0.6)


def test_off_nadir_satellite_leans_tall_objects_away_from_the_satellite(synth):
    raster = synth.flat_scene(half=80.0)
    synth.paint_marker(raster, 10.0, 5.0, radius=1.0, height=30.0)  # a red roof 30 m up
    scene = Scene(raster)
    tilt, azimuth = 8.0, 60.0  # the satellite looks 8 degrees off nadir, towards azimuth 60
    camera = OrthoCamera(
        (0.0, 0.0), 100.0, 100, 100, reference_z=0.0, off_nadir_deg=tilt, azimuth_deg=azimuth
    )
    image = render(camera, [(scene, scene.shade(synth.neutral_capture()))])
    col, row = synth.centroid(synth.red_mask(image))
    # the ray through the roof meets the reference plane 30 tan(tilt) further along the viewing azimuth
    shift = 30.0 * math.tan(math.radians(tilt))
    x = 10.0 + shift * math.sin(math.radians(azimuth))
    y = 5.0 + shift * math.cos(math.radians(azimuth))
    assert col == pytest.approx(x + 50.0, abs=0.7)
    assert row == pytest.approx(-y + 50.0, abs=0.7)


@pytest.mark.parametrize(
    "shot",
    [
        DroneShot(0, 150.0, 0.0, 55.0, (0.0, 0.0)),
        DroneShot(1, 300.0, 137.0, 50.0, (5.0, -8.0)),
        DroneShot(2, 200.0, 250.0, 62.0, (-10.0, 3.0)),
    ],
)
def test_drone_marker_lands_where_an_independent_pinhole_projects_it(synth, shot):
    raster = synth.flat_scene(half=260.0, cell=1.0)
    point = (18.0, -12.0)
    synth.paint_marker(raster, point[0], point[1], radius=2.5)
    scene = Scene(raster)
    size, vfov = 160, 46.0
    camera = drone_camera(shot, (0.0, 0.0), 0.0, size, vfov)
    image = render(camera, [(scene, scene.shade(synth.neutral_capture()))])
    col, row = synth.centroid(synth.red_mask(image))
    expected = _pinhole_projection((*point, 0.0), shot, (0.0, 0.0), 0.0, size, vfov)
    assert col == pytest.approx(expected[0], abs=1.0)
    assert row == pytest.approx(expected[1], abs=1.0)
    # the metadata written for the image describes the same camera
    meta = camera.metadata()
    rotation = np.asarray(meta["rotation_world_to_camera"])
    rel = rotation @ (np.array([*point, 0.0]) - np.asarray(meta["position_xyz"]))
    k = meta["intrinsics"]
    assert k["fx"] * rel[0] / rel[2] + k["cx"] == pytest.approx(expected[0], abs=1e-6)
    assert k["fy"] * rel[1] / rel[2] + k["cy"] == pytest.approx(expected[1], abs=1e-6)
    assert meta["pitch_deg"] == pytest.approx(shot.pitch_deg, abs=1e-6)


def _tower(raster, facades_rgb, x, y, half, height):
    """A square building of `height` metres with a blue facade and a white roof."""
    box = raster.box(x - half, x + half, y - half, y + half)
    sj, si, xs, ys = box
    mask = np.ones((ys.shape[0], xs.shape[1]), dtype=bool)
    ident = raster.facades.add(
        cx=x, cy=y, cos=1.0, sin=0.0, half_u=half, half_v=half, base=0.0, eave=height,
        floor_height=3.0, window_spacing=3.0, window_width=0.0,
        wall_rgb=facades_rgb, window_rgb=facades_rgb,
    )  # fmt: skip
    raster.paint_solid(
        sj, si, mask, np.full(mask.shape, height, dtype=np.float32), (0.9, 0.9, 0.9), Material.ROOF, ident
    )


def test_tall_building_hides_what_lies_behind_it_in_an_oblique_view(synth):
    """Camera south of a 60 m tower looking north: a marker just north of it is hidden, and the
    pixel where the marker would project shows the tower's facade instead."""
    shot = DroneShot(0, 150.0, 0.0, 45.0, (0.0, 0.0))  # looking north, 45 degrees down
    size, vfov = 128, 46.0
    marker = (0.0, 22.0)
    blue = (0.1, 0.2, 0.9)

    open_ground = synth.flat_scene(half=200.0, cell=0.5)
    synth.paint_marker(open_ground, *marker, radius=5.0)
    scene = Scene(open_ground)
    camera = drone_camera(shot, (0.0, 0.0), 0.0, size, vfov)
    visible = render(camera, [(scene, scene.shade(synth.neutral_capture()))])
    assert synth.red_mask(visible).sum() > 10  # control: seen without the tower

    hidden_ground = synth.flat_scene(half=200.0, cell=0.5)
    synth.paint_marker(hidden_ground, *marker, radius=5.0)
    _tower(hidden_ground, blue, 0.0, 5.0, half=6.0, height=60.0)  # 60 m tower between camera and marker
    scene = Scene(hidden_ground)
    occluded = render(camera, [(scene, scene.shade(synth.neutral_capture()))])
    assert synth.red_mask(occluded).sum() == 0
    col, row = _pinhole_projection((*marker, 0.0), shot, (0.0, 0.0), 0.0, size, vfov)
    pixel = occluded[int(row), int(col)].astype(int)
    assert pixel[2] > pixel[0] + 60 and pixel[2] > pixel[1] + 40  # blue facade in front


def test_facade_faces_the_camera_and_roof_leans_towards_the_horizon(synth):
    """The tower's south facade is visible from the south; its roof projects above its base."""
    shot = DroneShot(0, 150.0, 0.0, 45.0, (0.0, 0.0))
    size, vfov = 128, 46.0
    raster = synth.flat_scene(half=200.0, cell=0.5)
    _tower(raster, (0.1, 0.2, 0.9), 0.0, 0.0, half=6.0, height=40.0)
    scene = Scene(raster)
    camera = drone_camera(shot, (0.0, 0.0), 0.0, size, vfov)
    image = render(camera, [(scene, scene.shade(synth.neutral_capture()))])
    base = _pinhole_projection((0.0, -6.0, 5.0), shot, (0.0, 0.0), 0.0, size, vfov)  # low on the south wall
    roof = _pinhole_projection((0.0, 0.0, 40.0), shot, (0.0, 0.0), 0.0, size, vfov)  # middle of the roof
    wall_pixel = image[int(base[1]), int(base[0])].astype(int)
    roof_pixel = image[int(roof[1]), int(roof[0])].astype(int)
    assert wall_pixel[2] > wall_pixel[0] + 60  # blue facade
    assert min(roof_pixel) > 180  # white roof
    assert roof[1] < base[1] - 10  # the roof appears higher up in the image than the wall's foot


def test_views_rendered_together_equal_views_rendered_alone(synth):
    """Batching the rays of several cameras is only a speed-up: every pixel stays the same."""
    from cvd.data.synthetic.render import render_views

    raster = synth.flat_scene(half=150.0, cell=0.5)
    _tower(raster, (0.1, 0.2, 0.9), 10.0, -5.0, half=8.0, height=35.0)
    synth.paint_marker(raster, -20.0, 30.0, radius=4.0)
    scene = Scene(raster)
    layers = [(scene, scene.shade(synth.neutral_capture(sun_elevation=40.0, sun_azimuth=200.0)))]
    cameras = [
        drone_camera(DroneShot(k, altitude, azimuth, 55.0, (0.0, 0.0)), (0.0, 0.0), 0.0, 48, 42.0)
        for k, (altitude, azimuth) in enumerate(((150.0, 10.0), (250.0, 130.0), (300.0, 260.0)))
    ]
    together = render_views(cameras, layers)
    for camera, image in zip(cameras, together):
        assert np.array_equal(image, render(camera, layers))
