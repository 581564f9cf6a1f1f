"""MCCG: triplet-attention gates, the multi-classifier head, the recipe, its augmentation and configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from tests.baselines.conftest import build_objective, fixed_batch, tiny_config, train_on_fixed_batch

from cvd.baselines import get_recipe
from cvd.baselines.mccg import ACROSS_HEIGHT, ACROSS_WIDTH, AttentionGate, MCCGHead
from cvd.config import load_config
from cvd.errors import ConfigError
from cvd.models import Backbone

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MCCG_CONFIGS = sorted(p for p in CONFIGS.glob("*/mccg*.yaml") if p.parent.name != "_base")
TINY_CONVNEXT = ["model.backbone.name=test_convnext", "model.backbone.pretrained=false"]
TINY_MCCG = [*TINY_CONVNEXT, "model.head.name=mccg"]


def _gate_reference(gate: AttentionGate, x: torch.Tensor, pooled_axis: int) -> torch.Tensor:
    """Triplet attention's gate written without rotations: Z-pool along ``pooled_axis`` (2 = H,
    3 = W), the conv sees the remaining (C, W) plane, or the (H, C) plane, and the gate scales
    every position along the pooled axis alike."""
    z = torch.stack([x.amax(dim=pooled_axis), x.mean(dim=pooled_axis)], dim=1)  # (B, 2, C, W|H)
    if pooled_axis == 3:
        z = z.transpose(2, 3)  # (B, 2, H, C): height rows, channel columns
    weights = torch.sigmoid(gate.norm(gate.conv(z)))[:, 0]
    if pooled_axis == 2:
        return x * weights[:, :, None, :]  # weights (B, C, W)
    return x * weights.transpose(1, 2)[:, :, :, None]  # weights (B, H, C) -> (B, C, H, 1)


@pytest.mark.parametrize(("permutation", "axis"), [(ACROSS_HEIGHT, 2), (ACROSS_WIDTH, 3)])
def test_attention_gate_matches_its_definition(permutation, axis):
    gate = AttentionGate(permutation).eval()
    with torch.no_grad():  # a non-trivial BatchNorm so the whole gate is exercised
        gate.norm.running_mean.fill_(0.3)
        gate.norm.running_var.fill_(2.0)
        gate.norm.weight.fill_(1.5)
    x = torch.randn(2, 6, 5, 4)  # C, H, W all different: a wrong rotation cannot pass
    with torch.no_grad():
        assert torch.allclose(gate(x), _gate_reference(gate, x, axis), atol=1e-6)


def test_attention_gate_with_a_zero_conv_halves_the_map():
    gate = AttentionGate(ACROSS_HEIGHT).eval()
    torch.nn.init.zeros_(gate.conv.weight)  # logits 0 after the fresh BatchNorm: sigmoid(0) = 1/2
    x = torch.randn(2, 3, 4, 5)
    assert torch.allclose(gate(x), x / 2, atol=1e-6)


def test_head_has_two_attention_classifiers_and_a_global_one():
    head = MCCGHead(in_channels=8, num_classes=5, bottleneck=16).train()
    feature_map = torch.randn(4, 8, 3, 3)
    output = head(feature_map)
    assert len(head.gates) == 2
    assert len(output["logits"]) == 3 and all(t.shape == (4, 5) for t in output["logits"])
    assert len(output["features"]) == 3 and all(t.shape == (4, 16) for t in output["features"])
    assert output["embedding"].shape == (4, head.embedding_dim) == (4, 48)

    head.eval()
    output = head(feature_map)
    assert "logits" not in output
    # Global branch: GAP, then the LayerNorm, then the classifier's bottleneck.
    pooled = torch.nn.functional.layer_norm(feature_map.mean(dim=(2, 3)), (8,), eps=1e-6)
    assert torch.allclose(output["features"][-1], head.global_block.bottleneck(pooled), atol=1e-5)
    # Attention branch i: gate i, then GAP, then its own classifier.
    for gate, block, feature in zip(head.gates, head.branch_blocks, output["features"]):
        assert torch.allclose(feature, block.bottleneck(gate(feature_map).mean(dim=(2, 3))), atol=1e-5)
    chunks = output["embedding"].split(16, dim=1)
    for chunk, feature in zip(chunks, output["features"]):
        expected = feature / feature.norm(dim=1, keepdim=True) / torch.sqrt(torch.tensor(3.0))
        assert torch.allclose(chunk, expected, atol=1e-6)


@pytest.mark.parametrize("blocks", [0, 1])
def test_fewer_attention_branches(blocks):
    head = MCCGHead(in_channels=8, num_classes=5, blocks=blocks, bottleneck=16).train()
    output = head(torch.randn(2, 8, 3, 3))
    assert len(output["logits"]) == blocks + 1 and head.embedding_dim == 16 * (blocks + 1)


def test_head_rejects_what_triplet_attention_cannot_give():
    with pytest.raises(ConfigError, match="blocks"):
        MCCGHead(in_channels=8, num_classes=5, blocks=3)
    with pytest.raises(ConfigError, match="num_classes"):
        MCCGHead(in_channels=8)


def test_global_norm_starts_from_convnexts_pretrained_norm(tmp_path):
    """With CVD off the head's LayerNorm is ConvNeXt's final norm (as MCCG pools through it); with
    the paper's CVD the widths differ and it starts fresh."""
    backbone = Backbone("test_convnext")
    with torch.no_grad():
        backbone.model.head.norm.weight.uniform_(0.5, 1.5)
        backbone.model.head.norm.bias.uniform_(-0.5, 0.5)
    torch.save(backbone.model.state_dict(), tmp_path / "convnext.pth")
    expected = backbone.model.head.norm.weight.detach().clone()
    overrides = [
        "model.backbone.name=test_convnext",
        f"model.backbone.pretrained={tmp_path / 'convnext.pth'}",
    ]
    config = tiny_config("mccg", backbone=overrides, overrides=["model.head.name=mccg"])
    model = get_recipe("mccg")(config).build_model(config)
    assert torch.equal(model.head("query").norm.weight.detach(), expected)

    # the paper's split halves the width: no pretrained norm fits, the head's starts fresh
    config = tiny_config(
        "mccg", cvd=True, backbone=overrides, overrides=["model.head.name=mccg", "cvd.variant=paper"]
    )
    model = get_recipe("mccg")(config).build_model(config)
    assert model.head("query").norm.normalized_shape == (32,)
    assert torch.equal(model.head("query").norm.weight.detach(), torch.ones(32))
    # the toolkit's complement split keeps the width: the pretrained norm carries over
    config = tiny_config(
        "mccg", cvd=True, backbone=overrides, overrides=["model.head.name=mccg", "cvd.variant=toolkit"]
    )
    model = get_recipe("mccg")(config).build_model(config)
    assert torch.equal(model.head("query").norm.weight.detach(), expected)


