"""Every experiment config in configs/ resolves against the default (keys, types, choices)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvd.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXPERIMENTS = sorted(p for p in CONFIGS.rglob("*.yaml") if "_base" not in p.parts)


def test_there_are_experiment_configs():
    assert len(EXPERIMENTS) >= 14


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_resolves(path: Path):
    config = load_config(path)
    assert config["data"]["root"], "a benchmark config names its dataset root"
    assert config["name"] == f"{path.parent.name}_{path.stem}"
    cvd_in_name = "cvd" in path.stem.split("_")
    assert config["cvd"]["enabled"] is cvd_in_name, "files named *_cvd* switch CVD on, others off"


def test_cvd_variant_changes_only_the_cvd_section():
    # The paper's rule: CVD keeps each baseline's recipe untouched.
    for path in EXPERIMENTS:
        if "cvd" not in path.stem.split("_"):
            continue
        baseline = path.with_name(path.name.replace("_cvd", ""))
        if not baseline.is_file():
            continue
        with_cvd, without = load_config(path), load_config(baseline)
        # A second stage starts from its own variant's first stage: model.init_from may differ.
        for config in (with_cvd, without):
            config["model"].pop("init_from", None)
        for section in set(with_cvd) - {"cvd", "name", "meta"}:
            assert with_cvd[section] == without[section], f"{path.name} changes {section!r}"


def test_reproduce_doc_is_up_to_date():
    import subprocess
    import sys

    script = CONFIGS.parent / "scripts" / "reproduce_doc.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_paper_rows_carry_their_numbers():
    for path in EXPERIMENTS:
        meta = load_config(path).get("meta") or {}
        if "table" in meta:
            assert meta.get("row") and meta.get("paper"), path
            for metrics in meta["paper"].values():
                assert all(0 <= value <= 100 for value in metrics.values()), path
