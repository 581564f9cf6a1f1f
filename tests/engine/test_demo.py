"""``cvd demo`` end to end at a toy size: both runs, the report, and the CVD run's analysis in it."""

from __future__ import annotations

import json

from cvd.demo_pipeline import DemoSize, run_demo


def test_demo_report_holds_both_runs_and_the_cvd_analysis(tmp_path):
    size = DemoSize(locations=8, views_per_location=2, image_size=32, epochs=1, batch_size=4)
    report = run_demo(tmp_path, size=size, overrides=["data.num_workers=0", "data.eval_batch_size=16"])
    assert report.is_file()
    summary = (report.parent / "summary.md").read_text()
    assert "Disentanglement of the CVD run" in summary and "Figure 3" in summary
    analysis = json.loads((report.parent / "analysis" / "analysis.json").read_text())
    assert analysis["cvd"]["variant"] == "toolkit"
    runs = {row["run"] for row in json.loads((report.parent / "metrics.json").read_text())}
    assert {"Sample4Geo", "Sample4Geo+CVD"} <= runs
