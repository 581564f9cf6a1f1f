"""Do CVD's constraints do their jobs? ``cvd analyze`` over trained runs, one table per variant.

For every run folder given (e.g. the runs of ``benchmarks/accuracy.py``, named
``<world>_<variant>_seed<k>``), the diagnostics of ``cvd analyze`` on the held-out test split at
``--data``: dependence of the pooled content and viewpoint (HSIC, distance correlation, with
permutation p-values), linear probes of the view and the drone's altitude from each factor,
and the reconstruction's error against the mean predictor with the content swap test. The
table gives each number's mean and standard deviation over a variant's seeds.

    .venv/bin/python benchmarks/disentanglement.py /work/runs/final/runs/demo_*_seed* \\
        --data /work/runs/worlds/train-demo --out /work/runs/analysis
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cvd.atomic import atomic_write_text

QUANTITIES: dict[str, Callable[[Mapping[str, Any]], float | None]] = {
    "HSIC(zc, zv), drone": lambda r: _get(r, "dependence", "drone", "hsic", "statistic"),
    "HSIC(zc, zv), satellite": lambda r: _get(r, "dependence", "satellite", "hsic", "statistic"),
    "dCor^2(zc, zv), drone": lambda r: _get(r, "dependence", "drone", "distance_correlation", "statistic"),
    "dCor^2(zc, zv), satellite": lambda r: _get(
        r, "dependence", "satellite", "distance_correlation", "statistic"
    ),
    "view probe from zc (bal. acc.)": lambda r: _get(
        r, "probes", "view_balanced_accuracy", "content", "score"
    ),
    "view probe from zv (bal. acc.)": lambda r: _get(
        r, "probes", "view_balanced_accuracy", "viewpoint", "score"
    ),
    "altitude probe from zc (R^2)": lambda r: _get(r, "probes", "altitude_r2", "content", "score"),
    "altitude probe from zv (R^2)": lambda r: _get(r, "probes", "altitude_r2", "viewpoint", "score"),
    "D^q: MSE / mean predictor": lambda r: _get(r, "reconstruction", "query", "relative_mse_matched"),
    "D^q: MSE, other location's content / matched": lambda r: _ratio(r, "query"),
    "D^q: content sensitivity": lambda r: _get(r, "reconstruction", "query", "content_sensitivity"),
    "D^s: MSE / mean predictor": lambda r: _get(r, "reconstruction", "satellite", "relative_mse_matched"),
    "D^s: MSE, other location's content / matched": lambda r: _ratio(r, "satellite"),
    "D^s: content sensitivity": lambda r: _get(r, "reconstruction", "satellite", "content_sensitivity"),
}


def _get(node: Any, *keys: str) -> float | None:
    for key in keys:
        if not isinstance(node, Mapping) or node.get(key) is None:
            return None
        node = node[key]
    return float(node)


def _ratio(result: Mapping[str, Any], branch: str) -> float | None:
    swapped = _get(result, "reconstruction", branch, "mse_content_of_another_location")
    matched = _get(result, "reconstruction", branch, "mse_matched")
    return None if swapped is None or not matched else swapped / matched


def variant_of(run: Path) -> str:
    """``demo_toolkit_seed0`` -> ``toolkit``."""
    match = re.fullmatch(r"[^_]+_(.+)_seed\d+", run.name)
    return match.group(1) if match else run.name


def table(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Markdown: one column per variant, mean +- sd over its seeds."""
    variants = list(results)
    lines = ["| quantity | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for name, read in QUANTITIES.items():
        cells = []
        for variant in variants:
            values = [v for v in (read(r) for r in results[variant]) if v is not None]
            if not values:
                cells.append("-")
            elif len(values) == 1:
                cells.append(f"{values[0]:.3f}")
            else:
                cells.append(f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders")
    parser.add_argument("--data", type=Path, required=True, help="benchmark root with the test split")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--locations", type=int, default=80)
    parser.add_argument("--permutations", type=int, default=200)
    args = parser.parse_args()
    from cvd.analysis.run import analyze

    torch.set_num_threads(max(1, torch.get_num_threads()))
    results: dict[str, list[dict[str, Any]]] = {}
    for run in sorted(args.runs):
        target = args.out / run.name
        path = target / "analysis.json"
        if not path.is_file():
            analyze(run, args.data, target, locations=args.locations, permutations=args.permutations)
        results.setdefault(variant_of(run), []).append(json.loads(path.read_text()))
        print(f"analysed {run.name}", flush=True)
    markdown = table(results)
    atomic_write_text(args.out / "disentanglement.md", markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
