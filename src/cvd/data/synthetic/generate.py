"""`generate`: plan the locations of a dataset, render them, write the benchmark tree and metadata.

Locations sit on a jittered grid of the world; their benchmark ids and roles (train / test /
distractor / val) are drawn by a seeded permutation, so the splits are interleaved in space
and share the same town styles. Rendering walks the grid row by row (serpentine) so that
consecutive locations reuse the world's cached raster chunks; with `workers > 1` each worker
process takes a contiguous band of rows. Every random stream is keyed by (seed, location
index), so the bytes written do not depend on `workers` or on the order of work.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cvd.atomic import atomic_write_text
from cvd.data.synthetic.georef import GeoReference
from cvd.data.synthetic.layouts import (
    CVACT_ORIGIN,
    CVUSA_TRAIN_FRACTION,
    PANORAMA_LAYOUTS,
    SUES_TRAIN_FRACTION,
    U1652_DISTRACTOR_RATIO,
    encode,
    image_targets,
    location_name,
    write_cvact_mat,
    write_cvusa_splits,
)
from cvd.data.synthetic.location import (
    LocationRenderer,
    LocationSpec,
    RenderedLocation,
    plan_altitude_shots,
    plan_drone_shots,
)
from cvd.data.synthetic.noise import object_rng
from cvd.data.synthetic.options import GENERATOR_VERSION, LAYOUTS, SynthOptions
from cvd.data.synthetic.render import torch_threads
from cvd.data.synthetic.world import World
from cvd.errors import ConfigError

METADATA_FILE = "cvd_synthetic.json"
IN_PROGRESS_FILE = "cvd_synthetic.in-progress.json"  # present from the first image to the metadata
SUES_OFFICIAL_COUNT = 200

_STREAM_LAYOUT, _STREAM_POSITIONS = 400, 401


def plan_dataset(
    layout: str, locations: int, views_per_location: int, seed: int, options: SynthOptions
) -> list[LocationSpec]:
    """Every location of the dataset with its id, role, world position and shots, in render order."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown synthetic layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if locations < 2:
        raise ConfigError(f"--locations must be at least 2 (one to train, one to test), got {locations}")
    if views_per_location < 1:
        raise ConfigError(f"--views-per-location must be at least 1, got {views_per_location}")
    rng = object_rng(seed, _STREAM_LAYOUT)
    if layout == "university1652":
        n_test = locations // 2
        n_distractors = (
            options.distractors if options.distractors is not None else round(n_test * U1652_DISTRACTOR_RATIO)
        )
        roles = ["train"] * (locations - n_test) + ["test"] * n_test + ["distractor"] * n_distractors
    elif layout == "sues200":
        roles = ["all"] * locations
    else:
        n_train = round(locations * CVUSA_TRAIN_FRACTION)
        n_train = min(max(n_train, 1), locations - 1)
        roles = ["train"] * n_train + ["val"] * (locations - n_train)
    total = len(roles)
    # ids 1..total are shuffled over the grid slots; roles too (by id for SUES-200, see _sues_roles)
    numbers = rng.permutation(total) + 1
    slot_roles = [roles[i] for i in rng.permutation(total)]
    sues_roles = _sues_roles(total) if layout == "sues200" else []
    positions = _grid_positions(total, options.location_spacing, object_rng(seed, _STREAM_POSITIONS))
    specs = []
    for slot, (x, y) in enumerate(positions):
        index = int(numbers[slot])  # the id number also seeds the location's random streams
        role = sues_roles[index - 1] if layout == "sues200" else slot_roles[slot]
        shots_rng = object_rng(seed, 303, index)
        if layout == "university1652":
            shots = plan_drone_shots(shots_rng, views_per_location, options.altitudes, options)
        elif layout == "sues200":
            shots = plan_altitude_shots(shots_rng, views_per_location, options.altitudes, options)
        else:
            shots = ()
        specs.append(
            LocationSpec(
                index=index,
                name=location_name(layout, index),
                x=float(x),
                y=float(y),
                role=role,
                drone=shots,
                panorama=layout in PANORAMA_LAYOUTS,
                street_views=2 if (layout == "university1652" and options.street_views) else 0,
                satellite_on_street=layout in PANORAMA_LAYOUTS,
            )
        )
    return specs


def _sues_roles(total: int) -> list[str]:
    """Train/test per id 0001..total: the benchmark's official list at 200 ids, else the first 60%.

    Both are what `cvd.data.SUES200` uses (default list, or `train_fraction=0.6`), so the raw
    layout reads back with the same split as the written Training/Testing folders.
    """
    if total == SUES_OFFICIAL_COUNT:
        from cvd.data.sues200 import OFFICIAL_TRAIN_IDS

        train = {int(i) for i in OFFICIAL_TRAIN_IDS}
    else:
        train = set(range(1, round(SUES_TRAIN_FRACTION * total) + 1))
    return ["train" if n in train else "test" for n in range(1, total + 1)]


