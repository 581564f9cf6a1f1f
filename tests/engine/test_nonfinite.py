"""A non-finite loss stops the run with a message naming the step and the terms; the last good
checkpoint stays."""

from __future__ import annotations

import pytest
import torch

from cvd.config import load_config
from cvd.engine.trainer import Trainer
from cvd.errors import NonFiniteLossError


def test_nan_loss_stops_with_step_terms_and_keeps_last_checkpoint(tiny_config):
    trainer = Trainer(load_config(tiny_config()))
    criterion = trainer.objective.criterion
    original = criterion.forward
    calls = {"n": 0}

    def poisoned(outputs, batch, context):
        calls["n"] += 1
        terms = original(outputs, batch, context)
        if calls["n"] == 2:  # the second optimiser step
            terms["infonce"] = terms["infonce"] * float("nan")
            terms["total"] = terms["infonce"]
        return terms

    criterion.forward = poisoned
    with pytest.raises(NonFiniteLossError) as error:
        trainer.fit()
    message = str(error.value)
    assert "optimiser step 2" in message and "infonce=nan" in message
    assert "step-00000001.ckpt" in message
    checkpoints = sorted(p.name for p in trainer.checkpoint_dir.iterdir())
    assert checkpoints == ["step-00000001.ckpt"]
    state = torch.load(trainer.checkpoint_dir / "step-00000001.ckpt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
