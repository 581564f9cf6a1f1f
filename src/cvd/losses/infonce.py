"""InfoNCE (eq. 6) and its symmetric form, safe for batches where locations repeat.

Two items of a batch that show the same location must not push each other apart: for each
positive pair (query i, reference j) the denominator holds j and i's true negatives only (other
references of i's location are left out), as in pytorch-metric-learning's NTXentLoss. With one
item per location this is exactly the usual cross-entropy over the similarity matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _one_direction(
    logits: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    label_smoothing: float | torch.Tensor,
) -> torch.Tensor:
    query_index, positive_index = positives.nonzero(as_tuple=True)
    if query_index.numel() == 0:
        raise ValueError("info_nce: no positive pair in the batch (no query shares a label with a reference)")
    allowed = negatives[query_index].clone()
    allowed[torch.arange(query_index.numel(), device=logits.device), positive_index] = True
    rows = logits[query_index].masked_fill(~allowed, float("-inf"))
    log_probabilities = torch.log_softmax(rows, dim=1)
    positive_term = log_probabilities.gather(1, positive_index[:, None]).squeeze(1)
    loss = -positive_term
    per_row = torch.is_tensor(label_smoothing)
    if per_row or label_smoothing > 0:
        # torch's label smoothing, over the classes this pair competes with: (1 - eps) on the
        # positive plus eps spread uniformly over positive and negatives. A tensor gives each
        # row its own eps (Game4Loc's per-pair smoothing).
        eps = label_smoothing.to(logits.device).float()[query_index] if per_row else label_smoothing
        uniform_term = log_probabilities.masked_fill(~allowed, 0.0).sum(1) / allowed.sum(1)
        loss = -(1.0 - eps) * positive_term - eps * uniform_term
    return loss.mean()


def info_nce(
    query: torch.Tensor,
    ref_emb: torch.Tensor | None = None,
    tau: float = 0.05,
    labels: torch.Tensor | None = None,
    ref_labels: torch.Tensor | None = None,
    label_smoothing: float | torch.Tensor = 0.0,
    symmetric: bool = False,
    logit_scale: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """InfoNCE of `query` (N, D) against `ref_emb` (M, D) on cosine similarity.

    - Positives are the references with the query's label. Without labels, query i and
      reference i form the pair (N == M). `ref_labels` defaults to `labels`.
    - `ref_emb=None` contrasts `query` with itself (self-pairs excluded; labels required).
    - Logits are cos / tau, or `logit_scale * cos` when a (learnable, already exponentiated)
      `logit_scale` is given, as in Sample4Geo / CLIP.
    - `symmetric=True` is Bi-InfoNCE: the mean of query->reference and reference->query.
    - The loss is averaged over positive pairs; inputs are L2-normalised here (cosine).
    - `label_smoothing` may be a tensor with one eps per row (query i and reference i pair up,
      and the reverse direction uses eps of reference i): Game4Loc's weighted InfoNCE.
    """
    if query.ndim != 2:
        raise ValueError(f"query must be (N, D), got {tuple(query.shape)}")
    n = query.shape[0]
    if ref_emb is None:
        if labels is None:
            raise ValueError("info_nce: contrasting a batch with itself (ref_emb=None) needs labels")
        if symmetric:
            raise ValueError("info_nce: symmetric needs ref_emb")
        ref_labels = labels
    else:
        if ref_emb.ndim != 2 or ref_emb.shape[1] != query.shape[1]:
            raise ValueError(f"ref_emb must be (M, {query.shape[1]}), got {tuple(ref_emb.shape)}")
        if labels is None and ref_labels is None:
            if ref_emb.shape[0] != n:
                raise ValueError(
                    "info_nce: without labels, query and ref_emb must pair up row by row (N == M)"
                )
            labels = torch.arange(n, device=query.device)
            ref_labels = labels
        elif ref_labels is None:
            ref_labels = labels
        elif labels is None:
            raise ValueError("info_nce: ref_labels given without labels")
    if labels.shape[0] != n:
        raise ValueError(f"labels must have {n} entries, got {labels.shape[0]}")
    reference = query if ref_emb is None else ref_emb
    if ref_labels.shape[0] != reference.shape[0]:
        raise ValueError(f"ref_labels must have {reference.shape[0]} entries, got {ref_labels.shape[0]}")

    scale = (1.0 / tau) if logit_scale is None else logit_scale
    query_unit = F.normalize(query.float(), dim=1)
    reference_unit = F.normalize(reference.float(), dim=1)
    cosine = query_unit @ reference_unit.T
    same = labels.to(query.device)[:, None] == ref_labels.to(query.device)[None, :]
    usable = torch.ones_like(same)
    if ref_emb is None:
        usable.fill_diagonal_(False)
    positives, negatives = same & usable, ~same & usable

    loss = _one_direction(scale * cosine, positives, negatives, label_smoothing)
    if symmetric:
        backward = _one_direction(scale * cosine.T, positives.T, negatives.T, label_smoothing)
        loss = 0.5 * (loss + backward)
    return loss
