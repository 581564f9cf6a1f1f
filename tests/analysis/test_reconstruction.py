"""The reconstruction measures on decoders whose behaviour is known by construction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvd.analysis.factors import Factors
from cvd.analysis.reconstruction_probe import branch_report, other_location
from cvd.data import ImageRecord
from cvd.models.cvd import CVD


class _Fixed(nn.Module):
    """A decoder that rebuilds its target from the content alone (copy) or ignores it (constant)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, content, viewpoint, size=()):
        pooled = content.mean(dim=(2, 3)) if content.ndim == 4 else content
        return pooled if self.mode == "copy" else torch.zeros_like(pooled) + 0.5


def _factors(n_locations=6, per=3):
    generator = torch.Generator().manual_seed(0)
    labels = [loc for loc in range(n_locations) for _ in range(per)]
    features = torch.randn(n_locations, 8, 2, 2, generator=generator)[labels]
    records = [ImageRecord(f"{i}.jpg", label, str(label), "drone") for i, label in enumerate(labels)]
    return Factors(
        "drone",
        records,
        torch.zeros(len(labels), 3, 4, 4),
        features,
        features.clone(),
        torch.randn(len(labels), 2, 2, 2, generator=generator),
        torch.zeros(len(labels), 8),
    )


def _cvd(mode):
    cvd = CVD(8, split="complement", viewpoint_channels=2, reconstruct="pooled_feature", decoder_channels=0)
    cvd.decoders["query"] = _Fixed(mode)
    return cvd


def test_other_location_never_returns_the_own_location():
    labels = [3, 3, 5, 7, 7, 9]
    swap = other_location(labels)
    assert all(labels[j] != labels[i] for i, j in enumerate(swap.tolist()))
    with pytest.raises(ValueError):
        other_location([1, 1])


def test_a_decoder_that_copies_the_content_is_perfect_and_sensitive_to_it():
    own = _factors()
    report = branch_report(_cvd("copy"), own, own.content)  # the other view's content = own features
    assert report["mse_matched"] < 1e-12
    assert report["mse_content_of_another_location"] > report["mse_mean_predictor"] * 0.5
    assert report["content_sensitivity"] > 1.0 and report["viewpoint_sensitivity"] == 0.0


def test_a_decoder_that_ignores_the_content_shows_zero_sensitivity():
    own = _factors()
    report = branch_report(_cvd("constant"), own, own.content)
    assert report["content_sensitivity"] == 0.0
    assert report["mse_matched"] == pytest.approx(report["mse_content_of_another_location"])
    assert report["mse_matched"] >= report["mse_mean_predictor"]  # no better than the mean
