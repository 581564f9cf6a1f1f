"""Shared pytest set-up: deterministic, quiet, CPU-only, few threads (CI has 2 cores)."""

from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning

import pytest
import torch

# CI has 2 cores and runs 2 pytest-xdist workers: one torch thread each avoids oversubscription
# (OpenMP spin-waiting made single tests 10x slower on a loaded machine).
_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1))
# CVD_TEST_THREADS=N runs the suite (and the processes it starts) with N torch threads: another
# split of every parallel reduction, to check that no comparison relies on one summation order
# (see tests/tolerance.py).
if os.environ.get("CVD_TEST_THREADS"):
    _THREADS = int(os.environ["CVD_TEST_THREADS"])
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)
torch.set_num_threads(_THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_the_cvd_logger():
    """Commands run in-process set up the `cvd` logger (own stderr handler, propagate=False);
    restore it after each test so that a later test's caplog sees the records whatever ran first
    in its worker."""
    import logging

    logger = logging.getLogger("cvd")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]
