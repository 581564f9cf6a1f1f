"""``cvd analyze``: does a trained model disentangle? Figures 3-4 and the numbers behind them.

On held-out (test) images of the benchmark: the dependence between content and viewpoint by
estimators that are not the training loss, linear probes of the view and of the drone's altitude
from each factor, and the reconstruction's errors against trivial predictors with the content
swap test. Everything lands in ``analysis.json``, a markdown/HTML report and two PNGs.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvd.analysis.dependence import distance_correlation_test, hsic_test
from cvd.analysis.factors import Factors, extract_factors
from cvd.analysis.figures import figure3, figure4
from cvd.analysis.probes import ridge_probe
from cvd.analysis.reconstruction_probe import matched_rows, reconstruction_report
from cvd.atomic import atomic_write_text
from cvd.data import ImageRecord
from cvd.errors import ConfigError

LOGGER = logging.getLogger("cvd")


def held_out_records(
    benchmark: Any, config: Mapping[str, Any], locations: int
) -> tuple[list[ImageRecord], list[ImageRecord], str]:
    """(query images, their satellites, query view) of the first ``locations`` test locations."""
    from cvd.engine.evaluate import eval_splits

    splits = [s for s in eval_splits(benchmark, config) if s.name.endswith("->satellite")]
    if not splits:
        raise ConfigError(f"{config['data']['dataset']}: no query->satellite evaluation split to analyse")
    split = splits[0]
    view = split.name.split("->")[0].split("/")[0]
    satellites = {r.label: r for r in split.gallery if r.label >= 0}
    chosen = sorted({r.label for r in split.queries} & set(satellites))[:locations]
    keep = set(chosen)
    queries = [r for r in split.queries if r.label in keep]
    return queries, [satellites[label] for label in chosen], view


def altitudes(records: Sequence[ImageRecord], data_root: Path) -> np.ndarray | None:
    """Flight height of each drone image: SUES-200's folder, or a synthetic world's metadata."""
    values = [r.meta.get("altitude") if r.meta else None for r in records]
    if all(v is not None for v in values):
        return np.asarray(values, dtype=np.float64)
    metadata_file = next(
        (
            p / "cvd_synthetic.json"
            for p in (data_root, *data_root.parents[:1])
            if (p / "cvd_synthetic.json").is_file()
        ),
        None,
    )
    if metadata_file is None:
        return None
    images = json.loads(metadata_file.read_text()).get("images", {})
    root = metadata_file.parent
    values = []
    for record in records:
        try:
            key = Path(record.path).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return None
        entry = images.get(key)
        if entry is None or entry.get("altitude_m") is None:
            return None
        values.append(float(entry["altitude_m"]))
    return np.asarray(values, dtype=np.float64)


def dependence_section(factors: Factors, permutations: int) -> dict[str, Any]:
    """HSIC and distance correlation between pooled zc and zv of one view's held-out images."""
    content, viewpoint = factors.pooled_content, factors.pooled_viewpoint
    return {
        "images": len(factors.records),
        "hsic": hsic_test(content, viewpoint, permutations=permutations).to_dict(),
        "distance_correlation": distance_correlation_test(
            content, viewpoint, permutations=permutations
        ).to_dict(),
        # what retrieval compares is the L2-normalised embedding: does its direction carry zv?
        "embedding_hsic": hsic_test(factors.embedding, viewpoint, permutations=permutations).to_dict(),
    }


def probe_section(query: Factors, satellite: Factors, data_root: Path) -> dict[str, Any]:
    """Linear-probe scores of the view (balanced accuracy) and the altitude (R^2) from each factor."""
    groups = np.array([r.label for r in (*query.records, *satellite.records)])
    views = np.array([0] * len(query.records) + [1] * len(satellite.records))
    names = {"content": "pooled_content", "viewpoint": "pooled_viewpoint", "embedding": "embedding"}
    section: dict[str, Any] = {"view_balanced_accuracy": {}, "altitude_r2": {}}
    for name, attribute in names.items():
        if getattr(query, attribute) is None:
            continue
        both = torch.cat([getattr(query, attribute), getattr(satellite, attribute)]).numpy()
        section["view_balanced_accuracy"][name] = ridge_probe(both, views, groups, kind="classification")
    heights = altitudes(query.records, data_root)
    if heights is None or len(np.unique(heights)) < 2:
        section["altitude_r2"] = None
        return section
    query_groups = np.array([r.label for r in query.records])
    for name, attribute in names.items():
        if getattr(query, attribute) is None:
            continue
        section["altitude_r2"][name] = ridge_probe(getattr(query, attribute).numpy(), heights, query_groups)
    return section


