"""Where each rendered image goes on disk: the real benchmarks' trees, file for file.

University-1652, SUES-200, CVUSA and CVACT each get the folder names, file names and split files
of the real download (shared/reference/benchmarks.md), so that the real loaders in `cvd.data`
read a synthetic dataset with no special case.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from cvd.data.synthetic.location import LocationSpec

U1652_DISTRACTOR_RATIO = 250 / 701
"""University-1652 has 250 distractor buildings for 701 test buildings."""
SUES_TRAIN_FRACTION = 0.6
"""SUES-200 trains on 120 of 200 locations."""
CVUSA_TRAIN_FRACTION = 35532 / (35532 + 8884)
PANORAMA_LAYOUTS = ("cvusa", "cvact")
"""Layouts of street panoramas paired with a satellite tile centred on the camera."""
CVACT_ORIGIN = (-35.2809, 149.1300)
"""Canberra: CVACT's UTM coordinates (zone 55 south) are only meaningful near it."""
CVACT_UTM_CRS = "EPSG:32755"


def location_name(layout: str, number: int) -> str:
    """On-disk id: 4 digits for University-1652 / SUES-200 (e.g. 0736), 7 for CVUSA (0000123), and a
    22-character pano id for CVACT (its ids are Street View's, e.g. ``synthPano0000000000123``)."""
    if layout == "cvact":
        return f"synthPano{number:013d}"
    return f"{number:07d}" if layout == "cvusa" else f"{number:04d}"


def image_targets(layout: str, spec: LocationSpec, key: str, sues_layout: str = "both") -> list[str]:
    """Relative paths (one or more) an image `key` of location `spec` is written to."""
    name = spec.name
    kind, _, number = key.partition("/")
    n = int(number) if number else 0
    if layout == "university1652":
        role = spec.role
        if kind == "satellite":
            paths = []
            if role == "train":
                paths.append(f"train/satellite/{name}/{name}.jpg")
            else:
                paths.append(f"test/gallery_satellite/{name}/{name}.jpg")
                if role == "test":
                    paths.append(f"test/query_satellite/{name}/{name}.jpg")
            return paths
        if kind == "drone":
            file = f"image-{n + 1:02d}.jpeg"
            if role == "train":
                return [f"train/drone/{name}/{file}"]
            paths = [f"test/gallery_drone/{name}/{file}"]
            if role == "test":
                paths.insert(0, f"test/query_drone/{name}/{file}")
            return paths
        if kind == "street":
            file = f"image-{n + 1:02d}.jpg"
            if role == "train":
                return [f"train/street/{name}/{file}"]
            paths = [f"test/gallery_street/{name}/{file}"]
            if role == "test":
                paths.insert(0, f"test/query_street/{name}/{file}")
            return paths
        return []
    if layout == "sues200":
        paths = []
        raw = sues_layout in ("raw", "both")
        split = sues_layout in ("split", "both")
        if kind == "satellite":
            if raw:
                paths.append(f"satellite-view/{name}/0.png")
            if split:
                for altitude in spec_altitudes(spec):
                    if spec.role == "train":
                        paths.append(f"Training/{altitude}/satellite/{name}/0.png")
                    else:
                        paths.append(f"Testing/{altitude}/query_satellite/{name}/0.png")
                    paths.append(f"Testing/{altitude}/gallery_satellite/{name}/0.png")
            return paths
        if kind == "drone":
            shot = spec.drone[n]
            altitude = round(shot.altitude)
            file = f"{shot.index}.jpg"
            if raw:
                paths.append(f"drone_view_512/{name}/{altitude}/{file}")
            if split:
                if spec.role == "train":
                    paths.append(f"Training/{altitude}/drone/{name}/{file}")
                else:
                    paths.append(f"Testing/{altitude}/query_drone/{name}/{file}")
                paths.append(f"Testing/{altitude}/gallery_drone/{name}/{file}")
            return paths
        return []
    if layout == "cvusa":
        if kind == "satellite":
            return [f"bingmap/19/{name}.jpg"]
        if kind == "panorama":
            return [f"streetview/panos/{name}.jpg"]
        return []
    if layout == "cvact":
        if kind == "satellite":
            return [f"ANU_data_small/satview_polish/{name}_satView_polish.jpg"]
        if kind == "panorama":
            return [f"ANU_data_small/streetview/{name}_grdView.jpg"]
        return []
    raise ValueError(f"unknown layout {layout!r}")


