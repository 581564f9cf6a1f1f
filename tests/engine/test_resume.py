"""A run killed mid-way and resumed reaches the same final weights as an uninterrupted one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file
from tests.engine.conftest import run_cvd


def run_dir(config: Path) -> Path:
    values = yaml.safe_load(config.read_text())
    return Path(values["output_dir"]) / values["name"]


def fit(config: Path, *extra: str) -> None:
    result = run_cvd("fit", "--config", str(config), *extra)
    assert result.returncode == 0, result.stderr


def test_kill_and_resume_matches_uninterrupted(tiny_config, tmp_path):
    # 3 epochs x 2 optimiser steps, a checkpoint after every step, evaluation after each epoch.
    reference = tiny_config()
    fit(reference)
    expected = load_file(run_dir(reference) / "release" / "model.safetensors")

    interrupted = tiny_config(name="killed")
    folder = run_dir(interrupted)
    process = subprocess.Popen(
        [sys.executable, "-m", "cvd", "fit", "--config", str(interrupted)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (folder / "checkpoints" / "step-00000003.ckpt").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # mid-epoch 2: no chance to clean up
    process.wait()
    assert not (folder / "release").exists(), "killed before the end"

    fit(interrupted, "--resume")
    resumed = load_file(folder / "release" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, resumed[name]), name
    # Nothing half-written is left behind, and only the last N checkpoints are kept.
    checkpoints = sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert checkpoints == ["step-00000005.ckpt", "step-00000006.ckpt"]
