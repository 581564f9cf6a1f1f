"""Human and machine records of an evaluation: one-line summary, JSON beside a run, altitude table.

A number without its protocol, gallery variant, TTA setting and sizes cannot be compared with a
published table, so every rendering here carries them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvd.atomic import atomic_write_text

HEADLINE_METRICS = ("R@1", "R@5", "R@10", "R@1%", "AP")
TABLE_METRICS = ("R@1", "R@5", "R@10", "R@1%", "AP", "AP_textbook")
RECORD_FIELDS = ("protocol", "gallery_variant", "flip_tta", "split")


def summary_line(result: Mapping[str, Any]) -> str:
    """One line naming protocol, split, gallery variant, TTA and sizes before the figures."""
    context = [result.get("split") or "split=unspecified"]
    variant = result.get("gallery_variant")
    context.append(f"gallery={variant or 'unspecified'}")
    context.append(f"tta={'flip' if result.get('flip_tta') else 'off'}")
    sizes = f"{result['num_queries']} queries x {result['num_gallery']} gallery"
    if result.get("num_gallery_ranked", result["num_gallery"]) != result["num_gallery"]:
        sizes += f" ({result['num_gallery_ranked']} ranked)"
    figures = []
    for name in HEADLINE_METRICS:
        if name in result:
            label = f"R@1%(K={result['R@1%_K']})" if name == "R@1%" and "R@1%_K" in result else name
            figures.append(f"{label} {result[name]:.2f}")
    if "AP_textbook" in result:
        figures.append(f"(textbook AP {result['AP_textbook']:.2f})")
    line = f"{result['protocol']} [{', '.join(context)}] {sizes}: {' '.join(figures)}"
    return line + _reduced_note(result.get("reduced"))


def _reduced_note(reduced: Mapping[str, Any] | None) -> str:
    """What a figure computed on fewer images than the benchmark's misses (empty when complete)."""
    if not reduced:
        return ""
    parts = []
    dropped_q, dropped_g = (
        reduced.get("queries_dropped_unreadable", 0),
        reduced.get("gallery_dropped_unreadable", 0),
    )
    if dropped_q or dropped_g:
        parts.append(f"{dropped_q} queries + {dropped_g} gallery unreadable, dropped")
    if reduced.get("queries_without_gallery_match"):
        parts.append(f"{reduced['queries_without_gallery_match']} queries without a gallery match")
    return f" [REDUCED SET: {'; '.join(parts)}]" if parts else ""


def write_json(result: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``result`` as JSON atomically (temporary file + rename): a crash never leaves a
    half-written file where a previous complete one stood."""
    target = Path(path)
    atomic_write_text(target, json.dumps(_jsonable(result), indent=2, sort_keys=True, allow_nan=False) + "\n")
    return target


def aggregate_altitudes(results: Mapping[int | str, Mapping[str, Any]]) -> dict[str, Any]:
    """Combine per-altitude results (SUES-200: one evaluation per altitude) into one table.

    Returns ``{"protocol", "gallery_variant", "flip_tta", "split", "metrics", "altitudes":
    {altitude: {metric: value, "num_queries", "num_gallery"}}, "mean": {metric: value}}``. The
    mean is the unweighted mean over altitudes, given for convenience; tables report each
    altitude. Results must share protocol, gallery variant, TTA and split.
    """
    if not results:
        raise ValueError("aggregate_altitudes needs at least one altitude's result")
    items = sorted(results.items(), key=lambda item: _altitude_key(item[0]))
    first = items[0][1]
    for altitude, result in items:
        for field in RECORD_FIELDS:
            if result.get(field) != first.get(field):
                raise ValueError(
                    f"altitude {altitude} has {field}={result.get(field)!r} but altitude "
                    f"{items[0][0]} has {field}={first.get(field)!r}; a table mixes one setting"
                )
    metrics = [name for name in _metric_names(first) if all(name in r for _, r in items)]
    table: dict[str, Any] = {field: first.get(field) for field in RECORD_FIELDS}
    table["metrics"] = metrics
    table["altitudes"] = {
        str(altitude): {
            **{name: float(result[name]) for name in metrics},
            "num_queries": int(result["num_queries"]),
            "num_gallery": int(result["num_gallery"]),
        }
        for altitude, result in items
    }
    table["mean"] = {name: float(np.mean([float(r[name]) for _, r in items])) for name in metrics}
    return table


def format_altitude_table(table: Mapping[str, Any]) -> str:
    """Markdown table of :func:`aggregate_altitudes` output, one row per altitude plus the mean."""
    metrics = list(table["metrics"])
    title = (
        f"{table['protocol']} [{table.get('split') or 'split=unspecified'}, "
        f"gallery={table.get('gallery_variant') or 'unspecified'}, "
        f"tta={'flip' if table.get('flip_tta') else 'off'}]"
    )
    lines = [title, "", "| altitude | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    rows = [*table["altitudes"].items(), ("mean", table["mean"])]
    for altitude, values in rows:
        lines.append(f"| {altitude} | " + " | ".join(f"{values[name]:.2f}" for name in metrics) + " |")
    return "\n".join(lines)


def _metric_names(result: Mapping[str, Any]) -> list[str]:
    recalls = [name for name in result if name.startswith("R@") and name[2:].isdigit()]
    recalls.sort(key=lambda name: int(name[2:]))
    return recalls + [name for name in TABLE_METRICS if name in result and name not in recalls]


def _altitude_key(altitude: int | str) -> tuple[int, float | str]:
    try:
        return (0, float(altitude))
    except (TypeError, ValueError):
        return (1, str(altitude))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot write non-finite number {value!r} to JSON")
    return value


__all__ = ["aggregate_altitudes", "format_altitude_table", "summary_line", "write_json"]
