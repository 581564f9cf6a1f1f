"""The training objective: the model, the baseline's own loss, and CVD's terms (paper eq. 7).

One module holds them all so that DistributedDataParallel sees every trainable parameter (the
model's, and the loss's own such as a learnable logit scale or classifiers).

With CVD on, the total is

    total = baseline terms that are not L_loc
            + lambda1 * (L_iic^q + L_iic^s) / 2 + lambda2 * (L_irc^q + L_irc^s) / 2 + lambda3 * L_loc

where L_loc is chosen by ``cvd.loc``:

- ``baseline``: the baseline's own loss *is* the cross-view contrastive loss (Sample4Geo,
  Game4Loc), so it is weighted by lambda3 and nothing is added;
- ``infonce`` / ``bi-infonce``: the baseline's loss is kept as it is and an InfoNCE with
  temperature ``cvd.tau`` (one-way, or symmetric) on the content embeddings is added
  (classification baselines: LPN, MCCG, FSRA, ...);
- ``none``: the baseline's loss only;
- ``auto``: ``baseline`` for contrastive recipes, ``infonce`` otherwise.

The independence term sees the *global* batch (pooled content and viewpoint vectors are
gathered across ranks, and the permutation and projections come from a generator seeded the same
on every rank). The reconstruction term is a per-image mean, computed locally: DDP's gradient
averaging makes it the global mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cvd.baselines.base import LossContext
from cvd.losses import cvd_total, independence_loss, info_nce, reconstruction_loss
from cvd.losses.independence import RunningCorrelation, pool_factor, sw2_from_correlation
from cvd.losses.reconstruction import target_variance
from cvd.models.model import resolve_cvd_config


def resolve_loc_mode(mode: str, contrastive: bool) -> str:
    """``auto`` -> ``baseline`` for contrastive recipes, ``infonce`` for the others."""
    if mode == "auto":
        return "baseline" if contrastive else "infonce"
    return mode


class TrainingObjective(nn.Module):
    """``forward(batch, context)`` -> dict of named loss terms, with ``"total"`` to optimise."""

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        cvd_config: Mapping[str, Any],
        contrastive: bool,
    ) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion
        resolved = resolve_cvd_config(cvd_config)  # defaults: default.yaml and the variant, once
        self.cvd_enabled = bool(resolved["enabled"])
        self.loc_mode = resolve_loc_mode(str(resolved["loc"]), contrastive)
        self.lambda_iic, self.lambda_irc, self.lambda_loc = resolved["lambda"]
        self.tau = float(resolved["tau"])
        self.use_iic = bool(resolved["independence"])
        self.use_irc = bool(resolved["reconstruction"])
        self.n_projections = int(resolved["n_projections"])
        self.iic_estimator = str(resolved["iic_estimator"])
        self.relative_irc = resolved["recon_target"] != "image"
        cvd = getattr(model, "cvd", None)
        self.running_correlation = (
            nn.ModuleDict(
                {
                    branch: RunningCorrelation(
                        cvd.content_channels, cvd.viewpoint_channels, resolved["iic_momentum"]
                    )
                    for branch in ("query", "satellite")
                }
            )
            if self.cvd_enabled and self.use_iic and self.iic_estimator == "channel_pairs" and cvd is not None
            else None
        )

    def forward(self, batch: Mapping[str, Any], context: LossContext) -> dict[str, torch.Tensor]:
        outputs = self.model(query=batch["query"], satellite=batch["satellite"])
        terms = dict(self.criterion(outputs, batch, context))
        baseline_total = terms.pop("total")
        if not self.cvd_enabled:
            terms["total"] = baseline_total
            return terms
        terms.update(self.cvd_terms(outputs, context))
        loc, lambda_loc, kept = self._localization(baseline_total, outputs, batch, context, terms)
        eq7 = cvd_total(
            loc,
            terms.get("iic_query"),
            terms.get("iic_satellite"),
            terms.get("irc_query"),
            terms.get("irc_satellite"),
            lambdas=(self.lambda_iic, self.lambda_irc, lambda_loc),
            use_iic=self.use_iic,
            use_irc=self.use_irc,
        )
        terms["total"] = eq7["total"] if kept is None else kept + eq7["total"]
        return terms

    def cvd_terms(self, outputs: Mapping[str, Any], context: LossContext) -> dict[str, torch.Tensor]:
        """The CVD constraints in use, per branch: iic_query, iic_satellite, irc_query, irc_satellite."""
        terms: dict[str, torch.Tensor] = {}
        if self.use_iic:
            for branch in ("query", "satellite"):
                terms[f"iic_{branch}"] = self._independence(outputs[branch], context, branch)
        if self.use_irc:
            for branch in ("query", "satellite"):
                target = outputs["reconstruction_target"][branch]
                # the variance of the global batch, so that N processes compute what one would
                normaliser = target_variance(context.gather(target)) if self.relative_irc else None
                terms[f"irc_{branch}"] = reconstruction_loss(
                    outputs["reconstruction"][branch], target, normaliser
                )
        return terms

    def _localization(
        self,
        baseline_total: torch.Tensor,
        outputs: Mapping[str, Any],
        batch: Mapping[str, Any],
        context: LossContext,
        terms: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, float, torch.Tensor | None]:
        """(L_loc, its weight, the baseline loss kept beside eq. 7 or None) for `cvd.loc`."""
        if self.loc_mode == "baseline":
            return baseline_total, self.lambda_loc, None
        if self.loc_mode == "none":
            return baseline_total, 1.0, None
        labels = context.gather(batch["label"])
        loc = info_nce(
            context.gather(outputs["query"]["embedding"]),
            context.gather(outputs["satellite"]["embedding"]),
            tau=self.tau,
            labels=labels,
            ref_labels=labels,
            symmetric=self.loc_mode == "bi-infonce",
        )
        terms["loc"] = loc
        return loc, self.lambda_loc, baseline_total

    def _independence(
        self, branch_outputs: Mapping[str, Any], context: LossContext, branch: str
    ) -> torch.Tensor:
        # Pool before gathering: the loss works on one vector per image, and gathering whole
        # feature maps would cost memory for nothing.
        content = context.gather(pool_factor(branch_outputs["zc"]))
        viewpoint = context.gather(pool_factor(branch_outputs["zv"]))
        if self.running_correlation is not None:
            # every rank sees the same gathered batch, so the running estimates stay equal
            return sw2_from_correlation(self.running_correlation[branch](content, viewpoint))
        return independence_loss(
            content,
            viewpoint,
            n_projections=self.n_projections,
            generator=context.generator,
            estimator=self.iic_estimator,
        )
