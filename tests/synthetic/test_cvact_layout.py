"""The synthetic CVACT tree: ACT_data.mat and ANU_data_small/, read by the real CVACT loader."""

from __future__ import annotations

import pytest

from cvd.cli import main
from cvd.data.cvact import CVACT
from cvd.data.synthetic import load_metadata

SMALL = ["--set", "satellite_extent=60", "--set", "max_view_distance=200"]


def test_cvact_tree_loads_with_gps_from_its_utm(tmp_path):
    out = tmp_path / "cvact"
    args = ["synth", "--layout", "cvact", "--locations", "5", "--size", "32", "--seed", "3"]
    assert main([*args, "--out", str(out), "--no-progress", *SMALL]) == 0
    dataset = CVACT(out, strict=True)
    pairs = dataset.train_pairs()
    (evaluation,) = dataset.eval_splits()
    assert len(pairs) == 4 and len(evaluation.queries) == len(evaluation.gallery) == 1
    meta = load_metadata(out)
    assert meta["layout"] == "cvact"
    for pair in [*pairs, *evaluation.queries]:
        entry = meta["location_entries"][pair.location]
        # the .mat holds UTM zone 55 south; the loader's conversion must land on the world's lat/lon
        assert pair.gps == pytest.approx((entry["lat"], entry["lon"]), abs=1e-6)
        assert -36 < entry["lat"] < -35 and 148 < entry["lon"] < 150  # near Canberra, as CVACT
    train_names = {p.location for p in pairs}
    roles = {name: entry["role"] for name, entry in meta["location_entries"].items()}
    assert train_names == {name for name, role in roles.items() if role == "train"}
    assert evaluation.queries[0].path.name == f"{evaluation.queries[0].location}_grdView.jpg"
    assert evaluation.gallery[0].path.name == f"{evaluation.gallery[0].location}_satView_polish.jpg"
