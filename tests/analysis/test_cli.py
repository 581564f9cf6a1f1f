"""``cvd analyze`` through the real CLI on a tiny trained model, for both CVD variants."""

from __future__ import annotations

import json
import math

import pytest
from tests.analysis.conftest import train_tiny

from cvd.cli import main


def _numbers(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _numbers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _numbers(value)
    elif isinstance(node, int | float) and not isinstance(node, bool):
        yield node


@pytest.mark.parametrize(
    "cvd",
    [
        {"variant": "toolkit"},
        {"variant": "paper"},  # image decoder
        {"variant": "toolkit", "recon_target": "feature", "decoder_channels": 8},  # feature-map decoder
    ],
    ids=["toolkit", "paper", "feature-map"],
)
def test_analyze_writes_the_figures_and_finite_numbers(tmp_path, tiny_world, cvd, capsys):
    run = train_tiny(tmp_path, tiny_world, **cvd)
    out = tmp_path / "analysis"
    assert main(["analyze", "--model", str(run), "--out", str(out), "--permutations", "20"]) == 0
    for name in (
        "analysis.json",
        "analysis.md",
        "index.html",
        "figure3_attention.png",
        "figure4_reconstruction.png",
    ):
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "analysis.json").read_text())
    assert result["locations"] == 6 and result["images"] == {"drone": 12, "satellite": 6}
    numbers = list(_numbers({k: result[k] for k in ("probes", "dependence", "reconstruction")}))
    assert len(numbers) > 20 and all(math.isfinite(x) for x in numbers)
    for view in ("drone", "satellite"):
        assert 0 < result["dependence"][view]["hsic"]["p_value"] <= 1
    assert result["probes"]["altitude_r2"] is not None  # read from the synthetic world's metadata
    assert "analysis:" in capsys.readouterr().out
