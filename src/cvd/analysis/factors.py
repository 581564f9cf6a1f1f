"""Run a trained model over held-out images and keep what the diagnostics read: the backbone map,
the content and viewpoint maps, the retrieval embedding and the preprocessed image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cvd.data import ImageRecord
from cvd.models.model import branch_of


@dataclass
class Factors:
    """One view's held-out images, row-aligned: ``records[i]`` produced row i of every tensor."""

    view: str
    records: list[ImageRecord]
    images: torch.Tensor  # (N, 3, H, W) as the model saw them (normalised)
    features: torch.Tensor  # (N, d, h, w) backbone map z
    content: torch.Tensor  # (N, C, h, w) zc (= z without CVD)
    viewpoint: torch.Tensor | None  # (N, K, h, w) zv, None without CVD
    embedding: torch.Tensor  # (N, D) L2-normalised retrieval embedding

    @property
    def pooled_content(self) -> torch.Tensor:
        return self.content.mean(dim=(2, 3))

    @property
    def pooled_viewpoint(self) -> torch.Tensor | None:
        return None if self.viewpoint is None else self.viewpoint.mean(dim=(2, 3))

    def subset(self, rows: Sequence[int] | torch.Tensor) -> Factors:
        index = torch.as_tensor(rows, dtype=torch.long)
        viewpoint = None if self.viewpoint is None else self.viewpoint[index]
        return Factors(
            self.view,
            [self.records[i] for i in index.tolist()],
            self.images[index],
            self.features[index],
            self.content[index],
            viewpoint,
            self.embedding[index],
        )


@torch.no_grad()
def extract_factors(
    model: nn.Module,
    records: Sequence[ImageRecord],
    view: str,
    config: Mapping[str, Any],
    batch_size: int = 32,
) -> Factors:
    """The factors of ``records`` (all of one ``view``) under ``model`` in eval mode.

    Images go through the recipe's evaluation transform, as in ``cvd test``; unreadable ones
    are dropped (and left out of ``records``).
    """
    from cvd.engine.evaluate import eval_loader

    dataset, loader = eval_loader(
        records, view, config, model.data_config, batch_size=batch_size, num_workers=0
    )
    branch = branch_of(view)
    cvd = getattr(model, "cvd", None)
    encoder = getattr(model, "encoder", model.backbone)  # part models add tokens in their encoder
    kept: list[int] = []
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("images", "features", "content", "viewpoint")}
    embeddings = []
    model.eval()
    for batch in loader:
        if "image" not in batch:
            continue
        images = batch["image"]
        features = encoder(branch)(images)
        if cvd is not None:
            content, viewpoint = cvd.split(features, branch)
        else:
            content, viewpoint = features, None
        parts["images"].append(images)
        parts["features"].append(features.float())
        parts["content"].append(content.float())
        if viewpoint is not None:
            parts["viewpoint"].append(viewpoint.float())
        embeddings.append(model.embed(images, view).float())
        kept.extend(int(i) for i in batch["index"])
    if not kept:
        raise ValueError(f"none of the {len(records)} {view} images could be read")
    return Factors(
        view,
        [dataset.records[i] for i in kept],
        torch.cat(parts["images"]),
        torch.cat(parts["features"]),
        torch.cat(parts["content"]),
        torch.cat(parts["viewpoint"]) if parts["viewpoint"] else None,
        torch.cat(embeddings),
    )
