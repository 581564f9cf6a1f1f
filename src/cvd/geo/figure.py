"""One PNG per query: the query beside its top-k tiles, and a map of where those tiles lie.

The map is drawn in local metres east/north of the estimate (an equirectangular approximation,
exact enough at the scale of a few tiles), so distances read directly off the axes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from cvd.earth import EARTH_RADIUS_M
from cvd.geo.gallery_index import GalleryIndex
from cvd.geo.localization import QueryResult


def local_metres(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> tuple[np.ndarray, np.ndarray]:
    """(east, north) metres of points from a reference point (small-area approximation)."""
    east = np.radians(np.asarray(lon) - lon0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    north = np.radians(np.asarray(lat) - lat0) * EARTH_RADIUS_M
    return east, north


def save_result_png(result: QueryResult, index: GalleryIndex, k: int, out_path: str | os.PathLike) -> Path:
    """Draw one answered query (see module docstring); returns the written path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from cvd.data.images import load_rgb
    from cvd.errors import ImageReadError

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = result.pool_rows[:k]
    columns = len(rows) + 2
    figure = plt.figure(figsize=(2.4 * columns, 3.0))
    axis = figure.add_subplot(1, columns, 1)
    axis.imshow(load_rgb(result.query))  # as localization decoded it (16-bit, float scaled)
    axis.set_title("query", fontsize=9)
    axis.axis("off")
    distances = result.pool_distances_m(index) if result.gt is not None else None
    for position, row in enumerate(rows):
        tile = index.tiles[row]
        axis = figure.add_subplot(1, columns, position + 2)
        try:
            axis.imshow(load_rgb(tile.path))
        except ImageReadError:
            axis.text(0.5, 0.5, "tile\nunreadable", ha="center", va="center", transform=axis.transAxes)
        title = f"#{position + 1} {result.pool_scores[position]:.3f}"
        if distances is not None:
            title += f"\n{distances[position]:.0f} m off"
        axis.set_title(title, fontsize=8)
        axis.axis("off")
    axis = figure.add_subplot(1, columns, columns)
    estimate = result.estimate
    east, north = local_metres(index.lat[rows], index.lon[rows], estimate.lat, estimate.lon)
    axis.scatter(east, north, c=np.arange(len(rows)), cmap="viridis_r", s=40, label="top-k tiles")
    for rank, (x, y) in enumerate(zip(east, north), start=1):
        axis.annotate(str(rank), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axis.scatter([0.0], [0.0], marker="*", s=120, c="red", label="estimate")
    if result.gt is not None:
        gx, gy = local_metres(np.array([result.gt[0]]), np.array([result.gt[1]]), estimate.lat, estimate.lon)
        axis.scatter(gx, gy, marker="x", s=80, c="black", label="truth")
    axis.set_xlabel("east (m)", fontsize=8)
    axis.set_ylabel("north (m)", fontsize=8)
    axis.set_aspect("equal", adjustable="datalim")
    axis.tick_params(labelsize=7)
    axis.legend(fontsize=6, loc="best")
    axis.set_title(f"conf {estimate.confidence:.2f}", fontsize=9)
    figure.tight_layout()
    figure.savefig(out_path, dpi=80)
    plt.close(figure)
    return out_path
