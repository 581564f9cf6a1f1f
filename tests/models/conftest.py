"""Helpers of the model tests: tiny timm backbones so that every test runs in about a second."""

from __future__ import annotations

from typing import Any

import pytest

TINY_CNN = "test_efficientnet"  # timm's 0.1M-parameter EfficientNet, stride 32, 256 channels
TINY_VIT = "test_vit"  # timm's 0.3M-parameter ViT, patch 16, 64 channels, one class token


def tiny_config(
    backbone: str = TINY_CNN, cvd: bool = True, head: str = "gap", share_weights: bool = True, **cvd_keys: Any
) -> dict[str, Any]:
    """The model tests check the paper's module unless they ask for another ``variant``."""
    cvd_keys.setdefault("variant", "paper")
    return {
        "model": {
            "backbone": {"name": backbone, "pretrained": False, "kwargs": {}},
            "head": {"name": head, "kwargs": {}},
            "share_weights": share_weights,
        },
        "cvd": {"enabled": cvd, **cvd_keys},
    }


@pytest.fixture
def make_config():
    """Factory of full configs with a tiny backbone: make_config(backbone=..., cvd=..., **cvd_keys)."""
    return tiny_config