def spec_altitudes(spec: LocationSpec) -> list[int]:
    return sorted({round(shot.altitude) for shot in spec.drone})


def encode(image: np.ndarray, suffix: str, jpeg_quality: int) -> bytes:
    """Image bytes in the benchmark's format (JPEG for photos, PNG for SUES-200 satellites)."""
    buffer = io.BytesIO()
    pil = Image.fromarray(image)
    if suffix in (".jpg", ".jpeg"):
        pil.save(buffer, format="JPEG", quality=jpeg_quality, subsampling=0, optimize=False)
    else:
        pil.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def write_files(root: Path, relative_paths: Iterable[str], data: bytes) -> None:
    """Write one image to its first path; further paths are hard links (or copies) of it."""
    first: Path | None = None
    for relative in relative_paths:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        if first is None:
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            first = path
            continue
        try:
            os.link(first, path)
        except OSError:
            path.write_bytes(data)


def write_cvusa_splits(root: Path, specs: list[LocationSpec], latlon: dict[str, tuple[float, float]]) -> None:
    """splits/train-19zl.csv and val-19zl.csv (no header) and split_locations/all.csv (GPS by row)."""
    (root / "splits").mkdir(parents=True, exist_ok=True)
    (root / "split_locations").mkdir(parents=True, exist_ok=True)
    for split, file in (("train", "train-19zl.csv"), ("val", "val-19zl.csv")):
        rows = [s for s in specs if s.role == split]
        with open(root / "splits" / file, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            for spec in sorted(rows, key=lambda s: s.name):
                writer.writerow(
                    [
                        f"bingmap/19/{spec.name}.jpg",
                        f"streetview/panos/{spec.name}.jpg",
                        f"annotations/{spec.name}.png",
                    ]
                )
    with open(root / "split_locations" / "all.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for spec in sorted(specs, key=lambda s: int(s.name)):
            lat, lon = latlon[spec.name]
            writer.writerow([f"{lat:.8f}", f"{lon:.8f}", f"{lat:.8f}", f"{lon:.8f}"])


def write_cvact_mat(root: Path, specs: list[LocationSpec], latlon: dict[str, tuple[float, float]]) -> None:
    """ACT_data.mat: panoIds, utm (easting, northing in UTM zone 55 south) and 1-based split indices.

    Train locations go to ``trainSet.trainInd``, the others to ``valSet.valInd`` (CVACT_val); the
    synthetic world has no separate CVACT_test, so ``valSetAll.valInd`` lists CVACT_val again and
    no ``ANU_data_test/`` is written.
    """
    from pyproj import Transformer
    from scipy.io import savemat

    ordered = sorted(specs, key=lambda s: s.name)
    transformer = Transformer.from_crs("EPSG:4326", CVACT_UTM_CRS, always_xy=True)
    lat = np.array([latlon[s.name][0] for s in ordered], dtype=np.float64)
    lon = np.array([latlon[s.name][1] for s in ordered], dtype=np.float64)
    easting, northing = transformer.transform(lon, lat)
    rows = {spec.name: row for row, spec in enumerate(ordered, start=1)}
    train = np.array([rows[s.name] for s in ordered if s.role == "train"], dtype=np.float64)
    val = np.array([rows[s.name] for s in ordered if s.role != "train"], dtype=np.float64)
    content = {
        "panoIds": np.array([s.name for s in ordered], dtype=object).reshape(-1, 1),
        "utm": np.stack([np.asarray(easting), np.asarray(northing)], axis=1),
        "trainSet": {"trainInd": train.reshape(-1, 1)},
        "valSet": {"valInd": val.reshape(-1, 1)},
        "valSetAll": {"valInd": val.reshape(-1, 1)},
    }
    savemat(root / "ACT_data.mat", content)
