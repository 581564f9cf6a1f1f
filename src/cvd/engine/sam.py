"""Sharpness-aware minimisation (SAM, Foret et al. ICLR 2021) and its adaptive form (ASAM, Kwon
et al. ICML 2021), as a wrapper around any torch optimiser.

TransGeo trains with ASAM (rho 2.5 on AdamW); the flatter minimum it finds is part of its recipe.
One SAM step needs two forward/backward passes on the same batch:

1. backward at w, then :meth:`SharpnessAwareMinimizer.first_step` moves the weights to the
   worst-case neighbour ``w + e(w)`` (gradients are cleared);
2. backward at ``w + e(w)``, then :meth:`second_step` puts the weights back to w and lets the
   wrapped optimiser step with the gradient taken at ``w + e(w)``.

``e(w) = rho * T^2 g / ||T g||`` with ``T = 1`` (SAM) or ``T = |w| + eta`` element-wise (ASAM).
The norm runs over every parameter with a gradient, so under DDP (gradients already averaged
by the backward) every rank perturbs the same way. ``eta`` defaults to 0, as in TransGeo's
implementation; the ASAM paper uses 0.01.

Written here rather than taken from a package: there is no maintained PyPI distribution of SAM,
and the wrapper must share its parameter groups with the wrapped optimiser so that the engine's
learning-rate schedule (a LambdaLR on the wrapped optimiser) drives both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class SharpnessAwareMinimizer:
    """Two-pass (A)SAM around ``optimizer``; ``param_groups`` is the wrapped optimiser's own list.

    ``step(closure)`` runs both passes when given a closure that recomputes the loss and calls
    ``backward()``; the engine may instead call :meth:`first_step` and :meth:`second_step`
    around its own second forward/backward pass.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.0,
    ) -> None:
        if rho < 0:
            raise ValueError(f"SAM rho must be non-negative, got {rho}")
        if eta < 0:
            raise ValueError(f"ASAM eta must be non-negative, got {eta}")
        self.optimizer = optimizer
        self.rho = float(rho)
        self.adaptive = bool(adaptive)
        self.eta = float(eta)
        self._backup: dict[torch.nn.Parameter, torch.Tensor] = {}

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def _scale(self, parameter: torch.Tensor) -> torch.Tensor | float:
        """T of ASAM for one parameter (1 for plain SAM)."""
        return parameter.abs() + self.eta if self.adaptive else 1.0

    def _parameters_with_grad(self) -> list[torch.nn.Parameter]:
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """Move to ``w + e(w)`` using the gradients at w; remember w."""
        if self._backup:
            raise RuntimeError("first_step called twice without second_step")
        parameters = self._parameters_with_grad()
        if not parameters:
            return
        device = parameters[0].device
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(self._scale(p) * p.grad).to(device) for p in parameters])
        )
        factor = self.rho / (norm + 1e-12)
        for parameter in parameters:
            self._backup[parameter] = parameter.detach().clone()
            scale = self._scale(parameter)
            parameter.add_(scale * scale * parameter.grad * factor.to(parameter.device))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = True) -> None:
        """Return to w and step the wrapped optimiser with the gradients taken at ``w + e(w)``."""
        for parameter, original in self._backup.items():
            parameter.copy_(original)
        self._backup.clear()
        self.optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Both passes; ``closure`` must recompute the loss and call ``backward()`` on it.

        The gradients at w must already be in ``.grad`` (the caller's first backward).
        """
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step(zero_grad=False)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimiser's state (SAM keeps nothing between steps)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)
