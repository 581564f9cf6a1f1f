"""Checkpoint files: atomic, pruned, safe to load, RNG states restored exactly."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from cvd.engine.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from cvd.errors import CheckpointError


def test_save_prunes_to_last_n_and_leaves_no_temporary_files(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint({"model": {"w": torch.full((2,), float(step))}}, tmp_path, step, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000003.ckpt", "step-00000004.ckpt"]
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "step-00000004.ckpt"
    assert torch.equal(load_checkpoint(latest)["model"]["w"], torch.full((2,), 4.0))


def test_a_temporary_file_is_never_taken_for_a_checkpoint(tmp_path):
    save_checkpoint({"model": {}}, tmp_path, 1, keep_last=3)
    (tmp_path / ".step-00000002.ckpt.abc.tmp").write_bytes(b"half a checkpoint")
    assert latest_checkpoint(tmp_path).name == "step-00000001.ckpt"


def test_truncated_checkpoint_is_named(tmp_path):
    path = save_checkpoint({"model": {"w": torch.zeros(1000)}}, tmp_path, 1, keep_last=1)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


class Payload:
    """Any class: unpickling it could run code, so weights_only loading must refuse it."""


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "step-00000001.ckpt"
    torch.save({"model": {}, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = save_checkpoint({"model": {}, "rng": capture_rng_state()}, tmp_path, 1, keep_last=1)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng_state(load_checkpoint(path)["rng"])
    assert random.random() == expected[0]
    assert np.random.rand() == expected[1]
    assert torch.equal(torch.rand(3), expected[2])
