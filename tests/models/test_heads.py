"""Head registry and the built-in heads against their formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvd.errors import ConfigError
from cvd.factory import build_model
from cvd.models import HEADS, build_head, register_head


def test_gap_head_is_the_spatial_mean_then_norm_and_projection():
    head = build_head("gap", 8, dim=4, norm=True)
    feature_map = torch.randn(3, 8, 2, 5)
    pooled = feature_map.mean(dim=(2, 3))
    normed = (pooled - pooled.mean(1, keepdim=True)) / torch.sqrt(
        pooled.var(1, unbiased=False, keepdim=True) + 1e-5
    )
    linear = head.project[1]
    expected = normed @ linear.weight.T + linear.bias
    torch.testing.assert_close(head(feature_map)["embedding"], expected, atol=1e-5, rtol=1e-5)
    assert head.embedding_dim == 4
    assert build_head("gap", 8).embedding_dim == 8


def test_gem_head_is_the_generalised_mean():
    head = build_head("gem", 4, p=3.0)
    feature_map = torch.rand(2, 4, 3, 3) + 0.1
    expected = (feature_map**3).mean(dim=(2, 3)) ** (1 / 3)
    torch.testing.assert_close(head(feature_map)["embedding"], expected)
    assert head.p.requires_grad


def test_unknown_head_and_bad_arguments_name_the_config_field():
    with pytest.raises(ConfigError, match=r"model\.head\.name.*gap"):
        build_head("no_such_head", 8)
    with pytest.raises(ConfigError, match=r"model\.head\.kwargs"):
        build_head("gap", 8, no_such_argument=1)


def test_a_registered_head_plugs_into_build_model(make_config):
    @register_head("test_two_parts")
    class TwoParts(nn.Module):
        def __init__(self, in_channels: int, dim: int = 3) -> None:
            super().__init__()
            self.classifier = nn.Linear(in_channels, dim)
            self.embedding_dim = 2 * in_channels

        def forward(self, feature_map):
            top, bottom = feature_map.chunk(2, dim=2)
            parts = torch.cat([top.mean(dim=(2, 3)), bottom.mean(dim=(2, 3))], dim=1)
            return {"embedding": parts, "logits": self.classifier(feature_map.mean(dim=(2, 3)))}

    try:
        config = make_config(head="test_two_parts")
        config["model"]["head"]["kwargs"] = {"dim": 5}
        model = build_model(config)  # CVD on: the head sits on the content channels
        outputs = model(query=torch.randn(2, 3, 128, 64), satellite=torch.randn(2, 3, 128, 64))
        content_channels = model.cvd.content_channels
        assert outputs["query"]["embedding"].shape == (2, 2 * content_channels)
        assert outputs["query"]["head"]["logits"].shape == (2, 5)
        assert model.embed(torch.randn(2, 3, 128, 64), "drone").shape == (2, 2 * content_channels)
    finally:
        HEADS.pop("test_two_parts")
