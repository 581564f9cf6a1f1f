"""Eq. 7 with its switches, the reconstruction MSE, and eq. 7 as `cvd fit`'s objective computes it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvd.baselines.base import LossContext
from cvd.engine.objective import TrainingObjective
from cvd.losses import cvd_total, reconstruction_loss

T = torch.tensor


def test_total_weights_each_term_as_eq7():
    terms = {"iic_q": T(0.2), "iic_s": T(0.4), "irc_q": T(3.0), "irc_s": T(5.0)}
    loc = T(1.0)
    paper = {"lambdas": (10.0, 0.2, 1.0)}
    # 10 * (0.2 + 0.4) / 2 + 0.2 * (3 + 5) / 2 + 1 * 1 = 3 + 0.8 + 1
    assert cvd_total(loc, **terms, **paper)["total"].item() == pytest.approx(4.8)
    assert cvd_total(loc, **terms, **paper, use_iic=False)["total"].item() == pytest.approx(1.8)
    assert cvd_total(loc, **terms, **paper, use_irc=False)["total"].item() == pytest.approx(4.0)
    neither = cvd_total(loc, **terms, **paper, use_iic=False, use_irc=False)
    assert neither["total"].item() == pytest.approx(1.0)
    custom = cvd_total(loc, **terms, lambdas=(1.0, 1.0, 2.0))
    assert custom["total"].item() == pytest.approx(0.3 + 4.0 + 2.0)
    assert custom["iic"].item() == pytest.approx(0.3) and custom["irc"].item() == pytest.approx(4.0)
    assert "iic" not in cvd_total(loc, None, None, None, None, (1, 1, 1), use_iic=False, use_irc=False)


def test_reconstruction_loss_is_the_mean_squared_error():
    reconstruction = T([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    target = T([[[[0.0, 2.0], [5.0, 4.0]]]], requires_grad=True)
    loss = reconstruction_loss(reconstruction, target)
    assert loss.item() == pytest.approx((1 + 0 + 4 + 0) / 4)
    loss.backward()
    assert target.grad is None  # the image is the target, not a variable
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss(reconstruction, target[..., :1])


class _FixedOutputs(nn.Module):
    """A stand-in model whose forward returns prepared outputs, so the terms are known by hand."""

    def __init__(self, outputs: dict) -> None:
        super().__init__()
        self.outputs = outputs
        self.cvd = None

    def forward(self, query: torch.Tensor, satellite: torch.Tensor) -> dict:
        return self.outputs


class _ConstantLoss(nn.Module):
    def forward(self, outputs: dict, batch: dict, context: LossContext) -> dict:
        return {"total": T(1.5), "infonce": T(1.5)}


def _outputs(batch: int = 8) -> dict:
    generator = torch.Generator().manual_seed(0)

    def branch() -> dict:
        return {
            "zc": torch.randn(batch, 4, 2, 2, generator=generator),
            "zv": torch.randn(batch, 4, 2, 2, generator=generator),
            "embedding": torch.nn.functional.normalize(torch.randn(batch, 4, generator=generator), dim=1),
        }

    image = torch.randn(batch, 3, 8, 8, generator=generator)
    return {
        "query": branch(),
        "satellite": branch(),
        "reconstruction": {"query": image + 1.0, "satellite": image * 0},
        "reconstruction_target": {"query": image, "satellite": image},
    }


def _objective(outputs: dict, **cvd) -> TrainingObjective:
    section = {"enabled": True, "variant": "paper", "recon_target": "image", **cvd}
    return TrainingObjective(_FixedOutputs(outputs), _ConstantLoss(), section, contrastive=True)


def _run(objective: TrainingObjective, batch: int = 8) -> dict:
    context = LossContext(gather=lambda tensor: tensor, generator=torch.Generator().manual_seed(0))
    images = torch.zeros(batch, 3, 8, 8)
    return objective({"query": images, "satellite": images, "label": torch.arange(batch)}, context)


def test_training_objective_weights_its_terms_as_eq7():
    outputs = _outputs()
    terms = _run(_objective(outputs, **{"lambda": [10.0, 0.2, 2.0]}))
    assert set(terms) == {"infonce", "iic_query", "iic_satellite", "irc_query", "irc_satellite", "total"}
    # reconstruction = target + 1 -> MSE 1; reconstruction = 0 -> MSE = mean(target^2)
    assert terms["irc_query"].item() == pytest.approx(1.0)
    expected_satellite = (outputs["reconstruction_target"]["satellite"] ** 2).mean().item()
    assert terms["irc_satellite"].item() == pytest.approx(expected_satellite, rel=1e-6)
    assert terms["iic_query"].item() > 0
    # cvd.loc auto on a contrastive recipe: the baseline's loss (1.5) is L_loc, weighted by 2
    by_hand = (
        10.0 * (terms["iic_query"] + terms["iic_satellite"]).item() / 2
        + 0.2 * (terms["irc_query"] + terms["irc_satellite"]).item() / 2
        + 2.0 * 1.5
    )
    assert terms["total"].item() == pytest.approx(by_hand, rel=1e-6)


def test_training_objective_honours_the_switches_and_the_loc_modes():
    outputs = _outputs()
    neither = _run(_objective(outputs, independence=False, reconstruction=False, **{"lambda": [1, 1, 3]}))
    assert set(neither) == {"infonce", "total"} and neither["total"].item() == pytest.approx(4.5)
    none = _run(_objective(outputs, independence=False, loc="none", **{"lambda": [1, 5, 3]}))
    # `none`: the baseline's loss unweighted, plus eq. 7's other terms
    irc = (none["irc_query"] + none["irc_satellite"]).item() / 2
    assert none["total"].item() == pytest.approx(1.5 + 5 * irc, rel=1e-6)
    added = _run(_objective(outputs, independence=False, reconstruction=False, loc="infonce", tau=0.5))
    # `infonce`: the baseline's loss kept as it is, an InfoNCE on the embeddings added with lambda3
    assert added["total"].item() == pytest.approx(1.5 + added["loc"].item(), rel=1e-6)
    assert added["loc"].item() > 0
