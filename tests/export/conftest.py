"""Fixtures of the export tests: a tiny released model (random weights, 64 px) and thread limits."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tests/geo/conftest.py

from pathlib import Path

import pytest
import torch

TINY_CONFIG = {
    "model": {"backbone": {"name": "tf_efficientnet_lite0", "pretrained": False}, "head": {"name": "gap"}},
    "cvd": {"enabled": True},
    "data": {"query_size": 64, "satellite_size": 64},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread_per_worker():
    """One torch thread while these tests run (pytest -n 2 on 2 cores); restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder whose release/ holds tf_efficientnet_lite0 + CVD with random weights."""
    from cvd.factory import build_model
    from cvd.models import save_release

    torch.manual_seed(1)
    model = build_model(TINY_CONFIG).eval()
    # BatchNorm statistics away from their init, so the export must carry them exactly
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    run_dir = tmp_path_factory.mktemp("run")
    save_release(model, TINY_CONFIG, run_dir / "release")
    return run_dir
