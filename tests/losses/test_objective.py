"""Eq. 7 with its switches, the reconstruction MSE, and the CVD terms taken from model outputs."""

from __future__ import annotations

import pytest
import torch

from cvd.losses import cvd_losses, cvd_total, reconstruction_loss

T = torch.tensor


def test_total_weights_each_term_as_eq7():
    terms = {"iic_q": T(0.2), "iic_s": T(0.4), "irc_q": T(3.0), "irc_s": T(5.0)}
    loc = T(1.0)
    # 10 * (0.2 + 0.4) / 2 + 0.2 * (3 + 5) / 2 + 1 * 1 = 3 + 0.8 + 1
    assert cvd_total(loc, **terms)["total"].item() == pytest.approx(4.8)
    assert cvd_total(loc, **terms, use_iic=False)["total"].item() == pytest.approx(1.8)
    assert cvd_total(loc, **terms, use_irc=False)["total"].item() == pytest.approx(4.0)
    assert cvd_total(loc, **terms, use_iic=False, use_irc=False)["total"].item() == pytest.approx(1.0)
    custom = cvd_total(loc, **terms, lambdas=(1.0, 1.0, 2.0))
    assert custom["total"].item() == pytest.approx(0.3 + 4.0 + 2.0)
    assert custom["iic"].item() == pytest.approx(0.3) and custom["irc"].item() == pytest.approx(4.0)
    assert "iic" not in cvd_total(loc, use_iic=False, use_irc=False)


def test_reconstruction_loss_is_the_mean_squared_error():
    reconstruction = T([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    target = T([[[[0.0, 2.0], [5.0, 4.0]]]], requires_grad=True)
    loss = reconstruction_loss(reconstruction, target)
    assert loss.item() == pytest.approx((1 + 0 + 4 + 0) / 4)
    loss.backward()
    assert target.grad is None  # the image is the target, not a variable
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss(reconstruction, target[..., :1])


def _outputs(batch: int = 8) -> dict:
    generator = torch.Generator().manual_seed(0)

    def branch() -> dict:
        return {
            "zc": torch.randn(batch, 4, 2, 2, generator=generator),
            "zv": torch.randn(batch, 4, 2, 2, generator=generator),
        }

    image = torch.randn(batch, 3, 8, 8, generator=generator)
    return {
        "query": branch(),
        "satellite": branch(),
        "reconstruction": {"query": image + 1.0, "satellite": image * 0},
        "reconstruction_target": {"query": image, "satellite": image},
    }


def test_cvd_losses_reads_the_model_outputs_and_honours_the_switches():
    outputs = _outputs()
    losses = cvd_losses(outputs, {"independence": True, "reconstruction": True})
    assert set(losses) == {"iic_query", "iic_satellite", "irc_query", "irc_satellite"}
    assert losses["irc_query"].item() == pytest.approx(1.0)
    expected_satellite = (outputs["reconstruction_target"]["satellite"] ** 2).mean().item()
    assert losses["irc_satellite"].item() == pytest.approx(expected_satellite, rel=1e-6)
    assert losses["iic_query"].item() > 0
    off = cvd_losses(outputs, {"independence": False, "reconstruction": False})
    assert all(value.item() == 0 for value in off.values())
