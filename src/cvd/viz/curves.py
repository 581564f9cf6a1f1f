"""Loss curves of one or more runs from their ``train_log.csv``."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on our machines
import matplotlib.pyplot as plt


def read_train_log(run_dir: Path) -> list[dict[str, float]]:
    """Rows of a run's training log as numbers (empty cells dropped)."""
    path = run_dir / "train_log.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)
        ]


def plot_loss_curves(runs: Mapping[str, Path], out: Path) -> Path:
    """One panel per loss term found in any run; one line per run, against the optimiser step."""
    logs = {label: read_train_log(path) for label, path in runs.items()}
    skip = {"step", "lr", "epoch", "images_per_s"}
    terms = sorted({key for rows in logs.values() for row in rows for key in row} - skip)
    terms.sort(key=lambda name: (name != "total", name))
    columns = min(3, max(1, len(terms)))
    rows = (len(terms) + columns - 1) // columns or 1
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for axis, term in zip(axes.flat, terms):
        for label, log in logs.items():
            points = [(row["step"], row[term]) for row in log if term in row]
            if points:
                steps, values = zip(*points)
                axis.plot(steps, values, label=label, linewidth=1.4)
        axis.set_title(term)
        axis.set_xlabel("optimiser step")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(terms) :]:
        axis.axis("off")
    if terms:
        axes.flat[0].legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
