"""embed_dataset: batching, dataset order, flip TTA on raw or normalised features, eval mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvd.evaluation import embed_dataset

IMAGES = torch.randn(10, 3, 4, 6)
LABELS = torch.arange(10) * 3


class TinyEmbedder(nn.Module):
    """A linear map of the pixels: not flip-invariant, feature norms vary with the image."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 4 * 6, 5)
        self.dropout = nn.Dropout(0.5)
        self.views: list[str] = []

    def features(self, images: torch.Tensor, view: str) -> torch.Tensor:
        self.views.append(view)
        return self.linear(self.dropout(images.flatten(1)))

    def embed(self, images: torch.Tensor, view: str) -> torch.Tensor:
        return F.normalize(self.features(images, view), dim=1)


def loader(order=None, batch_size=3, with_index=True):
    order = list(range(10)) if order is None else order
    for start in range(0, 10, batch_size):
        picked = torch.tensor(order[start : start + batch_size])
        batch = {"image": IMAGES[picked], "label": LABELS[picked]}
        if with_index:
            batch["index"] = picked
        yield batch


def mirrored(images: torch.Tensor) -> torch.Tensor:
    """Horizontal mirror by explicit column reversal (independent of torch.flip)."""
    return images[:, :, :, list(reversed(range(images.shape[3])))]


def test_plain_embeddings_are_normalised_float32_with_int64_labels():
    model = TinyEmbedder().eval()
    embeddings, labels = embed_dataset(model.embed, loader(), "drone")
    expected = model.linear(IMAGES.flatten(1))
    expected = expected / expected.norm(dim=1, keepdim=True)
    assert embeddings.dtype == torch.float32 and labels.dtype == torch.int64
    torch.testing.assert_close(embeddings, expected)
    assert labels.tolist() == LABELS.tolist()
    assert set(model.views) == {"drone"}


def test_flip_tta_sums_raw_features_when_given_features_fn():
    # The University-1652 / LPN recipe: f(x) + f(mirror(x)), then L2-normalise.
    model = TinyEmbedder().eval()
    embeddings, _ = embed_dataset(
        model.embed, loader(), "satellite", flip_tta=True, features_fn=model.features
    )
    with torch.no_grad():
        summed = model.linear(IMAGES.flatten(1)) + model.linear(mirrored(IMAGES).flatten(1))
    torch.testing.assert_close(embeddings, summed / summed.norm(dim=1, keepdim=True))


def test_flip_tta_with_embed_fn_sums_normalised_embeddings():
    # Without raw features, both views weigh equally: normalise(e(x) + e(mirror(x))).
    model = TinyEmbedder().eval()
    embeddings, _ = embed_dataset(model.embed, loader(), "drone", flip_tta=True)
    with torch.no_grad():
        a = model.linear(IMAGES.flatten(1))
        b = model.linear(mirrored(IMAGES).flatten(1))
        summed = a / a.norm(dim=1, keepdim=True) + b / b.norm(dim=1, keepdim=True)
    torch.testing.assert_close(embeddings, summed / summed.norm(dim=1, keepdim=True))
    raw_sum, _ = embed_dataset(model.embed, loader(), "drone", flip_tta=True, features_fn=model.features)
    assert not torch.allclose(raw_sum, embeddings)  # the documented (small) difference exists


def test_rows_come_back_in_dataset_order_whatever_the_loader_order():
    model = TinyEmbedder().eval()
    in_order, labels = embed_dataset(model.embed, loader(), "drone")
    shuffled, shuffled_labels = embed_dataset(
        model.embed, loader(order=[7, 2, 9, 0, 4, 1, 8, 3, 6, 5]), "drone"
    )
    torch.testing.assert_close(shuffled, in_order)
    assert shuffled_labels.tolist() == labels.tolist()


def test_training_mode_is_switched_off_during_embedding_and_restored():
    model = TinyEmbedder().train()
    first, _ = embed_dataset(model.embed, loader(), "drone")
    second, _ = embed_dataset(model.embed, loader(), "drone")
    torch.testing.assert_close(first, second)  # dropout inactive
    assert model.training


def test_batches_without_images_are_reported_by_field():
    model = TinyEmbedder().eval()
    with pytest.raises(ValueError, match=r"batch 0 has no 'image' field"):
        embed_dataset(model.embed, [{"label": LABELS[:2]}], "drone")
    with pytest.raises(ValueError, match="yielded no batches"):
        embed_dataset(model.embed, [], "drone")