def _grid_positions(total: int, spacing: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """A jittered square grid around the origin, listed in serpentine row order."""
    columns = math.ceil(math.sqrt(total))
    rows = math.ceil(total / columns)
    points = []
    for r in range(rows):
        order = range(columns) if r % 2 == 0 else range(columns - 1, -1, -1)
        for c in order:
            jitter = rng.uniform(-0.15, 0.15, size=2) * spacing
            points.append(
                ((c - (columns - 1) / 2) * spacing + jitter[0], (r - (rows - 1) / 2) * spacing + jitter[1])
            )
    return points[:total]


def _render_band(
    args: tuple[str, Path, list[LocationSpec], int, int, SynthOptions, Any],
) -> list[dict[str, Any]]:
    """Render and write a band of locations (one worker's share); returns their metadata."""
    layout, root, specs, size, seed, options, queue = args
    results = []
    with torch_threads(1):
        world = World(seed, options)
        renderer = LocationRenderer(world, size, options)
        for spec in specs:
            results.append(_write_location(layout, root, renderer.render(spec), options))
            if queue is not None:
                queue.put(1)
    return results


def _write_location(
    layout: str, root: Path, rendered: RenderedLocation, options: SynthOptions
) -> dict[str, Any]:
    from cvd.data.synthetic.layouts import write_files

    spec = rendered.spec
    images = {}
    for key in sorted(rendered.images):
        targets = image_targets(layout, spec, key, options.sues_layout)
        if not targets:
            continue
        data = encode(rendered.images[key], Path(targets[0]).suffix, options.jpeg_quality)
        write_files(root, targets, data)
        for target in targets:
            images[target] = {"location": spec.name, "view": key.split("/")[0], **rendered.cameras[key]}
    return {"spec": spec, "info": rendered.info, "images": images}


def generate(
    layout: str,
    out: str | os.PathLike,
    locations: int,
    views_per_location: int,
    size: int,
    seed: int,
    progress: bool | Callable[[int, int], None] = False,
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Write a synthetic dataset in `layout`'s real tree under `out`; returns the root to load.

    `locations`: University-1652: buildings with drone views, split half train / half test,
    plus round(test x 250/701) gallery distractors (option `distractors`); SUES-200: location
    folders (first 60% train, the benchmark's own list at 200); CVUSA, CVACT: image pairs (80% train).
    `views_per_location`: University-1652: drone images per building, over the altitudes;
    SUES-200: drone images per altitude; CVUSA, CVACT: ignored (one panorama per location).
    `options`: any `SynthOptions` field. `progress`: True for a tqdm bar, or a callback(done, total).
    An `out` that already holds this very dataset (same version, layout, counts, size, seed and
    options) is reused once its files check out against the metadata (each present with its
    recorded size; datasets written before sizes were recorded: each image decodes); the
    locations of missing or damaged images are rendered again (every random stream is keyed by
    location, so the bytes are the same), any other damaged file regenerates the whole dataset,
    and stderr says which. Another synthetic dataset there is replaced only with
    `overwrite=True`; a non-empty folder that is not a synthetic dataset is never touched. A
    generation that was interrupted (its in-progress marker is still there) is cleared and
    redone, whatever `overwrite` says: it was ours and is incomplete.
    """
    if layout == "cvact":  # its UTM zone 55 south coordinates need a world near Canberra
        options = {"origin_lat": CVACT_ORIGIN[0], "origin_lon": CVACT_ORIGIN[1], **options}
    opts = SynthOptions().replace(**options)
    if size < 16:
        raise ConfigError(f"--size must be at least 16 pixels, got {size}")
    root = Path(out).expanduser()
    specs = plan_dataset(layout, locations, views_per_location, seed, opts)
    request = _request(layout, locations, views_per_location, size, seed, opts)
    if _prepare_root(root, request, overwrite):
        if _repair(root, layout, specs, size, seed, opts):
            return root  # the same dataset is already there, complete
        _clear(root)
    started = time.perf_counter()
    (root / IN_PROGRESS_FILE).write_text(json.dumps(request, indent=1))

    # a worker process costs a few seconds to start (torch import): not worth it for tiny sets
    workers = max(1, min(opts.workers, len(specs) // 8))
    bands = [list(band) for band in np.array_split(np.array(specs, dtype=object), workers)]
    bar = None
    if progress is True:
        from cvd.progress import progress_bar

        bar = progress_bar(total=len(specs), unit="location", desc=f"cvd synth {layout}")
    callback = progress if callable(progress) else None
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if bar is not None:
            bar.update(n)
        if callback is not None:
            callback(done, len(specs))

    results: list[dict[str, Any]] = []
    if workers == 1:
        with torch_threads(1):
            world = World(seed, opts)
            renderer = LocationRenderer(world, size, opts)
            for spec in specs:
                results.append(_write_location(layout, root, renderer.render(spec), opts))
                advance(1)
    else:
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager:
            queue = manager.Queue()
            with context.Pool(workers) as pool:
                pending = pool.map_async(
                    _render_band, [(layout, root, band, size, seed, opts, queue) for band in bands]
                )
                while not pending.ready() or not queue.empty():
                    try:
                        advance(queue.get(timeout=0.2))
                    except Exception:
                        continue
                for band in pending.get():
                    results.extend(band)
    if bar is not None:
        bar.close()

    geo = GeoReference(opts.origin_lat, opts.origin_lon)
    latlon = {}
    for result in results:
        centre = result["info"]["centre_xy"]
        lat, lon = geo.to_latlon(centre[0], centre[1])
        latlon[result["spec"].name] = (float(lat), float(lon))
    if layout == "cvusa":
        write_cvusa_splits(root, [r["spec"] for r in results], latlon)
    if layout == "cvact":
        write_cvact_mat(root, [r["spec"] for r in results], latlon)
    _write_metadata(root, request, opts, results, latlon, geo)
    (root / IN_PROGRESS_FILE).unlink()
    if bar is not None:
        print(f"cvd synth: {len(specs)} locations in {time.perf_counter() - started:.1f} s -> {root}")
    return root


def _request(
    layout: str, locations: int, views: int, size: int, seed: int, options: SynthOptions
) -> dict[str, Any]:
    """What identifies a generated dataset (compared with an existing one's metadata)."""
    return {
        "version": GENERATOR_VERSION,
        "layout": layout,
        "seed": seed,
        "locations": locations,
        "views_per_location": views,
        "size": size,
        "options": options.to_dict(),
    }


def _identity(description: dict[str, Any]) -> dict[str, Any]:
    """The fields that decide the bytes written."""
    identity = {
        key: description.get(key)
        for key in ("version", "layout", "seed", "locations", "views_per_location", "size")
    }
    identity["options"] = description.get("options")
    return identity


def _prepare_root(root: Path, request: dict[str, Any], overwrite: bool) -> bool:
    """Make `root` ready to write; True when it already holds the requested dataset."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out {root} exists and is not a directory")
    if not root.exists() or not any(root.iterdir()):
        root.mkdir(parents=True, exist_ok=True)
        return False
    metadata = root / METADATA_FILE
    if (root / IN_PROGRESS_FILE).is_file():
        _clear(root)  # an interrupted generation of ours: incomplete, never worth keeping
        return False
    if not metadata.is_file():
        raise ConfigError(
            f"--out {root} is not empty and holds no synthetic dataset ({METADATA_FILE}); "
            "choose an empty or new folder"
        )
    try:
        existing = json.loads(metadata.read_text())
    except json.JSONDecodeError:
        existing = {}
    if _identity(existing) == _identity(request):
        return True
    if not overwrite:
        raise ConfigError(
            f"--out {root} holds another synthetic dataset ({METADATA_FILE} differs: seed, counts, size or "
            "options); pass --overwrite (overwrite=True) to replace it, or choose another folder"
        )
    _clear(root)
    return False


def dataset_files(root: Path) -> dict[str, int]:
    """Size in bytes of every file of a generated dataset (relative POSIX path -> size), the
    metadata and the in-progress marker excepted: what `verify_dataset` checks on reuse."""
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and relative not in (METADATA_FILE, IN_PROGRESS_FILE):
            files[relative] = path.stat().st_size
    return files


def verify_dataset(root: Path, metadata: dict[str, Any]) -> dict[str, str]:
    """Files of `metadata` that are missing or damaged: relative path -> what is wrong.

    Sizes are compared where the metadata records them (`files`); older datasets record only
    their images, which are then decoded (a truncated JPEG does not decode).
    """
    from cvd.data.images import is_readable

    problems = {}
    recorded = metadata.get("files")
    expected = recorded if isinstance(recorded, dict) else dict.fromkeys(metadata.get("images", {}))
    for relative, size in expected.items():
        path = root / relative
        if not path.is_file():
            problems[relative] = "missing"
        elif size is not None and path.stat().st_size != size:
            problems[relative] = f"{path.stat().st_size} bytes, {size} recorded"
        elif size is None and not is_readable(path):
            problems[relative] = "does not decode"
    return problems


def _repair(
    root: Path, layout: str, specs: list[LocationSpec], size: int, seed: int, opts: SynthOptions
) -> bool:
    """Check a reused dataset's files and render the locations of missing or damaged images
    again; True when the dataset is then complete, False when it must be regenerated whole."""
    metadata = load_metadata(root)
    problems = verify_dataset(root, metadata)
    images = metadata.get("images", {})
    if not problems:
        if "files" not in metadata:  # written before sizes were recorded: record them now
            _record_files(root, metadata)
        return True
    first, reason = next(iter(problems.items()))
    found = f"{root}: {len(problems)} file(s) missing or damaged (first: {first}: {reason})"
    others = sorted(relative for relative in problems if relative not in images)
    if others:
        print(
            f"cvd synth: {found}; {others[0]} belongs to no single location: regenerating the whole dataset",
            file=sys.stderr,
        )
        return False
    locations = sorted({images[relative]["location"] for relative in problems})
    print(
        f"cvd synth: {found}; regenerating location(s) {', '.join(locations)}, keeping the others",
        file=sys.stderr,
    )
    (root / IN_PROGRESS_FILE).write_text(json.dumps({"repairing": locations}, indent=1))
    by_name = {spec.name: spec for spec in specs}
    _render_band((layout, root, [by_name[name] for name in locations], size, seed, opts, None))
    still = verify_dataset(root, metadata)
    if still:
        first, reason = next(iter(still.items()))
        print(
            f"cvd synth: {root}: a regenerated file differs from the recorded one ({first}: {reason}; "
            "another image library version?): regenerating the whole dataset",
            file=sys.stderr,
        )
        return False
    if "files" not in metadata:
        _record_files(root, metadata)
    (root / IN_PROGRESS_FILE).unlink()
    return True


def _record_files(root: Path, metadata: dict[str, Any]) -> None:
    metadata = {**metadata, "files": dataset_files(root)}
    atomic_write_text(root / METADATA_FILE, json.dumps(metadata, indent=1, sort_keys=False))


def _clear(root: Path) -> None:
    for child in root.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def _write_metadata(
    root: Path,
    request: dict[str, Any],
    options: SynthOptions,
    results: list[dict[str, Any]],
    latlon: dict[str, tuple[float, float]],
    geo: GeoReference,
) -> None:
    """One JSON file: what made the dataset (version, seed, options) and every location and camera."""
    results = sorted(results, key=lambda r: r["spec"].name)
    location_entries = {}
    images: dict[str, Any] = {}
    for result in results:
        spec = result["spec"]
        info = result["info"]
        entry = {
            "index": spec.index,
            "role": spec.role,
            "x": info["centre_xy"][0],
            "y": info["centre_xy"][1],
            "ground_z": info["ground_z"],
            "lat": latlon[spec.name][0],
            "lon": latlon[spec.name][1],
        }
        for key in ("satellite_capture", "drone_capture", "street_capture", "street_xyz"):
            if key in info:
                entry[key] = info[key]
        location_entries[spec.name] = entry
        for path, camera in result["images"].items():
            position = camera.get("position_xyz")
            if position is not None:
                lat, lon = geo.to_latlon(position[0], position[1])
                camera = {
                    **camera,
                    "position_latlon": [float(lat), float(lon)],
                    "position_alt_m": position[2],
                }
            images[path] = camera
    metadata = {
        "generator": "cvd.data.synthetic",
        **request,  # what identifies the dataset: the same fields the reuse check compares
        "georeference": {
            "origin_lat": options.origin_lat,
            "origin_lon": options.origin_lon,
            "projection": geo.proj4,
            "world_axes": "x east, y north, z up, metres",
        },
        "conventions": {
            "pixel_centre": "pixel (row r, column c) has its centre at (c + 0.5, r + 0.5)",
            "pinhole": "u = fx X/Z + cx, v = fy Y/Z + cy, (X, Y, Z) = R (P - C); "
            "camera x right, y down, z forward",
            "satellite": "north up; pixel centres georeferenced on the plane z = reference_z",
            "panorama": "equirectangular, north at the centre column, azimuth clockwise to the right",
            "azimuths": "degrees clockwise from north",
        },
        "location_entries": location_entries,
        "images": dict(sorted(images.items())),
        "files": dataset_files(root),  # sizes, checked when the dataset is reused
    }
    atomic_write_text(root / METADATA_FILE, json.dumps(metadata, indent=1, sort_keys=False))


def load_metadata(root: str | os.PathLike) -> dict[str, Any]:
    """The metadata a generated dataset carries (raises ConfigError naming the file if absent)."""
    path = Path(root).expanduser() / METADATA_FILE
    if not path.is_file():
        raise ConfigError(
            f"{path}: not a synthetic dataset (no {METADATA_FILE}); generate one with `cvd synth`"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: unreadable metadata ({error})") from error
