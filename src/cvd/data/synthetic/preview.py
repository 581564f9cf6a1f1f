"""Contact sheet of a synthetic dataset: per location, its satellite tile beside its drone views
at each altitude and its street panorama, to check by eye that the views match.

Images the dataset has are shown from its files. Kinds its layout lacks (panoramas in a
University-1652 tree, drone views in a CVUSA tree) are rendered from the world the metadata
describes (same seed and options, so the same place) and labelled "rendered".
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageDraw

from cvd.data.synthetic.generate import load_metadata, plan_dataset
from cvd.data.synthetic.location import LocationRenderer, plan_drone_shots
from cvd.data.synthetic.noise import object_rng
from cvd.data.synthetic.options import SynthOptions
from cvd.data.synthetic.render import torch_threads
from cvd.data.synthetic.world import World
from cvd.errors import ConfigError

TILE = 192
LABEL = 14


def _tile(image: Image.Image, width: int, height: int, label: str) -> Image.Image:
    canvas = Image.new("RGB", (width, height + LABEL), (255, 255, 255))
    canvas.paste(image.convert("RGB").resize((width, height), Image.BILINEAR), (0, LABEL))
    ImageDraw.Draw(canvas).text((3, 1), label, fill=(0, 0, 0))
    return canvas


def write_preview(root: str | os.PathLike, out: str | os.PathLike | None = None, locations: int = 4) -> Path:
    """Write the contact sheet PNG (default `<root>/preview.png`) for the first `locations` locations."""
    with torch_threads(1):
        return _write_preview(root, out, locations)


def _write_preview(root: str | os.PathLike, out: str | os.PathLike | None, locations: int) -> Path:
    root = Path(root).expanduser()
    meta = load_metadata(root)
    if locations < 1:
        raise ConfigError(f"--locations must be at least 1, got {locations}")
    options = SynthOptions().replace(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in meta["options"].items()}
    )
    layout = meta["layout"]
    by_location: dict[str, dict[str, list[tuple[str, dict]]]] = {}
    for path, camera in meta["images"].items():
        by_location.setdefault(camera["location"], {}).setdefault(camera["view"], []).append((path, camera))
    preferred = [
        name
        for name, entry in sorted(meta["location_entries"].items())
        if entry["role"] in ("test", "all", "val")
    ]
    others = [name for name in sorted(meta["location_entries"]) if name not in preferred]
    chosen = (preferred + others)[:locations]

    specs = {
        s.name: s
        for s in plan_dataset(layout, meta["locations"], meta["views_per_location"], meta["seed"], options)
    }
    world = World(meta["seed"], options)
    renderer = LocationRenderer(world, TILE, options)
    rows = []
    for name in chosen:
        views = by_location.get(name, {})
        spec = specs[name]
        tiles = []
        satellite = views.get("satellite", [])
        tiles.append(_tile(Image.open(root / satellite[0][0]), TILE, TILE, f"{name} satellite"))
        drones: dict[float, str] = {}
        for path, camera in sorted(views.get("drone", [])):
            drones.setdefault(camera["altitude_m"], path)
        missing = {"drone"} if not drones else set()
        if "panorama" not in views:
            missing.add("panorama")
        rendered = None
        if missing:
            if not spec.drone:
                spec = replace(
                    spec,
                    drone=plan_drone_shots(
                        object_rng(meta["seed"], 305, spec.index),
                        len(options.altitudes),
                        options.altitudes,
                        options,
                    ),
                )
            spec = replace(spec, panorama=True)
            rendered = renderer.render(spec, only=missing)
        if drones:
            for altitude, path in sorted(drones.items()):
                tiles.append(_tile(Image.open(root / path), TILE, TILE, f"drone {altitude:.0f} m"))
        elif rendered is not None:
            for key in sorted(k for k in rendered.images if k.startswith("drone/")):
                altitude = rendered.cameras[key]["altitude_m"]
                tiles.append(
                    _tile(
                        Image.fromarray(rendered.images[key]),
                        TILE,
                        TILE,
                        f"drone {altitude:.0f} m (rendered)",
                    )
                )
        row_width = TILE * len(tiles)
        if "panorama" in views:
            pano = Image.open(root / views["panorama"][0][0])
            label = "street panorama"
        else:
            assert rendered is not None
            pano = Image.fromarray(rendered.images["panorama"])
            label = "street panorama (rendered)"
        pano_height = max(8, round(row_width * pano.height / pano.width))
        top = Image.new("RGB", (row_width, TILE + LABEL), (255, 255, 255))
        for k, tile in enumerate(tiles):
            top.paste(tile, (k * TILE, 0))
        row = Image.new("RGB", (row_width, TILE + LABEL + pano_height + LABEL + 6), (255, 255, 255))
        row.paste(top, (0, 0))
        row.paste(_tile(pano, row_width, pano_height, label), (0, TILE + LABEL))
        rows.append(row)
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows)), (255, 255, 255))
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    target = Path(out).expanduser() if out else root / "preview.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target)
    return target
