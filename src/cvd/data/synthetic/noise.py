"""Deterministic noise and per-object random streams, keyed by world position and seed.

The world is generated window by window; every value must therefore be a pure function of
(seed, world coordinates) so that overlapping windows agree cell for cell. Hashing integer
lattice coordinates gives that without any global state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T", float, np.ndarray)

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: turns nearby integers into unrelated 64-bit values."""
    z = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z & _MASK64


def hash_uniform(ix: np.ndarray, iy: np.ndarray, seed: int, salt: int = 0) -> np.ndarray:
    """Uniform [0, 1) value per integer lattice point, the same in every window."""
    with np.errstate(over="ignore"):
        key = (
            np.asarray(ix, dtype=np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            ^ np.asarray(iy, dtype=np.int64).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
            ^ np.uint64((seed * 0x165667B19E3779F9 + salt * 0x27D4EB2F165667C5) & 0xFFFFFFFFFFFFFFFF)
        )
    return (_mix64(key) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def value_noise(x: np.ndarray, y: np.ndarray, scale: float, seed: int, salt: int = 0) -> np.ndarray:
    """Smooth noise in [0, 1) with features of about `scale` metres (smoothstep-interpolated lattice)."""
    gx = np.asarray(x, dtype=np.float64) / scale
    gy = np.asarray(y, dtype=np.float64) / scale
    x0 = np.floor(gx)
    y0 = np.floor(gy)
    fx = gx - x0
    fy = gy - y0
    sx = fx * fx * (3.0 - 2.0 * fx)
    sy = fy * fy * (3.0 - 2.0 * fy)
    ix = x0.astype(np.int64)
    iy = y0.astype(np.int64)
    v00 = hash_uniform(ix, iy, seed, salt)
    v10 = hash_uniform(ix + 1, iy, seed, salt)
    v01 = hash_uniform(ix, iy + 1, seed, salt)
    v11 = hash_uniform(ix + 1, iy + 1, seed, salt)
    top = v00 + (v10 - v00) * sx
    bottom = v01 + (v11 - v01) * sx
    return (top + (bottom - top) * sy).astype(np.float32)


def fractal_sum(noise: Callable[[float, int], T], scale: float, salt: int, octaves: int) -> T:
    """fBm over any one-octave noise `noise(scale, salt)`: the one place the octave schedule lives.

    Octave k has half the feature size and half the weight of octave k - 1 and its own salt; the
    sum is normalised by the weights, so the result stays in the noise's [0, 1) range. The array,
    grid and scalar fBm below differ only in how one octave is evaluated.
    """
    total: Any = 0.0
    amplitude = 1.0
    norm = 0.0
    for octave in range(octaves):
        total = total + amplitude * noise(scale / (2.0**octave), salt * 31 + octave)
        norm += amplitude
        amplitude *= 0.5
    return total / norm


def fbm(x: np.ndarray, y: np.ndarray, scale: float, seed: int, salt: int = 0, octaves: int = 3) -> np.ndarray:
    """Fractal sum of value noise, normalised to [0, 1): natural-looking variation at several scales."""
    return fractal_sum(lambda s, o_salt: value_noise(x, y, s, seed, o_salt), scale, salt, octaves)


def grid_noise(xs: np.ndarray, ys: np.ndarray, scale: float, seed: int, salt: int) -> np.ndarray:
    """Value noise on an axis-aligned grid, interpolated separably (much cheaper than per-cell hashing)."""
    gx = xs.ravel() / scale
    gy = ys.ravel() / scale
    lx0 = int(np.floor(gx.min()))
    ly0 = int(np.floor(gy.min()))
    lx = np.arange(lx0, int(np.floor(gx.max())) + 2)
    ly = np.arange(ly0, int(np.floor(gy.max())) + 2)
    lattice = hash_uniform(lx[None, :], ly[:, None], seed, salt).astype(np.float32)
    ix = np.floor(gx).astype(np.int64) - lx0
    iy = np.floor(gy).astype(np.int64) - ly0
    fx = gx - np.floor(gx)
    fy = gy - np.floor(gy)
    sx = (fx * fx * (3 - 2 * fx)).astype(np.float32)
    sy = (fy * fy * (3 - 2 * fy)).astype(np.float32)
    along_x = lattice[:, ix] * (1 - sx) + lattice[:, ix + 1] * sx
    return along_x[iy, :] * (1 - sy)[:, None] + along_x[iy + 1, :] * sy[:, None]


def grid_fbm(xs: np.ndarray, ys: np.ndarray, scale: float, seed: int, salt: int, octaves: int) -> np.ndarray:
    """`fbm` on a grid (same values), through the separable interpolation of `grid_noise`."""
    return fractal_sum(lambda s, o_salt: grid_noise(xs, ys, s, seed, o_salt), scale, salt, octaves)


def object_rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent random stream per world object (block, location, capture), reproducible by key."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, *[k & 0xFFFFFFFF for k in keys]]))


_M64 = 0xFFFFFFFFFFFFFFFF


def hash_uniform_scalar(ix: int, iy: int, seed: int, salt: int = 0) -> float:
    """`hash_uniform` for one lattice point in plain Python (30x faster than numpy for scalars)."""
    z = ((ix * 0x9E3779B97F4A7C15) & _M64) ^ ((iy * 0xC2B2AE3D27D4EB4F) & _M64)
    z ^= (seed * 0x165667B19E3779F9 + salt * 0x27D4EB2F165667C5) & _M64
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & _M64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & _M64
    z ^= z >> 31
    return (z >> 11) * (1.0 / 9007199254740992.0)


def value_noise_scalar(x: float, y: float, scale: float, seed: int, salt: int = 0) -> float:
    """`value_noise` at one point in plain Python (numpy's per-call cost dominates for scalars)."""
    gx = x / scale
    gy = y / scale
    x0 = math.floor(gx)
    y0 = math.floor(gy)
    fx = gx - x0
    fy = gy - y0
    sx = fx * fx * (3.0 - 2.0 * fx)
    sy = fy * fy * (3.0 - 2.0 * fy)
    v00 = hash_uniform_scalar(x0, y0, seed, salt)
    v10 = hash_uniform_scalar(x0 + 1, y0, seed, salt)
    v01 = hash_uniform_scalar(x0, y0 + 1, seed, salt)
    v11 = hash_uniform_scalar(x0 + 1, y0 + 1, seed, salt)
    top = v00 + (v10 - v00) * sx
    bottom = v01 + (v11 - v01) * sx
    return top + (bottom - top) * sy


def fbm_scalar(x: float, y: float, scale: float, seed: int, salt: int = 0, octaves: int = 3) -> float:
    """`fbm` at one point, for per-object lookups (zoning, ground height under a building)."""
    return fractal_sum(lambda s, o_salt: value_noise_scalar(x, y, s, seed, o_salt), scale, salt, octaves)