@pytest.mark.parametrize("cvd", [False, True], ids=["baseline", "cvd"])
def test_training_lowers_the_loss_and_embeddings_are_normalised(cvd):
    config = tiny_config("mccg", cvd=cvd, backbone=TINY_MCCG)
    batch = fixed_batch(4, (64, 64), (64, 64))
    history, objective = train_on_fixed_batch(config, batch, steps=4)
    assert history[-1]["total"] < history[0]["total"]
    assert {"ce_query", "ce_satellite", "triplet"} <= set(history[0])
    assert ("loc" in history[0]) is cvd  # classification baseline: InfoNCE on content is added
    model = objective.model.eval()
    width = model.cvd.content_channels if cvd else 64  # the head runs on the content channels
    assert model.head("query").global_block.bottleneck[0].in_features == width
    with torch.no_grad():
        for view in ("drone", "satellite"):
            embedding = model.embed(batch["query"], view)
            assert embedding.shape == (4, 512 * 3)
            assert torch.allclose(embedding.norm(dim=1), torch.ones(4), atol=1e-5)


def test_mccg_augmentation_is_added_around_the_shared_pipeline():
    config = tiny_config(
        "mccg",
        backbone=TINY_MCCG,
        overrides=[
            "data.query_size=[32, 32]",
            "data.satellite_size=[32, 32]",
            "data.augment={pad: 2, view_flip_prob: 0.5, satellite_affine_degrees: 90.0, "
            "query_autoaugment: true, view_color_jitter: 0.1, query_erasing_prob: 1.0}",
        ],
    )
    data_config = {
        "input_size": (3, 32, 32),
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
        "interpolation": "bicubic",
    }
    transform = get_recipe("mccg")(config).train_transform(config, data_config)
    query_steps = [type(step).__name__ for step in transform.query_transform.transforms]
    assert query_steps[:2] == ["AutoAugment", "ColorJitter"] and query_steps[-1] == "RandomErasing"
    assert type(transform.satellite_transform.transforms[0]).__name__ == "ColorJitter"
    image = Image.new("RGB", (48, 40), (200, 120, 40))
    torch.manual_seed(0)
    query, satellite = transform(image, image)
    assert query.shape == satellite.shape == (3, 32, 32)
    assert (query == 0).all(dim=0).any()  # erasing (p = 1) zeroed a patch of the normalised drone view

    with pytest.raises(ConfigError, match="query_autoaugmnt"):
        bad = tiny_config("mccg", backbone=TINY_MCCG, overrides=["data.augment={query_autoaugmnt: true}"])
        get_recipe("mccg")(bad).train_transform(bad, data_config)


