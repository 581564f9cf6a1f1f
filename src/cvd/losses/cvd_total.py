"""The CVD training objective, eq. 7: the one place its weighting is written.

`cvd.engine.objective.TrainingObjective` (what `cvd fit` runs) computes the terms from the model's
outputs over the global batch and combines them here; each term can be switched off, as the
paper's ablations need (iic only, irc only, neither).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def cvd_total(
    loc: torch.Tensor,
    iic_q: torch.Tensor | None,
    iic_s: torch.Tensor | None,
    irc_q: torch.Tensor | None,
    irc_s: torch.Tensor | None,
    lambdas: Sequence[float],
    use_iic: bool = True,
    use_irc: bool = True,
) -> dict[str, torch.Tensor]:
    """Eq. 7: l1 (iic_q + iic_s) / 2 + l2 (irc_q + irc_s) / 2 + l3 loc.

    Returns {"total", "loc"} plus the unweighted view means "iic" and "irc" of the terms in use,
    for logging. `loc` is the localization loss (InfoNCE, or a baseline's own loss). `lambdas`
    has no default here: the config's `cvd.lambda` (and its variant) is the one source.
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
