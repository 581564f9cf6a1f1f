"""(A)SAM steps against steps worked by hand on small quadratics.

The weights are float64: the steps involve a gradient norm (a reduction whose float32 rounding
differs between CPU kernels) and cancellations such as 1 - 0.88, which in float32 leave a few
ulps of the inputs, not of the result, so the hand-worked values are checked to ~1e-6 of
themselves on every machine."""

from __future__ import annotations

import pytest
import torch

from cvd.engine.sam import SharpnessAwareMinimizer


def quadratic(weights: torch.Tensor, curvature: tuple[float, float]) -> torch.Tensor:
    """L(w) = 0.5 * (a w1^2 + b w2^2); gradient (a w1, b w2)."""
    a, b = curvature
    return 0.5 * (a * weights[0] ** 2 + b * weights[1] ** 2)


def one_step(
    start: tuple[float, float], curvature: tuple[float, float], rho: float, adaptive: bool, eta: float = 0.0
) -> torch.Tensor:
    weights = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    sam = SharpnessAwareMinimizer(torch.optim.SGD([weights], lr=0.1), rho=rho, adaptive=adaptive, eta=eta)
    quadratic(weights, curvature).backward()
    sam.step(lambda: quadratic(weights, curvature).backward())
    return weights.detach()


def test_sam_step_by_hand():
    # w = (3, 4), L = 0.5 |w|^2: g = (3, 4), |g| = 5, rho 0.5 -> e = (0.3, 0.4); gradient at
    # w + e = (3.3, 4.4); SGD lr 0.1 from w: (3 - 0.33, 4 - 0.44) = (2.67, 3.56).
    assert one_step((3.0, 4.0), (1.0, 1.0), rho=0.5, adaptive=False).tolist() == pytest.approx([2.67, 3.56])


def test_asam_step_by_hand():
    # w = (1, 1), L = 0.5 (3 w1^2 + 4 w2^2): g = (3, 4); T = |w| = (1, 1): |T g| = 5;
    # e = rho T^2 g / 5 = (0.6, 0.8) for rho 1; gradient at (1.6, 1.8) = (4.8, 7.2);
    # SGD lr 0.1 from w: (1 - 0.48, 1 - 0.72) = (0.52, 0.28).
    assert one_step((1.0, 1.0), (3.0, 4.0), rho=1.0, adaptive=True).tolist() == pytest.approx([0.52, 0.28])


def test_asam_eta_by_hand():
    # Same problem, eta 0.5: T = 1.5 each; |T g| = 7.5; e = 2.25 * (3, 4) / 7.5 = (0.9, 1.2);
    # gradient at (1.9, 2.2) = (5.7, 8.8); step: (1 - 0.57, 1 - 0.88) = (0.43, 0.12).
    result = one_step((1.0, 1.0), (3.0, 4.0), rho=1.0, adaptive=True, eta=0.5)
    assert result.tolist() == pytest.approx([0.43, 0.12])


def test_asam_scales_the_perturbation_by_weight_size():
    # The adaptive perturbation of a zero weight is zero (T = |w| = 0): SAM would move it.
    weights = torch.nn.Parameter(torch.tensor([0.0, 2.0], dtype=torch.float64))
    sam = SharpnessAwareMinimizer(torch.optim.SGD([weights], lr=0.1), rho=1.0, adaptive=True)
    (weights.sum() ** 2).backward()  # g = 2 * sum = (4, 4)
    sam.first_step()
    # T g = (0, 8): e = rho * T^2 g / 8 = (0, 16 / 8) = (0, 2)
    assert weights.detach().tolist() == pytest.approx([0.0, 4.0])
    assert weights.grad is None


def test_second_step_restores_before_stepping_and_keeps_the_schedule():
    weights = torch.nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    base = torch.optim.SGD([weights], lr=0.1)
    sam = SharpnessAwareMinimizer(base, rho=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(base, lambda step: 0.5)  # lr 0.05 for the step
    assert sam.param_groups[0]["lr"] == pytest.approx(0.05)
    quadratic(weights, (1.0, 1.0)).backward()
    sam.first_step()
    assert weights.detach().tolist() == pytest.approx([3.3, 4.4])
    quadratic(weights, (1.0, 1.0)).backward()
    sam.second_step()
    # From w (not w + e) with the gradient at w + e and the scheduled lr: 3 - 0.05 * 3.3, ...
    assert weights.detach().tolist() == pytest.approx([3.0 - 0.165, 4.0 - 0.22])
    scheduler.step()


def test_rejects_negative_rho_and_double_first_step():
    weights = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError):
        SharpnessAwareMinimizer(torch.optim.SGD([weights], lr=0.1), rho=-1.0)
    sam = SharpnessAwareMinimizer(torch.optim.SGD([weights], lr=0.1), rho=0.1)
    weights.sum().backward()
    sam.first_step(zero_grad=False)
    with pytest.raises(RuntimeError):
        sam.first_step()


def test_state_dict_round_trip_is_the_wrapped_optimizers():
    weights = torch.nn.Parameter(torch.ones(3))
    sam = SharpnessAwareMinimizer(torch.optim.AdamW([weights], lr=0.01), rho=0.05, adaptive=True)
    quadratic(weights, (1.0, 2.0)).backward()
    sam.step(lambda: quadratic(weights, (1.0, 2.0)).backward())
    state = sam.state_dict()
    other = SharpnessAwareMinimizer(torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=0.01))
    other.load_state_dict(state)
    moment = other.optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(moment, state["state"][0]["exp_avg"])
