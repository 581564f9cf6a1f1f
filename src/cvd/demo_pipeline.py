"""``cvd demo``: the whole toolkit end to end, offline, on a CPU, in about ten minutes.

1. Generate a synthetic cross-view world in University-1652's layout (``cvd.data.synthetic``).
2. Train Sample4Geo and Sample4Geo+CVD on it from offline ImageNet weights
   (tf_efficientnet_lite0 at 128 px), with the same recipe and budget.
3. Evaluate both with the University-1652 protocol in both directions.
4. Write a report: metrics table, loss curves, retrieval grids, summary (markdown and HTML).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cvd.config import load_config, packaged_config_path

LOGGER = logging.getLogger("cvd")


@dataclass(frozen=True)
class DemoSize:
    """How big the demo's world and training are."""

    locations: int
    views_per_location: int
    image_size: int
    epochs: int
    batch_size: int  # the global batch needs at least this many training locations


# Sized for ~10 minutes (full) and ~2 minutes (quick) on 2 CPU cores, see docs/benchmarks.md.
FULL = DemoSize(locations=160, views_per_location=8, image_size=128, epochs=6, batch_size=32)
QUICK = DemoSize(locations=48, views_per_location=4, image_size=128, epochs=3, batch_size=16)
VARIANTS = (("Sample4Geo", "sample4geo", False), ("Sample4Geo+CVD", "sample4geo_cvd", True))


def _stage(number: int, total: int, text: str) -> None:
    print(f"[{number}/{total}] {text}", file=sys.stderr, flush=True)


