"""``cvd reproduce --synthetic``: every table on tiny synthetic worlds at a smoke budget, on a CPU.

Each benchmark gets a world in its own layout (``cvd synth``), and every row its own recipe with
a tiny backbone of the same family, images about an eighth of the recipe's side and two
optimiser steps: the driver, the collection and the page run end to end in minutes. The
numbers are smoke numbers, not reproductions, and the page says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cvd.reproduce.tables import ConfigInfo

SYNTHETIC_NOTE = (
    "SYNTHETIC SMOKE RUN: these numbers come from tiny synthetic worlds, tiny backbones and two "
    "optimiser steps per row. They check that the pipeline runs end to end; they are not a "
    "reproduction of the paper and say nothing about CVD."
)


@dataclass(frozen=True)
class World:
    """How big the synthetic world of one benchmark is (locations, views per location, pixels)."""

    layout: str
    locations: int
    views: int
    size: int = 32


WORLDS: dict[str, World] = {
    "university1652": World("university1652", locations=8, views=2),
    "sues200": World("sues200", locations=10, views=1),
    "cvusa": World("cvusa", locations=8, views=1),
    "cvact": World("cvact", locations=8, views=1),
}
TINY_BACKBONES = (
    ("resnet", "test_resnet"),
    ("vit", "test_vit"),
    ("deit", "test_vit"),
    ("efficientnet", "test_efficientnet"),
)
# What makes a full-size ViT full-size (FSRA's config spells out its 768-d, 8-block, 256-px ViT):
# the tiny stand-in keeps timm's own width, depth and position grid instead.
FULL_SIZE_VIT_KWARGS = ("embed_dim", "depth", "num_heads", "mlp_ratio", "img_size")


def make_worlds(folder: Path, datasets: set[str], seed: int = 0) -> dict[str, str]:
    """Generate (or reuse) one world per benchmark under ``folder``; returns ``{dataset: root}``."""
    from cvd.data.synthetic import generate

    roots = {}
    for dataset in sorted(datasets):
        world = WORLDS[dataset]
        root = generate(
            world.layout, folder / dataset, locations=world.locations, views_per_location=world.views,
            size=world.size, seed=seed, workers=1,
        )  # fmt: skip
        roots[dataset] = str(root)
    return roots


def tiny_backbone(name: str) -> str:
    """timm's test model of the recipe's backbone family (a ResNet recipe gets a ResNet)."""
    lowered = name.lower()
    for family, tiny in TINY_BACKBONES:
        if family in lowered:
            return tiny
    return "test_convnext"


def smoke_size(side: int) -> int:
    """An eighth of a recipe's image side, in multiples of 16 pixels, at least 32."""
    return max(32, round(side / 8 / 16) * 16)


def smoke_overrides(info: ConfigInfo) -> list[str]:
    """The smoke budget for one config: tiny backbone, small images, two steps, no workers."""
    from cvd.config import load_config

    config = load_config(info.path)
    data = config["data"]
    query = [smoke_size(int(side)) for side in data["query_size"]]
    satellite = [smoke_size(int(side)) for side in data["satellite_size"]]
    head = []
    if config["model"]["head"]["name"] == "geodtr":  # its descriptors are sized to the feature map
        kwargs = config["model"]["head"].get("kwargs") or {}
        stride = int((config["model"]["backbone"].get("kwargs") or {}).get("output_stride", 32))
        rows, columns = -(-query[0] // stride), -(-query[1] // stride)
        while (rows * columns // 2) % int(kwargs.get("heads", 1)) or rows * columns % 2:
            columns += 1  # the attention heads split the half-map's tokens evenly
        query = [rows * stride, columns * stride]
        if data["satellite_size"] == data["query_size"]:  # polar satellites: the panorama's shape
            satellite = list(query)
        head.append(f"model.head.kwargs.grid=[{rows}, {columns}]")
    if "num_heads" in (config["model"]["head"].get("kwargs") or {}):  # MBF's block: 64-wide tiny ViT
        head.append("model.head.kwargs.num_heads=4")
    tiny = tiny_backbone(str(config["model"]["backbone"]["name"]))
    backbone = [f"model.backbone.name={tiny}"]
    kwargs = config["model"]["backbone"].get("kwargs") or {}
    if tiny == "test_vit" and any(key in kwargs for key in FULL_SIZE_VIT_KWARGS):
        kept = {key: value for key, value in kwargs.items() if key not in FULL_SIZE_VIT_KWARGS}
        backbone.append(f"model.backbone.kwargs={json.dumps(kept)}")
    return [
        *head,
        *backbone,
        "model.backbone.pretrained=false",
        f"data.query_size=[{query[0]}, {query[1]}]",
        f"data.satellite_size=[{satellite[0]}, {satellite[1]}]",
        "data.batch_size=4",
        "data.eval_batch_size=16",
        "data.num_workers=0",
        "schedule.epochs=1",
        "schedule.max_steps=2",
        "eval.every_epochs=0",
        "cvd.recon_size=8",
        "cvd.n_projections=16",
        "checkpoint.every_steps=1000",
    ]