def test_configs_follow_mccgs_recipe():
    names = {p.relative_to(CONFIGS).as_posix() for p in MCCG_CONFIGS}
    expected = {"university1652/mccg.yaml", "university1652/mccg_cvd.yaml"} | {
        f"sues200/mccg{suffix}_{h}.yaml" for h in (150, 200, 250, 300) for suffix in ("", "_cvd")
    }
    assert expected <= names
    for path in MCCG_CONFIGS:
        config = load_config(path)
        assert config["model"]["backbone"]["name"] == "convnext_tiny.fb_in22k_ft_in1k"
        assert config["model"]["head"] == {
            "name": "mccg",
            "kwargs": {"blocks": 2, "bottleneck": 512, "dropout": 0.5},
        }
        assert config["optim"] == {**config["optim"], "name": "sgd", "lr": 0.01, "backbone_lr_scale": 0.3}
        assert config["data"]["batch_size"] == 8 and config["data"]["query_size"] == [256, 256]
        assert config["loss"]["triplet_margin"] == 0.3
        assert config["meta"]["table"] == (1 if path.parent.name == "university1652" else 2)


@pytest.mark.parametrize("name", ["university1652/mccg_cvd.yaml", "sues200/mccg_200.yaml"])
def test_real_configs_build_with_a_tiny_backbone(name):
    tiny_cvd = ["cvd.recon_size=8", "cvd.decoder_channels=8", "cvd.n_projections=16"]
    config = load_config(CONFIGS / name, [*TINY_CONVNEXT, *tiny_cvd])
    config["model"]["num_classes"] = 7
    objective = build_objective(config).train()
    images = torch.randn(2, 3, 64, 64)
    outputs = objective.model(query=images, satellite=images)
    assert len(outputs["query"]["head"]["logits"]) == 3
    assert outputs["query"]["head"]["logits"][0].shape == (2, 7)


def test_released_model_rebuilds_from_its_config(tmp_path):
    """`cvd test` and `cvd export` rebuild from the run's config with cvd.factory.build_model, which
    goes through the recipe and passes model.num_classes to the head: it comes back identical."""
    from cvd.factory import load_release
    from cvd.models import save_release

    config = tiny_config("mccg", cvd=True, backbone=TINY_MCCG, num_classes=6)
    model = get_recipe("mccg")(config).build_model(config).eval()
    assert model.head("query").num_classes == 6
    save_release(model, config, tmp_path)
    loaded, _ = load_release(tmp_path)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.embed(images, "drone"), model.embed(images, "drone"), atol=1e-6)
