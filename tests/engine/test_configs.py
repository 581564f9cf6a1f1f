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
        for section in set(with_cvd) - {"cvd", "name", "meta"}:
            assert with_cvd[section] == without[section], f"{path.name} changes {section!r}"
