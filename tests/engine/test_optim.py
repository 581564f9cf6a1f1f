"""Parameter groups: encoder, CVD module and the rest, each with its learning-rate and decay factors."""

from __future__ import annotations

import pytest
from torch import nn

from cvd.engine.optim import parameter_groups


class _Objective(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.backbones = nn.Linear(2, 2)
        self.model.cvd = nn.Linear(2, 2)
        self.model.heads = nn.Linear(2, 2)


def test_each_part_gets_its_own_factors():
    groups = {
        g["group"]: g
        for g in parameter_groups(
            _Objective(), 0.01, 1e-3, 0.5, cvd_lr_scale=0.1, cvd_weight_decay_scale=10.0
        )
    }
    assert set(groups) == {"head", "head/no_decay", "encoder", "encoder/no_decay", "cvd", "cvd/no_decay"}
    assert groups["encoder"]["lr"] == pytest.approx(5e-4) and groups["encoder"]["weight_decay"] == 0.01
    assert groups["cvd"]["lr"] == pytest.approx(1e-4) and groups["cvd"]["weight_decay"] == pytest.approx(0.1)
    assert groups["cvd/no_decay"]["weight_decay"] == 0.0
    assert groups["head"]["lr"] == pytest.approx(1e-3)
    # the first group (whose lr the trainer logs) is the head's, as before the CVD groups existed
    assert parameter_groups(_Objective(), 0.01, 1e-3, 0.5)[0]["group"] == "head"
