"""Summary line, atomic JSON, per-altitude table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cvd.evaluation import (
    aggregate_altitudes,
    format_altitude_table,
    retrieval_metrics,
    summary_line,
    write_json,
)


def result_for(seed: int, **record):
    rng = np.random.default_rng(seed)
    return retrieval_metrics(
        rng.standard_normal((20, 30)), rng.integers(0, 10, 20), rng.integers(-1, 10, 30), **record
    )


def test_summary_line_names_protocol_split_variant_tta_and_sizes():
    result = retrieval_metrics(
        np.eye(3),
        [0, 1, 2],
        [0, 1, -1],
        gallery_variant="sample4geo",
        flip_tta=True,
        split="drone->satellite",
    )
    line = summary_line(result)
    assert line.startswith("university1652 [drone->satellite, gallery=sample4geo, tta=flip]")
    assert "3 queries x 3 gallery (2 ranked)" in line
    assert "R@1 66.67" in line and "R@1%(K=1)" in line and "AP 66.67" in line
    assert "\n" not in line
    plain = summary_line(retrieval_metrics(np.eye(2), [0, 1], [0, 1], "cvusa"))
    assert "gallery=unspecified" in plain and "tta=off" in plain and "(2 ranked)" not in plain


def test_write_json_round_trips_and_leaves_no_temporary(tmp_path):
    result = result_for(0, split="drone->satellite")
    target = write_json(result, tmp_path / "run" / "eval.json")
    assert json.loads(target.read_text()) == json.loads(json.dumps(result))
    assert [p.name for p in target.parent.iterdir()] == ["eval.json"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "eval.json"
    write_json({"R@1": 50.0}, target)
    with pytest.raises(ValueError, match="non-finite"):
        write_json({"R@1": float("nan")}, target)
    assert json.loads(target.read_text()) == {"R@1": 50.0}
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]


def test_aggregate_altitudes_keeps_each_altitude_and_the_mean():
    results = {h: result_for(seed, split="drone->satellite") for seed, h in enumerate((300, 150, 250, 200))}
    for result in results.values():
        result["protocol"] = "sues200"
    table = aggregate_altitudes(results)
    assert list(table["altitudes"]) == ["150", "200", "250", "300"]
    assert table["protocol"] == "sues200" and table["split"] == "drone->satellite"
    for name in ("R@1", "AP", "R@1%"):
        expected_mean = sum(r[name] for r in results.values()) / 4
        assert table["mean"][name] == pytest.approx(expected_mean)
        assert table["altitudes"]["150"][name] == results[150][name]
    text = format_altitude_table(table)
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ")]
    assert rows == ["| altitude", "| 150", "| 200", "| 250", "| 300", "| mean"]
    assert text.startswith("sues200 [drone->satellite")


def test_aggregate_altitudes_refuses_mixed_settings():
    with pytest.raises(ValueError, match="flip_tta"):
        aggregate_altitudes({150: result_for(0), 200: result_for(1, flip_tta=True)})