def demo_configs(
    data_root: Path, runs_dir: Path, size: DemoSize, seed: int, overrides: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """The two run configs: identical but for ``cvd.enabled``."""
    configs = []
    for label, name, cvd_on in VARIANTS:
        config = load_config(
            packaged_config_path("demo.yaml"),
            [
                f"name={name}",
                f"output_dir={runs_dir}",
                f"data.root={data_root}",
                f"cvd.enabled={str(cvd_on).lower()}",
                f"schedule.epochs={size.epochs}",
                f"data.batch_size={size.batch_size}",
                f"seed={seed}",
                *overrides,
            ],
        )
        configs.append((label, config))
    return configs


def run_demo(
    out: Path,
    quick: bool = False,
    seed: int = 0,
    overrides: list[str] | None = None,
    size: DemoSize | None = None,
) -> Path:
    """Run the demo into ``out``; returns the report's HTML page."""
    from cvd.data.synthetic import generate
    from cvd.engine.trainer import fit

    size = size or (QUICK if quick else FULL)
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    _stage(
        1,
        4,
        f"generating a synthetic world: {size.locations} locations, "
        f"{size.views_per_location} drone views each, {size.image_size} px (University-1652 layout)",
    )
    data_root = generate(
        "university1652",
        out / "data",
        locations=size.locations,
        views_per_location=size.views_per_location,
        size=size.image_size,
        seed=seed,
        progress=True,
        overwrite=True,  # a previous --quick world in the same folder is replaced, not an error
        workers=2,
    )

    results: dict[str, list[dict[str, Any]]] = {}
    run_dirs: dict[str, Path] = {}
    configs = demo_configs(data_root, out / "runs", size, seed, list(overrides or []))
    print("    reference: the ImageNet weights before any training", file=sys.stderr, flush=True)
    results[UNTRAINED] = evaluate_untrained(configs[0][1])
    for line in results[UNTRAINED]:
        print("    " + line["summary"], file=sys.stderr, flush=True)
    for number, (label, config) in enumerate(configs, start=2):
        _stage(number, 4, f"training {label} ({size.epochs} epochs, CPU) and evaluating it")
        result = fit(config, overwrite=True)  # the demo's own folder: a rerun starts afresh
        results[label] = result.results
        run_dirs[label] = result.run_dir
        for line in result.results:
            print("    " + line["summary"], file=sys.stderr, flush=True)

    _stage(4, 4, "writing the report (with the CVD run's disentanglement analysis)")
    from cvd.analysis.run import analyze

    analysis = analyze(run_dirs[VARIANTS[1][0]], data_root, out / "report" / "analysis")
    report = write_demo_report(out / "report", results, run_dirs, data_root, size, seed, analysis)
    minutes = (time.perf_counter() - started) / 60
    print(f"done in {minutes:.1f} min. Report:", file=sys.stderr, flush=True)
    print(report)  # the one line of data: where the report is
    return report


UNTRAINED = "ImageNet lite0, no training"


def evaluate_untrained(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The starting point of both runs, evaluated the same way: what training adds."""
    from types import SimpleNamespace

    from cvd.engine.data import dataset_from_config
    from cvd.engine.distributed import DistContext
    from cvd.engine.evaluate import evaluate_model
    from cvd.factory import build_model

    torch.manual_seed(int(config["seed"]))
    model = build_model(config).eval()
    benchmark = SimpleNamespace(benchmark=dataset_from_config(config))
    return evaluate_model(model, benchmark, config, DistContext())


def write_demo_report(
    out: Path,
    results: dict[str, list[dict[str, Any]]],
    run_dirs: dict[str, Path],
    data_root: Path,
    size: DemoSize,
    seed: int,
    analysis: Path | None = None,
) -> Path:
    """Metrics table, loss curves, one retrieval grid per run, the CVD analysis, summary."""
    from cvd.viz.comparison import write_report
    from cvd.viz.curves import plot_loss_curves

    figures = {"Loss curves": plot_loss_curves(run_dirs, out / "loss_curves.png")}
    # (the untrained reference has a metrics row but no run folder)
    for label, run_dir in run_dirs.items():
        figures[f"Retrieval, {label} (drone -> satellite, top 5)"] = retrieval_figure(
            run_dir, data_root, out / f"retrieval_{run_dir.name}.png", title=label
        )
    tables: dict[str, str] = {}
    if analysis is not None:
        import json

        from cvd.analysis.run import summary_rows

        rows = summary_rows(json.loads(analysis.read_text()))
        tables["Disentanglement of the CVD run (cvd analyze, held-out images)"] = "\n".join(
            [
                "| quantity | content (zc) | viewpoint (zv) |",
                "|---|---|---|",
                *(f"| {a} | {b} | {c} |" for a, b, c in rows),
            ]
        )
        for name in ("figure3_attention.png", "figure4_reconstruction.png"):
            if (analysis.parent / name).is_file():
                figures[f"CVD analysis: {name.split('_')[0].replace('figure', 'Figure ')}"] = (
                    analysis.parent / name
                )
    intro = (
        f"Synthetic world (seed {seed}, {size.locations} locations, {size.views_per_location} "
        f"drone views per location, {size.image_size} px, University-1652 layout) at {data_root}. "
        f"Both runs use the same recipe (Sample4Geo: tf_efficientnet_lite0 with offline ImageNet "
        f"weights, symmetric InfoNCE, one pair per location per batch) and budget "
        f"({size.epochs} epochs); the second adds CVD. The first rows evaluate the shared "
        f"starting point (ImageNet weights, no training). Evaluation: University-1652 protocol, "
        f"sample4geo gallery variant, no flip TTA."
    )
    notes = [
        "One seed per run: differences of a point or two are within seed-to-seed spread; "
        "benchmarks/accuracy.py measures the spread over 3 seeds (docs/benchmarks.md).",
        *(
            [
                "--quick is a smoke run of the whole pipeline: a world this small (and this few "
                "optimiser steps) is too little to learn from, so the trained rows may fall below "
                "the untrained one. Run the default demo to see what training does."
            ]
            if size == QUICK
            else []
        ),
        f"Run folders (config, logs, checkpoints, released weights): "
        f"{', '.join(str(p) for p in run_dirs.values())}",
    ]
    return write_report(out, "cvd demo: Sample4Geo vs Sample4Geo+CVD", intro, results, figures, notes, tables)


def retrieval_figure(run_dir: Path, data_root: Path, out: Path, title: str, queries: int = 6) -> Path:
    """Top-5 satellites of a few drone queries of the test split, from the run's released model."""
    from cvd.data import University1652
    from cvd.engine.distributed import DistContext
    from cvd.engine.evaluate import RecordEmbedder
    from cvd.engine.trained_eval import load_trained, resolve_test_config
    from cvd.viz.retrieval import retrieval_grid

    model, config, _ = load_trained(run_dir)
    config = resolve_test_config(config, None, [f"data.root={data_root}"])
    model.eval()
    split = next(
        s
        for s in University1652(data_root).eval_splits(gallery_variant="sample4geo")
        if s.name.startswith("drone")
    )
    step = max(1, len(split.queries) // queries)
    chosen = split.queries[::step][:queries]
    gallery = [record for record in split.gallery if record.label != -1]
    embed = RecordEmbedder(model, config, model.data_config, DistContext())
    scores = embed(chosen, "grid queries") @ embed(gallery, "grid gallery").T
    top = scores.topk(min(5, len(gallery)), dim=1)  # a toy world may rank fewer than 5
    return retrieval_grid(
        [r.path for r in chosen],
        [r.label for r in chosen],
        [[gallery[i].path for i in row] for row in top.indices.tolist()],
        [[gallery[i].label for i in row] for row in top.indices.tolist()],
        top.values.tolist(),
        out,
        title=title,
    )