def analyze(
    model_path: Path,
    data_root: Path | None = None,
    out: Path | None = None,
    locations: int = 80,
    permutations: int = 200,
    overrides: Sequence[str] = (),
    figure_locations: int = 4,
) -> Path:
    """Analyse ``model_path`` (run, release or checkpoint) on the test split at ``data_root``;
    returns the ``analysis.json`` path (report and figures beside it)."""
    from cvd.engine.data import dataset_from_config
    from cvd.engine.trained_eval import load_trained, resolve_test_config

    model, trained_config, run_dir = load_trained(Path(model_path))
    extra = [f"data.root={data_root}"] if data_root is not None else []
    config = resolve_test_config(trained_config, None, [*extra, *overrides])
    root = Path(config["data"]["root"])
    out = Path(out) if out is not None else run_dir / "analysis"
    model.eval()
    torch.manual_seed(0)
    benchmark = dataset_from_config(config)
    query_records, satellite_records, view = held_out_records(benchmark, config, locations)
    query = extract_factors(model, query_records, view, config)
    satellite = extract_factors(model, satellite_records, "satellite", config)
    cvd = getattr(model, "cvd", None)
    result: dict[str, Any] = {
        "model": str(model_path),
        "data_root": str(root),
        "cvd": None
        if cvd is None
        else {k: model.cvd_config.get(k) for k in ("variant", "split", "recon_target", "iic_estimator")},
        "locations": len({r.label for r in satellite.records}),
        "images": {view: len(query.records), "satellite": len(satellite.records)},
        "probes": probe_section(query, satellite, root),
        "dependence": None,
        "reconstruction": None,
    }
    if query.viewpoint is not None:
        result["dependence"] = {
            view: dependence_section(query, permutations),
            "satellite": dependence_section(satellite, permutations),
        }
    figures = {}
    shown_q, shown_s = _figure_rows(query, satellite, figure_locations)
    figures["Figure 3: content and viewpoint attention"] = figure3(
        query, satellite, shown_q, shown_s, model.data_config, out / "figure3_attention.png"
    )
    if cvd is not None and cvd.decoders is not None:
        result["reconstruction"] = reconstruction_report(cvd, query, satellite)
        sat_rows, query_rows = matched_rows(query, satellite)
        figures["Figure 4: cross reconstructions"] = figure4(
            cvd,
            {
                "query": (query, satellite.content[sat_rows.clamp_min(0)], shown_q[:2]),
                "satellite": (satellite, query.content[query_rows.clamp_min(0)], shown_s[:2]),
            },
            model.data_config,
            out / "figure4_reconstruction.png",
        )
    atomic_write_text(out / "analysis.json", json.dumps(result, indent=2))
    write_analysis_report(out, result, figures)
    return out / "analysis.json"


def _figure_rows(query: Factors, satellite: Factors, count: int) -> tuple[list[int], list[int]]:
    sat_rows, _ = matched_rows(query, satellite)
    first: dict[int, int] = {}
    for row, record in enumerate(query.records):
        if int(sat_rows[row]) >= 0:
            first.setdefault(record.label, row)
    labels = sorted(first)
    step = max(1, len(labels) // max(1, count))
    chosen = labels[::step][:count]
    return [first[label] for label in chosen], [int(sat_rows[first[label]]) for label in chosen]


def summary_rows(result: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(quantity, content / zc, viewpoint / zv) rows of the report's table."""
    rows: list[tuple[str, str, str]] = []
    probes = result["probes"]

    def score(section: Mapping[str, Any] | None, name: str) -> str:
        entry = (section or {}).get(name)
        return "-" if entry is None else f"{entry['score']:.3f}"

    rows.append(
        (
            "view probe, balanced accuracy (0.5 = chance)",
            score(probes["view_balanced_accuracy"], "content"),
            score(probes["view_balanced_accuracy"], "viewpoint"),
        )
    )
    if probes["altitude_r2"]:
        rows.append(
            (
                "altitude probe, R^2 (0 = none)",
                score(probes["altitude_r2"], "content"),
                score(probes["altitude_r2"], "viewpoint"),
            )
        )
    for view, section in (result.get("dependence") or {}).items():
        for name in ("hsic", "distance_correlation", "embedding_hsic"):
            entry = section[name]
            compared = "embedding vs zv" if name == "embedding_hsic" else "zc vs zv"
            rows.append(
                (
                    f"{view}: {name.replace('embedding_', '')} ({compared}), p-value",
                    f"{entry['statistic']:.4f}",
                    f"p = {entry['p_value']:.3f}",
                )
            )
    for branch, section in (result.get("reconstruction") or {}).items():
        rows.append(
            (
                f"D^{branch[0]}: MSE matched / mean predictor",
                f"{section['mse_matched']:.4f}",
                f"{section['mse_mean_predictor']:.4f}",
            )
        )
        per_image = section["mse_per_image_mean_predictor"]
        rows.append(
            (
                f"D^{branch[0]}: MSE other location's content / per-image mean",
                f"{section['mse_content_of_another_location']:.4f}",
                "-" if per_image is None else f"{per_image:.4f}",
            )
        )
        rows.append(
            (
                f"D^{branch[0]}: content / viewpoint sensitivity",
                f"{section['content_sensitivity']:.3f}",
                f"{section['viewpoint_sensitivity']:.3f}",
            )
        )
    return rows


def write_analysis_report(out: Path, result: Mapping[str, Any], figures: Mapping[str, Path]) -> None:
    """``analysis.md`` and ``index.html``: the table and the figures."""
    rows = summary_rows(result)
    intro = (
        f"Model {result['model']} on {result['locations']} held-out locations of {result['data_root']} "
        f"({', '.join(f'{n} {v} images' for v, n in result['images'].items())})."
    )
    lines = ["# CVD analysis", "", intro, "", "| quantity | content (zc) | viewpoint (zv) |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    for caption, path in figures.items():
        lines += ["", f"## {caption}", "", f"![{caption}]({path.name})"]
    atomic_write_text(out / "analysis.md", "\n".join(lines) + "\n")
    table = "".join(
        f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
        for a, b, c in rows
    )
    images = "".join(
        f"<h2>{html.escape(c)}</h2><img src='{html.escape(p.name)}'>" for c, p in figures.items()
    )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}"
    )
    header = "<tr><th>quantity</th><th>content (zc)</th><th>viewpoint (zv)</th></tr>"
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>CVD analysis</title><style>{style}</style>"
        f"</head><body><h1>CVD analysis</h1><p>{html.escape(intro)}</p><table>{header}{table}</table>"
        f"{images}</body></html>"
    )
    atomic_write_text(out / "index.html", page)
