"""Does CVD help its baseline? Sample4Geo vs Sample4Geo+CVD on the demo's world, several seeds.

The demo trains each variant once, and one seed cannot tell a real difference from seed-to-seed
spread. This script generates the demo's synthetic world once, trains both variants with the
same recipe, budget and seed for each of several seeds, and prints R@1 and AP (University-1652
protocol, sample4geo gallery, both directions) per seed, their mean and sample standard
deviation, and the paired difference CVD - baseline (same seed, so same data order and same
initial backbone) with its spread. The untrained starting point is evaluated once as reference.

    .venv/bin/python benchmarks/accuracy.py                       # demo size, seeds 0 1 2, CPU
    .venv/bin/python benchmarks/accuracy.py --epochs 20 --device cuda --workers 8
    .venv/bin/python benchmarks/accuracy.py --override cvd.lambda_iic=0.5   # any dotted override

It writes every run folder and ``accuracy.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from cvd.atomic import atomic_write_text
from cvd.data.synthetic import generate
from cvd.demo import FULL, UNTRAINED, VARIANTS, DemoSize, demo_configs, evaluate_untrained
from cvd.engine.trainer import fit

METRICS = ("R@1", "AP")


def metrics_by_split(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {line["split"]: {name: float(line[name]) for name in METRICS} for line in results}


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    deviation = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{mean:6.2f} ± {deviation:5.2f}"


def print_summary(runs: dict[str, dict[int, dict[str, dict[str, float]]]], seeds: list[int]) -> None:
    labels = list(runs)
    splits = list(next(iter(runs[labels[0]].values())))
    for split in splits:
        for metric in METRICS:
            print(f"\n{split} {metric}")
            for label in labels:
                values = [runs[label][seed][split][metric] for seed in seeds]
                per_seed = "  ".join(f"{v:6.2f}" for v in values)
                print(f"  {label:16s} seeds: {per_seed}   mean ± sd: {spread(values)}")
            if len(labels) < 2:
                continue
            differences = [
                runs[labels[1]][seed][split][metric] - runs[labels[0]][seed][split][metric] for seed in seeds
            ]
            per_seed = "  ".join(f"{v:+6.2f}" for v in differences)
            print(f"  {'CVD - baseline':16s} seeds: {per_seed}   mean ± sd: {spread(differences)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/cvd-accuracy"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--world-seed", type=int, default=0, help="seed of the synthetic world")
    parser.add_argument("--locations", type=int, default=FULL.locations)
    parser.add_argument("--views", type=int, default=FULL.views_per_location, help="drone views per location")
    parser.add_argument("--size", type=int, default=FULL.image_size, help="image side in pixels")
    parser.add_argument("--epochs", type=int, default=FULL.epochs)
    parser.add_argument("--batch", type=int, default=FULL.batch_size, help="global batch (locations)")
    parser.add_argument("--device", default="auto", help="train.device: auto, cpu or cuda")
    parser.add_argument("--workers", type=int, default=None, help="data.num_workers (default: the demo's)")
    parser.add_argument(
        "--data", type=Path, default=None, help="world folder (default: OUT/data; reused if same)"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=[label for label, _, _ in VARIANTS],
        default=[label for label, _, _ in VARIANTS],
        help="which runs to train (an ablation of CVD's options needs only the CVD one)",
    )
    parser.add_argument("--gen-workers", type=int, default=2, help="processes rendering the world")
    parser.add_argument("--override", nargs="*", default=[], help="extra dotted config overrides")
    args = parser.parse_args()

    started = time.perf_counter()
    size = DemoSize(args.locations, args.views, args.size, args.epochs, args.batch)
    overrides = [f"train.device={args.device}", *args.override]
    if args.workers is not None:
        overrides.append(f"data.num_workers={args.workers}")
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"cuda: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}"
    )
    print(f"world: seed {args.world_seed}, {size}; seeds {args.seeds}; overrides {overrides}", flush=True)
    data_root = generate(
        "university1652",
        args.data or args.out / "data",
        locations=size.locations,
        views_per_location=size.views_per_location,
        size=size.image_size,
        seed=args.world_seed,
        overwrite=True,
        workers=args.gen_workers,
    )

    reference_config = demo_configs(data_root, args.out / "runs", size, args.seeds[0], overrides)[0][1]
    untrained = metrics_by_split(evaluate_untrained(reference_config))
    print(f"{UNTRAINED}: {json.dumps(untrained)}", flush=True)

    runs: dict[str, dict[int, dict[str, dict[str, float]]]] = {label: {} for label in args.variants}
    for seed in args.seeds:
        configs = demo_configs(data_root, args.out / "runs" / f"seed{seed}", size, seed, overrides)
        for label, config in configs:
            if label not in runs:
                continue
            run_started = time.perf_counter()
            result = fit(config, overwrite=True)
            runs[label][seed] = metrics_by_split(result.results)
            print(
                f"seed {seed} {label}: {json.dumps(runs[label][seed])} "
                f"({time.perf_counter() - run_started:.0f} s)",
                flush=True,
            )

    print_summary(runs, args.seeds)
    record = {
        "size": asdict(size),
        "world_seed": args.world_seed,
        "seeds": args.seeds,
        "overrides": overrides,
        "untrained": untrained,
        "runs": {
            label: {str(seed): value for seed, value in by_seed.items()} for label, by_seed in runs.items()
        },
        "minutes": (time.perf_counter() - started) / 60,
    }
    atomic_write_text(args.out / "accuracy.json", json.dumps(record, indent=2))
    print(f"\ntotal {record['minutes']:.1f} min; written {args.out / 'accuracy.json'}")


if __name__ == "__main__":
    main()
