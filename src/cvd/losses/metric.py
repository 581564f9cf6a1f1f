"""The baselines' own metric-learning losses: classification over locations and triplets.

Shared by the recipes (LPN, SDPL, MCCG, FSRA, MBF use classification + batch-hard triplet;
TransGeo and GeoDTR use the soft-margin triplet), so each is written and tested once. Like the
rest of ``cvd.losses`` these are pure functions; the recipes gather across ranks first where a
loss must see the global batch (the triplet's negatives).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def classification_loss(
    logits: torch.Tensor | Sequence[torch.Tensor],
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    reduction: str = "sum",
) -> torch.Tensor:
    """Cross-entropy of location logits; several classifiers (one per part/branch) are summed.

    LPN and its successors sum the per-part losses (``reduction="sum"``); ``"mean"`` averages
    them instead.
    """
    parts = [logits] if isinstance(logits, torch.Tensor) else list(logits)
    if not parts:
        raise ValueError("classification_loss needs at least one logits tensor")
    losses = [F.cross_entropy(part.float(), labels, label_smoothing=label_smoothing) for part in parts]
    total = torch.stack(losses).sum()
    return total / len(losses) if reduction == "mean" else total


def _distances(query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    # Euclidean distances, clamped before the square root so identical rows get a finite gradient.
    squared = (
        query.pow(2).sum(1, keepdim=True) + reference.pow(2).sum(1).unsqueeze(0) - 2 * query @ reference.T
    )
    return squared.clamp_min(1e-12).sqrt()


def batch_hard_triplet(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.3,
    ref_emb: torch.Tensor | None = None,
    ref_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017) on Euclidean distances.

    For each anchor: its farthest positive and nearest negative, ``relu(d_ap - d_an + margin)``,
    averaged over anchors that have both. With ``ref_emb`` the positives and negatives are taken
    from the references only (query-vs-reference, as in pytorch-metric-learning); without it
    from the same set, the anchor itself excluded.
    """
    labels = labels.reshape(-1)
    self_pairs = ref_emb is None
    reference = embeddings if self_pairs else ref_emb
    reference_labels = labels if ref_labels is None else ref_labels.reshape(-1)
    distances = _distances(embeddings.float(), reference.float())
    same = labels.unsqueeze(1) == reference_labels.unsqueeze(0)
    positive = same.clone()
    if self_pairs:
        positive.fill_diagonal_(False)
    negative = ~same
    valid = positive.any(1) & negative.any(1)
    if not valid.any():
        return embeddings.sum() * 0.0
    hardest_positive = distances.masked_fill(~positive, float("-inf")).amax(1)
    hardest_negative = distances.masked_fill(~negative, float("inf")).amin(1)
    losses = F.relu(hardest_positive - hardest_negative + margin)
    return losses[valid].mean()


def soft_margin_triplet(
    query: torch.Tensor,
    reference: torch.Tensor,
    labels: torch.Tensor | None = None,
    alpha: float = 10.0,
) -> torch.Tensor:
    """SAFA's weighted soft-margin triplet, as TransGeo and GeoDTR train with it.

    ``mean over (anchor, negative) of log(1 + exp(alpha * (d2(a, p) - d2(a, n))))`` with
    ``d2 = 2 - 2 cos`` the *squared* distance of L2-normalised embeddings, for query anchors and
    for reference anchors, averaged (TransGeo writes it as alpha 20 on cosines: the same loss).
    Pairs are query i / reference i; with ``labels``, references of the anchor's location are
    neither positive (only the diagonal is) nor negative.
    """
    n = query.shape[0]
    if reference.shape[0] != n:
        raise ValueError("the soft-margin triplet pairs query i with reference i: sizes must agree")
    cosine = F.normalize(query.float(), dim=1) @ F.normalize(reference.float(), dim=1).T
    squared = 2.0 - 2.0 * cosine
    if labels is None:
        labels = torch.arange(n, device=query.device)
    negatives = labels[:, None] != labels[None, :]
    if not negatives.any():
        return cosine.sum() * 0.0
    positive = squared.diagonal()
    query_anchor = F.softplus(alpha * (positive[:, None] - squared))[negatives]
    reference_anchor = F.softplus(alpha * (positive[None, :] - squared))[negatives]
    return 0.5 * (query_anchor.mean() + reference_anchor.mean())
