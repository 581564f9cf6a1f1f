"""The CVD training objective (eq. 7) and the CVD terms computed from the model's outputs.

Each term can be switched off, as the paper's ablations need (iic only, irc only, neither).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from cvd.losses.independence import independence_loss
from cvd.losses.reconstruction import reconstruction_loss, target_variance

DEFAULT_LAMBDAS = (10.0, 0.2, 1.0)


def cvd_total(
    loc: torch.Tensor,
    iic_q: torch.Tensor | None = None,
    iic_s: torch.Tensor | None = None,
    irc_q: torch.Tensor | None = None,
    irc_s: torch.Tensor | None = None,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    use_iic: bool = True,
    use_irc: bool = True,
) -> dict[str, torch.Tensor]:
    """Eq. 7: l1 (iic_q + iic_s) / 2 + l2 (irc_q + irc_s) / 2 + l3 loc.

    Returns {"total", "loc"} plus the unweighted view means "iic" and "irc" of the terms in use,
    for logging. `loc` is the localization loss (InfoNCE, or a baseline's own loss).
    """
    lambda_iic, lambda_irc, lambda_loc = (float(value) for value in lambdas)
    parts: dict[str, torch.Tensor] = {"loc": loc}
    total = lambda_loc * loc
    if use_iic:
        if iic_q is None or iic_s is None:
            raise ValueError("cvd_total: use_iic=True needs iic_q and iic_s")
        parts["iic"] = 0.5 * (iic_q + iic_s)
        total = total + lambda_iic * parts["iic"]
    if use_irc:
        if irc_q is None or irc_s is None:
            raise ValueError("cvd_total: use_irc=True needs irc_q and irc_s")
        parts["irc"] = 0.5 * (irc_q + irc_s)
        total = total + lambda_irc * parts["irc"]
    return {"total": total, **parts}


def cvd_losses(
    outputs: Mapping[str, Any],
    cvd_config: Mapping[str, Any],
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """iic_query, iic_satellite, irc_query, irc_satellite from `RetrievalModel.forward` outputs.

    A switched-off term (cvd.independence / cvd.reconstruction false) is a zero tensor without
    gradient, so logging stays uniform; pass use_iic/use_irc accordingly to `cvd_total`.
    The outputs should already span the global batch for the independence terms.
    """
    reference = outputs["query"]["zc"]
    zero = torch.zeros((), device=reference.device)
    losses = {"iic_query": zero, "iic_satellite": zero, "irc_query": zero, "irc_satellite": zero}
    if cvd_config.get("independence", True):
        n_projections = int(cvd_config.get("n_projections", 128))
        estimator = str(cvd_config.get("iic_estimator") or "paper")
        for branch in ("query", "satellite"):
            losses[f"iic_{branch}"] = independence_loss(
                outputs[branch]["zc"],
                outputs[branch]["zv"],
                n_projections=n_projections,
                generator=generator,
                estimator=estimator,
            )
    if cvd_config.get("reconstruction", True):
        relative = cvd_config.get("recon_target") in ("feature", "pooled_feature")
        for branch in ("query", "satellite"):
            target = outputs["reconstruction_target"][branch]
            losses[f"irc_{branch}"] = reconstruction_loss(
                outputs["reconstruction"][branch], target, target_variance(target) if relative else None
            )
    return losses
