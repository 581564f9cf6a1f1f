"""The view means a centring CVD removes at inference, measured once training is over.

With ``cvd.centre: inference`` retrieval trains on the raw map and the mean of each view's pooled
map is removed only at inference. That mean must be the one inference will meet: the training
images as evaluation sees them (evaluation transform, no augmentation), under the final weights.
The running mean tracked during training is neither (augmented images, weights that kept
moving); on our synthetic world it removed the wrong offset and the centring gained nothing,
where the mean measured this way gained about 2 R@1 (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from cvd.data import ImageRecord, PairRecord
from cvd.engine.distributed import DistContext
from cvd.models.cvd import BRANCHES
from cvd.models.model import branch_of

LOGGER = logging.getLogger("cvd")
CALIBRATION_IMAGES = 2048  # per view: the mean of 1280 channels is settled well before that


def calibration_records(
    pairs: Sequence[PairRecord], query_view: str, limit: int
) -> dict[str, list[ImageRecord]]:
    """Each view's distinct training images, at most ``limit``, evenly spread over the list."""
    views = {
        query_view: [ImageRecord(p.query, p.label, p.location, query_view, p.gps) for p in pairs],
        "satellite": [ImageRecord(p.satellite, p.label, p.location, "satellite", p.gps) for p in pairs],
    }
    chosen = {}
    for view, records in views.items():
        unique = list({str(r.path): r for r in records}.values())
        keep = np.unique(np.linspace(0, len(unique) - 1, num=min(limit, len(unique))).round().astype(int))
        chosen[view] = [unique[i] for i in keep] if unique else []
    return chosen


@torch.no_grad()
def _pooled_sum(
    model: nn.Module,
    records: list[ImageRecord],
    view: str,
    config: Mapping[str, Any],
    dist_context: DistContext,
) -> tuple[torch.Tensor, int]:
    from cvd.engine.evaluate import eval_loader

    share = np.array_split(np.arange(len(records)), dist_context.world_size)[dist_context.rank]
    _, loader = eval_loader([records[i] for i in share], view, config, model.data_config, strict=False)
    encoder = getattr(model, "encoder", model.backbone)  # part models add tokens in their encoder
    branch = branch_of(view)
    total = torch.zeros(model.cvd.in_channels, dtype=torch.float64, device=dist_context.device)
    count = 0
    for batch in loader:
        if "image" not in batch:
            continue
        images = batch["image"].to(dist_context.device)
        if config["model"].get("channels_last", True):
            images = images.contiguous(memory_format=torch.channels_last)
        features = encoder(branch)(images)
        total += features.double().mean(dim=(2, 3)).sum(dim=0)
        count += len(images)
    return total, count


def calibrate_view_means(
    model: nn.Module,
    pairs: Sequence[PairRecord],
    query_view: str,
    config: Mapping[str, Any],
    dist_context: DistContext,
    limit: int = CALIBRATION_IMAGES,
) -> dict[str, int]:
    """Set the model's view means (``cvd.centre: inference``) to the training images' pooled means
    under the evaluation transform; returns how many images measured each branch ({} if none)."""
    cvd = getattr(model, "cvd", None)
    if cvd is None or cvd.centre_mode != "inference":
        return {}
    was_training = model.training
    model.eval()
    counts = {}
    try:
        for view, records in calibration_records(pairs, query_view, limit).items():
            total, count = _pooled_sum(model, records, view, config, dist_context)
            if dist.is_available() and dist.is_initialized() and dist_context.world_size > 1:
                packed = torch.cat(
                    [total, torch.tensor([float(count)], dtype=torch.float64, device=total.device)]
                )
                dist.all_reduce(packed)
                total, count = packed[:-1], int(packed[-1].item())
            if count == 0:
                LOGGER.warning("view-mean calibration: no readable %s image; the running mean stays", view)
                continue
            index = BRANCHES.index(branch_of(view))
            cvd.view_means[index].copy_((total / count).to(cvd.view_means.dtype))
            counts[branch_of(view)] = count
    finally:
        model.train(was_training)
    return counts
