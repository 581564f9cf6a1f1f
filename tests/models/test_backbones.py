"""Backbone: feature-map shapes for CNNs and ViTs, offline ImageNet weights, honest failures."""

from __future__ import annotations

import pytest
import timm
import torch
from PIL import Image
from skimage import data

from cvd.errors import ConfigError, WeightsError
from cvd.models import Backbone
from cvd.models.offline_weights import efficientnet_lite_state_dict

TINY_CNN = "test_efficientnet"  # timm's 0.1M-parameter EfficientNet, stride 32, 256 channels
TINY_VIT = "test_vit"  # timm's 0.3M-parameter ViT, patch 16, 64 channels, one class token


def test_cnn_gives_its_last_feature_map():
    backbone = Backbone(TINY_CNN)
    features = backbone(torch.randn(2, 3, 64, 96))
    assert features.shape == (2, backbone.out_channels, 2, 3)  # stride 32
    assert not backbone.is_vit


def test_vit_gives_the_patch_grid_without_prefix_tokens_at_any_size():
    backbone = Backbone(TINY_VIT).eval()
    images = torch.randn(2, 3, 64, 96)  # not the model's 160 x 160: dynamic image size
    with torch.no_grad():
        features = backbone(images)
        tokens = backbone.model.forward_features(images)  # (B, 1 + 4 * 6, C), class token first
    assert backbone.is_vit and backbone.model.num_prefix_tokens == 1
    assert features.shape == (2, 64, 4, 6)
    expected = tokens[:, 1:].reshape(2, 4, 6, 64).permute(0, 3, 1, 2)
    torch.testing.assert_close(features, expected)


def test_every_backbone_parameter_is_used_by_the_feature_map():
    # An unused parameter (classifier, pooled-path norm) breaks DistributedDataParallel.
    for name in (TINY_CNN, TINY_VIT):
        backbone = Backbone(name)
        backbone(torch.randn(2, 3, 64, 64)).square().mean().backward()
        unused = [key for key, parameter in backbone.named_parameters() if parameter.grad is None]
        assert unused == [], name


def test_data_config_is_timms():
    backbone = Backbone("tf_efficientnet_lite0")
    assert backbone.data_config["mean"] == (0.5, 0.5, 0.5) and backbone.data_config["std"] == (0.5, 0.5, 0.5)
    assert backbone.data_config["interpolation"] == "bicubic"


def test_offline_lite0_weights_classify_the_cat():
    backbone = Backbone("tf_efficientnet_lite0", pretrained=True).eval()
    transform = timm.data.create_transform(**backbone.data_config)  # bicubic, x / 127.5 - 1
    image = transform(Image.fromarray(data.chelsea()))[None]
    assert image.min().item() >= -1.0 and image.max().item() <= 1.0
    # The package's classifier, mapped into timm's names, on top of our backbone's features.
    state = efficientnet_lite_state_dict("tf_efficientnet_lite0")
    with torch.no_grad():
        logits = backbone(image).mean(dim=(2, 3)) @ state["classifier.weight"].T + state["classifier.bias"]
    assert 281 <= logits.argmax().item() <= 285  # ImageNet's cat classes (tabby, tiger cat, ...)


def test_offline_weights_map_one_to_one_into_timm():
    model = timm.create_model("tf_efficientnet_lite0")
    state = efficientnet_lite_state_dict("tf_efficientnet_lite0", model)
    assert len(state) == len(model.state_dict())
    model.load_state_dict(state, strict=True)


def test_a_missing_weights_file_is_an_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        Backbone(TINY_CNN, pretrained=str(tmp_path / "nothing.safetensors"))


def test_a_weights_file_of_another_model_lists_the_keys(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(timm.create_model(TINY_VIT).state_dict(), path)
    with pytest.raises(WeightsError, match=r"missing keys \(\d+\): conv_stem.weight") as error:
        Backbone(TINY_CNN, pretrained=path)
    assert "unexpected keys" in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_a_weights_file_loads_strictly_with_or_without_classifier(tmp_path):
    from safetensors.torch import save_file

    reference = timm.create_model(TINY_CNN).eval()
    full, headless = tmp_path / "full.pth", tmp_path / "headless.safetensors"
    torch.save({"state_dict": reference.state_dict()}, full)  # a training checkpoint wrapper
    save_file({k: v for k, v in reference.state_dict().items() if not k.startswith("classifier")}, headless)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference.forward_features(images)
        for path in (full, headless):
            torch.testing.assert_close(Backbone(TINY_CNN, pretrained=path).eval()(images), expected)


def test_hub_weights_unavailable_offline_raise_instead_of_random_weights(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError, match=rf"'{TINY_VIT}'.*model.backbone.pretrained"):
        Backbone(TINY_VIT, pretrained=True)


def test_unknown_backbone_names_the_config_field():
    with pytest.raises(ConfigError, match=r"model\.backbone\.name"):
        Backbone("no_such_network")
