"""Unreadable training images are never silent (issue 13, item 12): every `cvd fit` ends with a
summary of what was skipped (stderr and `skipped` in run_info.json), and the run fails in one line
when they cost more than `data.max_skipped_share` of the training pairs or planned batches.

Images that vanish mid-run are provoked through the real command: a small driver breaks files of
a private copy of the world right after the up-front readability check (so that check passes,
as it would have before the files went), then hands over to `cvd.cli.main`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DRIVER = """\
import sys
from pathlib import Path

from cvd.engine import data

original = data.TrainData.attach_model


def attach_and_break(self, model):
    original(self, model)
    for path in {vanish!r}:
        Path(path).unlink()
        Path(path).write_bytes(b"no longer an image")


data.TrainData.attach_model = attach_and_break
from cvd.cli import main

sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def world(tmp_path: Path, tiny_world: Path) -> Path:
    """A private copy of the tiny world (its files get broken)."""
    return Path(shutil.copytree(tiny_world, tmp_path / "world"))


def fit(
    tmp_path: Path, config: Path, *overrides: str, vanish: tuple[Path, ...] = ()
) -> subprocess.CompletedProcess:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(vanish=[str(path) for path in vanish]))
    return subprocess.run(
        [sys.executable, str(driver), "fit", "--config", str(config), "--no-progress", *overrides],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def run_info(config: Path) -> dict:
    values = yaml.safe_load(config.read_text())
    return json.loads((Path(values["output_dir"]) / values["name"] / "run_info.json").read_text())


def one_drone_image(world: Path) -> Path:
    return sorted((world / "train" / "drone").rglob("*.jpeg"))[0]


def quick(tiny_config, world: Path):
    return tiny_config(data={"root": str(world)}, schedule={"epochs": 2}, eval={"every_epochs": 0})


def test_images_vanishing_mid_run_fail_it_naming_how_many_batches_were_lost(tiny_config, world, tmp_path):
    config = quick(tiny_config, world)
    vanished = one_drone_image(world)
    result = fit(tmp_path, config, vanish=(vanished,))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("cvd fit: error:")]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert (
        "planned training batches" in line and "data.max_skipped_share=0.01" in line and str(vanished) in line
    )
    skipped = run_info(config)["skipped"]
    assert skipped["batches_dropped"] >= 1 and skipped["unreadable_during_training"] == [str(vanished)]
    assert f"{skipped['batches_dropped']} of {skipped['batches_planned']} planned training batches" in line
    assert "skipped items:" in result.stderr


def test_a_run_within_the_share_ends_with_the_summary_and_records_it(tiny_config, world, tmp_path):
    config = quick(tiny_config, world)
    vanished = one_drone_image(world)
    result = fit(tmp_path, config, "data.max_skipped_share=1.0", vanish=(vanished,))
    assert result.returncode == 0, result.stderr
    skipped = run_info(config)["skipped"]
    assert skipped["unreadable_during_training"] == [str(vanished)]
    dropped, planned = skipped["batches_dropped"], skipped["batches_planned"]
    assert 0 < dropped <= planned
    assert skipped["steps_done"] + dropped == skipped["steps_planned"]  # one micro-batch per step
    assert f"skipped items: 0 of {skipped['train_pairs_found']} training pairs removed" in result.stderr
    assert f"{dropped} of {planned} planned training batches dropped" in result.stderr


def test_unreadable_images_found_before_training_count_against_the_share(tiny_config, world, tmp_path):
    broken = one_drone_image(world)
    broken.unlink()
    broken.write_bytes(b"not an image")
    config = quick(tiny_config, world)
    refused = fit(tmp_path, config)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "cvd fit: error: 1 of " in refused.stderr and "training pairs" in refused.stderr
    assert str(broken) in refused.stderr and "data.max_skipped_share=0.01" in refused.stderr
    allowed = fit(tmp_path, config, "data.max_skipped_share=0.5")
    assert allowed.returncode == 0, allowed.stderr
    skipped = run_info(config)["skipped"]
    assert skipped["train_pairs_removed"] == 1 and skipped["unreadable_before_training"] == [str(broken)]
    assert skipped["batches_dropped"] == 0 and skipped["steps_done"] == skipped["steps_planned"]
    assert f"skipped items: 1 of {skipped['train_pairs_found']} training pairs removed" in allowed.stderr
