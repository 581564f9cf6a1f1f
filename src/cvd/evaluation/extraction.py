"""Embed an evaluation set, optionally with flip test-time augmentation (TTA).

University-1652's scripts, LPN, MCCG and FSRA add the features of each image and of its
horizontal mirror before L2-normalising; Sample4Geo and Game4Loc do not. TTA is therefore an
option, off by default, and results record whether it was used.

Which features are summed: the scripts sum the *un-normalised* features. ``model.embed``
returns normalised ones, so:

- with ``features_fn`` (un-normalised features of the same head), the sum is exactly the
  scripts': ``normalise(f(x) + f(flip(x)))``;
- with ``embed_fn`` alone, the sum is ``normalise(e(x) + e(flip(x)))`` with ``e`` already
  normalised: each view weighs equally instead of in proportion to its feature norm. The two
  agree whenever ``|f(x)| == |f(flip(x))|`` and differ slightly otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

EmbedFn = Callable[[torch.Tensor, str], torch.Tensor]


def embed_dataset(
    embed_fn: EmbedFn,
    loader: Iterable[Mapping[str, Any]],
    view: str,
    flip_tta: bool = False,
    device: torch.device | str = "cpu",
    features_fn: EmbedFn | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings ``(N, D)`` float32 L2-normalised and labels ``(N,)`` int64, on the CPU.

    ``loader`` yields dicts with ``"image"`` (B, 3, H, W) and ``"label"`` (B,); when they also
    carry ``"index"`` (dataset position), rows come back in dataset order whatever the loader's
    order. ``features_fn``, when given, replaces ``embed_fn`` and must return un-normalised
    features: normalisation (after the flip sum) then happens here, as in the original scripts.
    A module bound to ``embed_fn``/``features_fn`` that is in training mode is switched to eval
    mode for the pass (dropout and batch-norm statistics must not touch evaluation) and
    restored afterwards.
    """
    encode = features_fn if features_fn is not None else embed_fn
    module = getattr(encode, "__self__", None)
    restore_training = isinstance(module, nn.Module) and module.training
    if restore_training:
        module.eval()
    embeddings: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    indices: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            for batch_number, batch in enumerate(loader):
                images = _field(batch, "image", batch_number).to(device)
                features = encode(images, view)
                if flip_tta:
                    features = features + encode(torch.flip(images, dims=(3,)), view)
                embeddings.append(F.normalize(features.float(), dim=1).cpu())
                labels.append(torch.as_tensor(_field(batch, "label", batch_number)).reshape(-1).long())
                if "index" in batch:
                    indices.append(torch.as_tensor(batch["index"]).reshape(-1).long())
    finally:
        if restore_training:
            module.train()
    if not embeddings:
        raise ValueError(f"the {view} loader yielded no batches: nothing to embed")
    all_embeddings = torch.cat(embeddings)
    all_labels = torch.cat(labels)
    if all_labels.numel() != all_embeddings.shape[0]:
        raise ValueError(
            f"{view} loader gave {all_labels.numel()} labels for {all_embeddings.shape[0]} images"
        )
    if indices and len(indices) == len(embeddings):
        order = torch.argsort(torch.cat(indices), stable=True)
        all_embeddings, all_labels = all_embeddings[order], all_labels[order]
    return all_embeddings, all_labels


def _field(batch: Mapping[str, Any], key: str, batch_number: int) -> Any:
    try:
        return batch[key]
    except KeyError:
        raise ValueError(
            f"evaluation batch {batch_number} has no {key!r} field (keys: {sorted(batch)}); "
            "expected ImageDataset samples {'image', 'label', 'index'}"
        ) from None


__all__ = ["EmbedFn", "embed_dataset"]
