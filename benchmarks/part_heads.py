"""What CVD costs at inference for the part-based baselines (LPN, SDPL, MBF), CVD / baseline.

With CVD on, retrieval runs the backbone, CVD's content conv (3 x 3, d -> d/2) and the head.
The part heads cannot use the global-mean shortcut of the `gap` head, and on LPN's stride-1
ResNet-50 map (2048 x 16 x 16 at 256 px) the content conv over the whole map is a large share of
the forward pass. LPN pools its parts by averages, so its embedder applies the conv to each
part's shifted-window means instead (`cvd.baselines.partition.projected_part_means`, exact).
This script prints, per recipe, the forward FLOPs (torch's FlopCounterMode) of one batch's
embedding for: the baseline, CVD with the whole-map conv, and CVD as the embedder runs it; and
the measured embedding time of the three, interleaved after a warm-up, as process CPU time on
one thread (the least disturbed figure on a shared machine), median of `--repeats`.

    .venv/bin/python benchmarks/part_heads.py                 # LPN @ 256 (about a minute)
    .venv/bin/python benchmarks/part_heads.py --all --flops   # + SDPL @ 512 and MBF @ 384, FLOPs only

Random weights (no download); the numbers of parts and sizes are the recipes' (configs/_base).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cvd.baselines import get_recipe
from cvd.config import load_config

RECIPES = {
    "lpn": ("configs/university1652/lpn.yaml", 256),
    "sdpl": ("configs/university1652/sdpl.yaml", 512),
    "mbf": ("configs/sues200/mbf_150.yaml", 384),
}


def build(path: str, cvd: bool) -> torch.nn.Module:
    config = load_config(path, ["model.backbone.pretrained=false", f"cvd.enabled={str(cvd).lower()}"])
    config["model"]["num_classes"] = 701
    return get_recipe(config["model"]["baseline"])(config).build_model(config).eval()


def full_map_embed(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """CVD's retrieval path without any shortcut: content conv over the whole map, then the head."""
    features = model.encoder("satellite")(images)
    content = model.cvd.content_projection("satellite")(features)
    return F.normalize(model.head("satellite")(content, branch="satellite")["embedding"], dim=-1)


def flops(function: Callable[[], torch.Tensor]) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        function()
    return counter.get_total_flops()


def cpu_seconds(function: Callable[[], torch.Tensor]) -> float:
    start = time.process_time()
    with torch.no_grad():
        function()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--all", action="store_true", help="also SDPL and MBF (FLOPs are cheap, timing is not)"
    )
    parser.add_argument("--flops", action="store_true", help="FLOPs only, no timing")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1, help="images per embedding call")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, torch {torch.__version__}, threads {args.threads}")
    for name in RECIPES if args.all else ["lpn"]:
        path, size = RECIPES[name]
        baseline, with_cvd = build(path, cvd=False), build(path, cvd=True)
        images = torch.randn(args.batch, 3, size, size)
        variants = {
            "baseline": lambda b=baseline, x=images: b.embed(x, "satellite"),
            "cvd, whole-map conv": lambda m=with_cvd, x=images: full_map_embed(m, x),
            "cvd, as embedded": lambda m=with_cvd, x=images: m.embed(x, "satellite"),
        }
        with torch.no_grad():
            assert torch.allclose(
                variants["cvd, whole-map conv"](), variants["cvd, as embedded"](), atol=1e-4
            )
        counted = {label: flops(run) for label, run in variants.items()}
        print(f"\n{name} @ {size} px, batch {args.batch}")
        for label, count in counted.items():
            print(f"  {label:22s} {count / 1e9:8.2f} GFLOPs   x{count / counted['baseline']:.3f}")
        if args.flops:
            continue
        for run in variants.values():  # warm-up
            cpu_seconds(run)
        times: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.repeats):
            for label, run in variants.items():
                times[label].append(cpu_seconds(run))
        base = statistics.median(times["baseline"])
        for label, values in times.items():
            median = statistics.median(values)
            print(
                f"  {label:22s} {median * 1e3:8.1f} ms CPU (median of {args.repeats})   x{median / base:.3f}"
            )


if __name__ == "__main__":
    main()
