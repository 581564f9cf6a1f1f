"""Does CVD help its baseline? Sample4Geo vs Sample4Geo+CVD, with an evaluation that can resolve it.

One training world (the demo's, or a University-1652-sized one), several training seeds, and every
trained model tested without fine-tuning on many worlds from the same generator:

- in-domain: the training world's own test split, and ``--test-worlds`` more demo-sized worlds
  (other world seeds, same options) each ranked against its own gallery, so the test buildings
  number in the thousands;
- shift (the paper's Table 7 / Table 2 at 150 m): ``--shift-worlds`` worlds of lower, more
  oblique drones (altitudes 110 / 150 m, pitch 36-46 deg) and as many SUES-200-layout worlds
  (another world seed), scored per altitude.

Every figure is the mean over test worlds with its test-set sampling error (the standard error
over worlds: each world is an independent draw of test buildings); every comparison is the paired
difference with the baseline (same training seed, same data order, same initial backbone), per
seed and as a mean with a 95% t-interval over seeds.

    .venv/bin/python benchmarks/accuracy.py                              # demo world, seeds 0 1 2, CPU
    .venv/bin/python benchmarks/accuracy.py --train-world large --epochs 3
    .venv/bin/python benchmarks/accuracy.py --variants baseline toolkit \\
        --variant nocentre=cvd.enabled=true,cvd.centre=false            # an ablation as one more row
    .venv/bin/python benchmarks/accuracy.py --val-folds 0 1 --seeds 0   # choose settings: validation only

Runs, per-world results (``results.jsonl``, resumable: finished runs and evaluations are skipped)
and the summary (``summary.json``, ``summary.md``) go under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from cvd.atomic import atomic_write_text
from cvd.config import load_config, packaged_config_path

VARIANTS: dict[str, list[str]] = {
    "baseline": ["cvd.enabled=false"],
    "toolkit": ["cvd.enabled=true", "cvd.variant=toolkit"],
    "paper": ["cvd.enabled=true", "cvd.variant=paper"],
}
METRICS = ("R@1", "AP")
OBLIQUE = {"altitudes": [110.0, 150.0], "drone_pitch_deg": [36.0, 46.0]}


@dataclass(frozen=True)
class World:
    """One generated dataset: what ``cvd.data.synthetic.generate`` is called with."""

    name: str
    layout: str
    locations: int
    views: int
    seed: int
    options: Mapping[str, Any] = field(default_factory=dict)
    size: int = 128
    data_options: str = "{}"  # data.options when testing on it (SUES-200: every altitude)

    @property
    def dataset(self) -> str:
        return self.layout

    def generate(self, root: Path, workers: int) -> Path:
        from cvd.data.synthetic import generate

        return generate(
            self.layout,
            root / self.name,
            locations=self.locations,
            views_per_location=self.views,
            size=self.size,
            seed=self.seed,
            workers=workers,
            **dict(self.options),
        )


TRAIN_WORLDS = {
    "demo": World("train-demo", "university1652", 160, 8, 0),  # the demo's own world
    "large": World("train-large", "university1652", 600, 8, 50),  # 300 training buildings
}


def test_worlds(count: int, shift: int) -> dict[str, list[World]]:
    """The test settings and their worlds (seeds disjoint from the training worlds')."""
    return {
        "in-domain": [World(f"test-{k}", "university1652", 160, 8, 100 + k) for k in range(count)],
        "oblique": [World(f"oblique-{k}", "university1652", 160, 8, 200 + k, OBLIQUE) for k in range(shift)],
        "sues200": [
            World(f"sues-{k}", "sues200", 200, 4, 300 + k, data_options="{altitude: [150, 200, 250, 300]}")
            for k in range(shift)
        ],
    }


def run_config(world_root: Path, runs: Path, name: str, variant: Sequence[str], seed: int, args: Any) -> dict:
    """The demo's recipe (src/cvd/configs/demo.yaml) for one variant and seed."""
    return load_config(
        packaged_config_path("demo.yaml"),
        [
            f"name={name}",
            f"output_dir={runs}",
            f"data.root={world_root}",
            f"schedule.epochs={args.epochs}",
            f"data.batch_size={args.batch}",
            f"seed={seed}",
            f"train.device={args.device}",
            "checkpoint.keep_last=1",
            *([f"data.num_workers={args.workers}"] if args.workers is not None else []),
            *variant,
            *args.override,
        ],
    )


def evaluate_on(model: torch.nn.Module, trained: Mapping[str, Any], world: World, root: Path) -> list[dict]:
    """The model's metrics on every split of one test world (no fine-tuning)."""
    from cvd.engine.data import dataset_from_config
    from cvd.engine.distributed import DistContext
    from cvd.engine.evaluate import evaluate_model
    from cvd.engine.trained_eval import resolve_test_config

    overrides = [f"data.root={root}", f"data.dataset={world.dataset}", f"data.options={world.data_options}"]
    config = resolve_test_config(dict(trained), None, overrides)
    benchmark = SimpleNamespace(benchmark=dataset_from_config(config))
    return evaluate_model(model, benchmark, config, DistContext())


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _append(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    with path.open("a") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


def train_and_test(args: Any, variants: Mapping[str, list[str]], settings: Mapping[str, list[World]]) -> Path:
    """Generate the worlds, train every (variant, seed), test each model on every world."""
    from cvd.engine.trained_eval import load_trained
    from cvd.engine.trainer import fit

    data = args.data or args.out / "worlds"
    train_world = TRAIN_WORLDS[args.train_world]
    roots = {train_world.name: train_world.generate(data, args.gen_workers)}
    for worlds in settings.values():
        for world in worlds:
            roots[world.name] = world.generate(data, args.gen_workers)
    print(f"worlds ready under {data}", flush=True)
    log = args.out / "results.jsonl"
    done = {(r["variant"], r["seed"], r["world"]) for r in _records(log)}
    for seed in args.seeds:
        for variant, overrides in variants.items():
            name = f"{args.train_world}_{variant}_seed{seed}"
            run_dir = args.out / "runs" / name
            if not (run_dir / "release").is_dir():
                started = time.perf_counter()
                config = run_config(roots[train_world.name], args.out / "runs", name, overrides, seed, args)
                result = fit(config, overwrite=True)
                _append(
                    log, _rows(result.results, variant, seed, "train-world", train_world, "own test split")
                )
                print(f"trained {name} in {time.perf_counter() - started:.0f} s", flush=True)
            model, trained, _ = load_trained(run_dir)
            model.eval().to(memory_format=torch.channels_last)
            for setting, worlds in settings.items():
                for world in worlds:
                    if (variant, seed, world.name) in done:
                        continue
                    results = evaluate_on(model, trained, world, roots[world.name])
                    _append(log, _rows(results, variant, seed, setting, world, world.name))
            print(f"tested {name}", flush=True)
    return log


def validation_worlds(count: int) -> list[World]:
    """Demo-sized worlds for choosing settings: seeds of their own, never a test world's."""
    return [World(f"val-{k}", "university1652", 160, 8, 900 + k) for k in range(count)]


def validate(args: Any, variants: Mapping[str, list[str]]) -> Path:
    """Settings are chosen here, never on test worlds: each (variant, seed) trained with
    ``--val-fraction`` of the training world's buildings held out (``data.val_seed`` = fold) and
    scored on those held-out buildings (setting "validation", one "world" per fold), then on
    ``--val-worlds`` validation worlds (setting "validation worlds"): more buildings from the
    training distribution, so the choice is not made on 20 buildings' noise."""
    from cvd.engine.trained_eval import load_trained
    from cvd.engine.trainer import fit

    data = args.data or args.out / "worlds"
    train_world = TRAIN_WORLDS[args.train_world]
    root = train_world.generate(data, args.gen_workers)
    extra_worlds = {
        w.name: (w, w.generate(data, args.gen_workers)) for w in validation_worlds(args.val_worlds)
    }
    log = args.out / "validation.jsonl"
    done = {(r["variant"], r["seed"], r["world"]) for r in _records(log)}
    for fold in args.val_folds:
        for seed in args.seeds:
            for variant, overrides in variants.items():
                fold_world = World(f"fold-{fold}", train_world.layout, 0, 0, fold)
                name = f"{args.train_world}_{variant}_seed{seed}_fold{fold}"
                run_dir = args.out / "val_runs" / name
                if (variant, seed, fold_world.name) not in done:
                    extra = [f"data.val_fraction={args.val_fraction}", f"data.val_seed={fold}"]
                    config = run_config(root, args.out / "val_runs", name, [*overrides, *extra], seed, args)
                    results = [
                        r for r in fit(config, overwrite=True).results if r["split"].startswith("val: ")
                    ]
                    _append(log, _rows(results, variant, seed, "validation", fold_world, fold_world.name))
                    print(f"validated {name}", flush=True)
                missing = [n for n in extra_worlds if (variant, seed, f"{fold_world.name}/{n}") not in done]
                if not missing:
                    continue
                model, trained, _ = load_trained(run_dir)
                model.eval().to(memory_format=torch.channels_last)
                for world_name in missing:
                    world, world_root = extra_worlds[world_name]
                    tagged = World(f"{fold_world.name}/{world_name}", world.layout, 0, 0, world.seed)
                    results = evaluate_on(model, trained, world, world_root)
                    _append(log, _rows(results, variant, seed, "validation worlds", tagged, tagged.name))
    return log


def _rows(
    results: Sequence[Mapping[str, Any]], variant: str, seed: int, setting: str, world: World, label: str
):
    for result in results:
        yield {
            "variant": variant,
            "seed": seed,
            "setting": setting,
            "world": world.name if setting != "train-world" else "train-world",
            "split": result["split"],
            "queries": result.get("num_queries"),
            **{metric: float(result[metric]) for metric in METRICS},
        }


# ---------------------------------------------------------------------------------- summary
def t_quantile(degrees: int) -> float:
    """97.5% quantile of Student's t (small table; 1.96 beyond it)."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
    return table.get(degrees, 1.96)


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (nan for a single value)."""
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return mean, se


def _complete_worlds(values: Mapping[tuple, float], variant: str, seeds: Sequence[int]) -> list[str]:
    """The worlds on which ``variant`` was scored for every one of ``seeds``."""
    worlds = {w for v, _, w in values if v == variant}
    return sorted(w for w in worlds if all((variant, s, w) in values for s in seeds))


def _over_worlds(per_world: Mapping[str, Sequence[float]]) -> tuple[float, float | None]:
    """Mean over worlds of the seed-averaged figure, and its test-set sampling error: the
    standard error over worlds (each world an independent draw of test buildings)."""
    means = [statistics.fmean(v) for v in per_world.values()]
    mean, se = mean_se(means)
    return mean, (se if len(means) > 1 else None)


def summarise(records: Sequence[Mapping[str, Any]], baseline: str = "baseline") -> list[dict[str, Any]]:
    """One row per (setting, split, metric, variant): the mean over seeds and test worlds with
    its test-set sampling error, the per-seed figures, and the paired difference with the
    baseline (same seed, same worlds) with a 95% t-interval over seeds."""
    by_key: dict[tuple, dict[tuple, float]] = {}
    for r in records:
        split = r["split"].replace("val: ", "")
        for metric in METRICS:
            by_key.setdefault((r["setting"], split, metric), {})[(r["variant"], r["seed"], r["world"])] = r[
                metric
            ]
    rows = []
    for (setting, split, metric), values in sorted(by_key.items()):
        variants = sorted({v for v, _, _ in values}, key=lambda v: (v != baseline, v))
        for variant in variants:
            seeds = sorted({s for v, s, _ in values if v == variant})
            worlds = _complete_worlds(values, variant, seeds)
            if not worlds:
                continue
            per_seed = {s: statistics.fmean(values[(variant, s, w)] for w in worlds) for s in seeds}
            mean, test_se = _over_worlds({w: [values[(variant, s, w)] for s in seeds] for w in worlds})
            row: dict[str, Any] = {
                "setting": setting,
                "split": split,
                "metric": metric,
                "variant": variant,
                "worlds": len(worlds),
                "seeds": seeds,
                "per_seed": {s: round(m, 3) for s, m in per_seed.items()},
                "mean": mean,
                "seed_sd": statistics.stdev(per_seed.values()) if len(seeds) > 1 else None,
                "test_se": test_se,
            }
            paired_seeds = [s for s in seeds if all((baseline, s, w) in values for w in worlds)]
            if variant != baseline and paired_seeds:
                diff = {
                    w: [values[(variant, s, w)] - values[(baseline, s, w)] for s in paired_seeds]
                    for w in worlds
                }
                per_seed_diff = {
                    s: statistics.fmean(values[(variant, s, w)] - values[(baseline, s, w)] for w in worlds)
                    for s in paired_seeds
                }
                diff_mean, diff_se = _over_worlds(diff)
                sd = statistics.stdev(per_seed_diff.values()) if len(paired_seeds) > 1 else float("nan")
                half = (
                    t_quantile(len(paired_seeds) - 1) * sd / math.sqrt(len(paired_seeds))
                    if len(paired_seeds) > 1
                    else float("nan")
                )
                row["difference"] = {
                    "per_seed": {s: round(d, 3) for s, d in per_seed_diff.items()},
                    "mean": diff_mean,
                    "ci95": [diff_mean - half, diff_mean + half],
                    "all_seeds_positive": all(d > 0 for d in per_seed_diff.values()),
                    "test_se": diff_se,
                }
            rows.append(row)
    return rows


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a markdown table (one line per setting, split, metric and variant)."""
    lines = [
        "| setting | split | metric | variant | worlds | per seed | mean | test SE "
        "| diff vs baseline per seed | mean diff [95% CI] | diff test SE |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        diff = row.get("difference")
        per_seed = " / ".join(_fmt(v) for v in row["per_seed"].values())
        diff_cells = ["", "", ""]
        if diff:
            low, high = diff["ci95"]
            diff_cells = [
                " / ".join(f"{v:+.2f}" for v in diff["per_seed"].values()),
                f"{diff['mean']:+.2f} [{_fmt(low)}, {_fmt(high)}]",
                _fmt(diff["test_se"]),
            ]
        lines.append(
            f"| {row['setting']} | {row['split']} | {row['metric']} | {row['variant']} | {row['worlds']} | "
            f"{per_seed} | {row['mean']:.2f} | {_fmt(row['test_se'])} | " + " | ".join(diff_cells) + " |"
        )
    return "\n".join(lines)


def parse_variants(names: Sequence[str], extra: Sequence[str]) -> dict[str, list[str]]:
    variants = {name: VARIANTS[name] for name in names}
    for text in extra:
        name, _, overrides = text.partition("=")
        if not name or not overrides:
            raise SystemExit(f"--variant {text!r}: expected NAME=key=value,key=value")
        variants[name] = overrides.split(",")
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/cvd-accuracy"))
    parser.add_argument("--data", type=Path, default=None, help="folder of the worlds (default OUT/worlds)")
    parser.add_argument("--train-world", choices=sorted(TRAIN_WORLDS), default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--variants", nargs="*", choices=sorted(VARIANTS), default=["baseline", "toolkit", "paper"]
    )
    parser.add_argument("--variant", action="append", default=[], help="NAME=override,override (an ablation)")
    parser.add_argument("--test-worlds", type=int, default=24, help="in-domain test worlds")
    parser.add_argument("--shift-worlds", type=int, default=8, help="oblique and SUES-200 worlds each")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32, help="global batch (locations)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=None, help="data.num_workers (default: the demo's)")
    parser.add_argument("--gen-workers", type=int, default=2, help="processes rendering the worlds")
    parser.add_argument("--override", nargs="*", default=[], help="dotted overrides for every run")
    parser.add_argument(
        "--val-folds",
        type=int,
        nargs="*",
        default=None,
        help="choose settings instead: train with held-out validation buildings, one run per fold",
    )
    parser.add_argument("--val-fraction", type=float, default=0.25, help="share of buildings held out")
    parser.add_argument(
        "--val-worlds", type=int, default=4, help="validation worlds each fold's models are scored on"
    )
    parser.add_argument("--generate-only", action="store_true", help="make the worlds and stop")
    parser.add_argument("--summary-only", action="store_true", help="summarise OUT/results.jsonl and stop")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = test_worlds(args.test_worlds, args.shift_worlds)
    variants = parse_variants(args.variants, args.variant)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, cuda: {gpu}",
        flush=True,
    )
    if args.generate_only:
        data = args.data or args.out / "worlds"
        TRAIN_WORLDS[args.train_world].generate(data, args.gen_workers)
        for worlds in settings.values():
            for world in worlds:
                world.generate(data, args.gen_workers)
        return
    if args.val_folds is not None:
        log = args.out / "validation.jsonl"
        if not args.summary_only:
            validate(args, variants)
        rows = summarise(_records(log))
        atomic_write_text(args.out / "validation.md", markdown(rows) + "\n")
        print(markdown(rows))
        return
    log = args.out / "results.jsonl"
    if not args.summary_only:
        started = time.perf_counter()
        train_and_test(args, variants, settings)
        print(f"all runs and tests: {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    rows = summarise(_records(log))
    record = {
        "train_world": asdict(TRAIN_WORLDS[args.train_world]),
        "seeds": args.seeds,
        "variants": variants,
        "rows": rows,
    }
    atomic_write_text(args.out / "summary.json", json.dumps(record, indent=2))
    table = markdown(rows)
    atomic_write_text(args.out / "summary.md", table + "\n")
    print(table)


if __name__ == "__main__":
    main()
