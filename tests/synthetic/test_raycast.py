"""The height-field ray caster and the shadow sweep against brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cvd.data.synthetic.lighting import shadow_heights
from cvd.data.synthetic.raycast import HeightField


def _brute_force_first_hit(
    height: np.ndarray, cell: float, origin: np.ndarray, direction: np.ndarray, t_max: float
):
    """March in 1 cm steps: the first sample below its cell's top is the hit (or None).

    The march stops where the ray sinks below the lowest cell (it cannot hit anything after)."""
    ny, nx = height.shape
    ts = np.arange(0.0, t_max, 0.01)
    ts = ts[origin[2] + ts * direction[2] >= height.min()]
    points = origin[None, :] + ts[:, None] * direction[None, :]
    i = np.floor(points[:, 0] / cell).astype(int)
    j = np.floor(points[:, 1] / cell).astype(int)
    inside = (i >= 0) & (i < nx) & (j >= 0) & (j < ny)
    below = np.zeros_like(inside)
    below[inside] = points[inside, 2] < height[j[inside], i[inside]]
    hits = np.nonzero(below)[0]
    return None if hits.size == 0 else ts[hits[0]]


def test_first_hits_match_a_brute_force_march():
    rng = np.random.default_rng(3)
    cell = 0.5
    height = rng.uniform(0.0, 1.0, size=(48, 64)).astype(np.float32)
    for _ in range(12):  # a few boxes (buildings) and a thin pole
        j, i = rng.integers(0, 40), rng.integers(0, 56)
        height[j : j + rng.integers(2, 8), i : i + rng.integers(2, 8)] = rng.uniform(3, 12)
    field = HeightField(torch.from_numpy(height), 0.0, 0.0, cell, block=4)
    count = 300
    origins = np.stack(
        [rng.uniform(0, 32, count), rng.uniform(0, 24, count), rng.uniform(8, 20, count)], axis=1
    )
    azimuth = rng.uniform(0, 2 * math.pi, count)
    dip = rng.uniform(math.radians(10), math.radians(80), count)
    directions = np.stack(
        [np.cos(dip) * np.sin(azimuth), np.cos(dip) * np.cos(azimuth), -np.sin(dip)], axis=1
    )
    hits = field.cast(
        torch.tensor(origins, dtype=torch.float32), torch.tensor(directions, dtype=torch.float32)
    )
    exact = grazes = 0
    for k in range(count):
        reference = _brute_force_first_hit(height, cell, origins[k], directions[k], 120.0)
        if reference is None:
            assert not bool(hits.hit[k]), f"ray {k}: hit where the reference sees none"
            exact += 1
            continue
        if not bool(hits.hit[k]):
            # a ray that only grazes a cell corner and then leaves the field can be missed
            grazes += 1
            continue
        error = float(hits.t[k]) - reference
        # sampling at one-cell steps may step over the corner of a cell that the ray only grazes:
        # the hit then comes late (on a following cell), never early
        one_cell = cell / max(math.hypot(directions[k, 0], directions[k, 1]), 1e-6)
        assert -0.05 <= error <= 2 * one_cell + 0.05, f"ray {k}: t {float(hits.t[k])} vs {reference}"
        exact += abs(error) < 0.05
    assert exact >= 0.9 * count
    assert grazes <= 0.01 * count


def test_wall_hits_report_the_exact_face_and_height():
    """A ray towards a 10 m block from the west hits its west face at the height it predicts."""
    height = np.zeros((40, 40), dtype=np.float32)
    height[10:30, 20:30] = 10.0  # block spans x in [10, 15) m at 0.5 m cells
    field = HeightField(torch.from_numpy(height), 0.0, 0.0, 0.5)
    origin = torch.tensor([[2.0, 10.0, 8.0]])
    direction = torch.tensor([[math.cos(math.radians(10)), 0.0, -math.sin(math.radians(10))]])
    hits = field.cast(origin, direction)
    assert bool(hits.hit[0]) and bool(hits.wall[0])
    expected_z = 8.0 - (10.0 - 2.0) * math.tan(math.radians(10))
    assert float(hits.point[0, 0]) == pytest.approx(10.0, abs=1e-4)
    assert float(hits.point[0, 2]) == pytest.approx(expected_z, abs=1e-3)
    assert hits.wall_normal[0].tolist() == [-1.0, 0.0]


def test_shadow_heights_follow_the_sun_geometry():
    """Sun in the south at 45 degrees, a 10 m wall: the shadow height north of it drops 1 m per metre."""
    cell = 0.5
    height = np.zeros((200, 60), dtype=np.float32)
    height[40:44, :] = 10.0  # an east-west wall, y in [20, 22) m
    sun = np.array([0.0, -math.cos(math.radians(45)), math.sin(math.radians(45))])  # towards the south
    shadow = shadow_heights(torch.from_numpy(height), cell, sun).numpy()
    for y in (23.0, 25.0, 27.0, 30.0):  # metres north of the wall's north face (y = 22)
        row = int(y / cell)
        centre = (row + 0.5) * cell
        # the wall's northmost cells (centre 21.75 m) cast the highest shadow: 10 - distance * tan 45
        assert shadow[row, 30] == pytest.approx(10.0 - (centre - 21.75), abs=0.3)
    # far north of the wall only the neighbouring ground counts: 0 - 0.5 m * tan 45
    assert shadow[int(40.0 / cell), 30] == pytest.approx(-0.5, abs=0.05)
    assert np.isneginf(shadow[20, 30]) or shadow[20, 30] < 0  # south of the wall: nothing towards the sun
