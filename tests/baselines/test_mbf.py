"""MBF: the status token fused into the ViT, the offline status file, the three-branch head,
and training with and without CVD."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.baselines.conftest import TINY_VIT, fixed_batch, tiny_config, train_on_fixed_batch

from cvd.baselines import get_recipe
from cvd.baselines.mbf import (
    MBFHead,
    bilinear_pool,
    load_status_embeddings,
    save_status_embeddings,
    vit_map_with_token,
)
from cvd.config import load_config
from cvd.errors import ConfigError
from cvd.models import Backbone

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
HEAD_TINY = "{blocks: 2, bottleneck: 16, dropout: 0.0, proj_channels: 16, hbp_channels: 24, num_heads: 2}"
MBF_TINY = ["model.head.name=mbf", f"model.head.kwargs={HEAD_TINY}"]
VIT_WIDTH = 64  # timm's test_vit


def test_the_token_free_path_is_timms_own_feature_map_and_the_token_changes_it():
    backbone = Backbone("test_vit").eval()
    images = torch.randn(2, 3, 64, 48)
    reference = backbone(images)  # timm's forward_intermediates (final norm, prefix tokens dropped)
    assert torch.equal(vit_map_with_token(backbone, images, None), reference)
    fused = vit_map_with_token(backbone, images, torch.randn(VIT_WIDTH))
    assert fused.shape == reference.shape == (2, VIT_WIDTH, 4, 3)
    assert not torch.allclose(fused, reference, atol=1e-4)
    with pytest.raises(ConfigError, match="not a plain timm ViT"):
        vit_map_with_token(Backbone("test_efficientnet"), torch.randn(1, 3, 32, 32), torch.zeros(4))


def test_status_file_round_trip_and_errors_name_the_file(tmp_path):
    query, satellite = torch.randn(VIT_WIDTH), torch.randn(1, VIT_WIDTH)
    path = save_status_embeddings(tmp_path / "status.safetensors", query, satellite)
    tokens = load_status_embeddings(path, VIT_WIDTH)
    assert torch.equal(tokens, torch.stack([query, satellite[0]]))
    with pytest.raises(ConfigError, match=r"status\.safetensors.*768"):
        load_status_embeddings(path, 768)
    from safetensors.torch import save_file

    save_file({"drone": torch.zeros(4)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ConfigError, match=r"wrong.safetensors lacks tensor\(s\) \['query', 'satellite'\]"):
        load_status_embeddings(tmp_path / "wrong.safetensors", 4)


def test_bilinear_pool_against_the_formula():
    first, second = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    positive = torch.nn.Sequential(torch.nn.Conv2d(3, 5, kernel_size=1), torch.nn.ReLU())
    a, b = positive(first).detach().numpy(), positive(second).detach().numpy()
    expected = np.sqrt((a * b).reshape(2, 5, -1).sum(-1) + 1e-5)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(bilinear_pool(first, second, positive).detach().numpy(), expected, atol=1e-6)


def test_mbf_head_has_global_hbp_and_ring_classifiers():
    head = MBFHead(
        8, num_classes=5, blocks=2, bottleneck=6, dropout=0.0, proj_channels=4, hbp_channels=10, num_heads=2
    )
    out = head.eval()(torch.randn(3, 8, 6, 6))
    assert len(out["logits"]) == 4 and all(logits.shape == (3, 5) for logits in out["logits"])
    assert out["parts"].shape == (3, 4, 6) and head.embedding_dim == 24 == out["embedding"].shape[1]
    assert torch.allclose(out["embedding"].reshape(3, 4, 6).norm(dim=-1), torch.full((3, 4), 0.5), atol=1e-6)
    assert head.hbp_classifier.bottleneck[0].in_features == 10
    assert [block.bottleneck[0].in_features for block in head.ring_classifiers.blocks] == [4, 4]
    with pytest.raises(ConfigError, match="num_heads"):
        MBFHead(8, num_classes=5, num_heads=3)


@pytest.mark.parametrize("cvd", [False, True], ids=["baseline", "cvd"])
def test_mbf_trains_on_a_fixed_batch_and_embeds_unit_vectors(cvd: bool, tmp_path):
    status = save_status_embeddings(
        tmp_path / "s.safetensors", torch.randn(VIT_WIDTH), torch.randn(VIT_WIDTH)
    )
    overrides = [*MBF_TINY, f"model.head.kwargs.status_embeddings={status}"]
    config = tiny_config("mbf", cvd=cvd, overrides=overrides, backbone=TINY_VIT)
    batch = fixed_batch(query_size=(32, 32), satellite_size=(32, 32))
    history, objective = train_on_fixed_batch(config, batch, steps=4)
    assert history[-1]["total"] < history[0]["total"]
    assert {"ce_query", "ce_satellite", "triplet"} <= set(history[0])
    if cvd:
        assert {"loc", "iic_satellite", "irc_query"} <= set(history[0])
    model = objective.model.eval()
    assert torch.equal(model.status.tokens, load_status_embeddings(status, VIT_WIDTH))
    embeddings = model.embed(torch.randn(2, 3, 32, 32), "drone")
    assert embeddings.shape == (2, 4 * 16)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(2), atol=1e-5)


def test_status_tokens_are_per_branch_and_the_file_is_optional(tmp_path, caplog):
    config = tiny_config("mbf", overrides=MBF_TINY, backbone=TINY_VIT)
    recipe = get_recipe("mbf")(config)
    with caplog.at_level(logging.INFO, logger="cvd"):
        image_only = recipe.build_model(config)
    assert image_only.status is None and "image-only variant" in caplog.text
    status = save_status_embeddings(
        tmp_path / "s.safetensors", torch.randn(VIT_WIDTH), torch.randn(VIT_WIDTH)
    )
    config = tiny_config(
        "mbf", overrides=[*MBF_TINY, f"model.head.kwargs.status_embeddings={status}"], backbone=TINY_VIT
    )
    model = get_recipe("mbf")(config).build_model(config).eval()
    images = torch.randn(2, 3, 32, 32)
    drone, satellite = model.embed(images, "drone"), model.embed(images, "satellite")
    model.status.tokens[0] = torch.randn(VIT_WIDTH)  # change the query branch's status only
    assert not torch.allclose(model.embed(images, "drone"), drone, atol=1e-5)
    assert torch.equal(model.embed(images, "satellite"), satellite)
    # training needs the file; rebuilding released weights (which hold the tokens) does not
    missing = tiny_config(
        "mbf",
        overrides=[*MBF_TINY, f"model.head.kwargs.status_embeddings={tmp_path / 'nope.safetensors'}"],
        backbone=TINY_VIT,
    )
    rebuilt = get_recipe("mbf")(missing).build_model(missing)
    assert torch.equal(rebuilt.status.tokens, torch.zeros(2, VIT_WIDTH))
    with pytest.raises(ConfigError, match=r"nope\.safetensors not found"):
        get_recipe("mbf")(missing).build_criterion(missing)


@pytest.mark.parametrize("path", ["sues200/mbf_150.yaml", "sues200/mbf_cvd_300.yaml"])
def test_mbf_configs_build_with_a_tiny_backbone(path: str):
    config = load_config(
        CONFIGS / path,
        [
            *TINY_VIT,
            f"model.head.kwargs={HEAD_TINY}",
            "data.query_size=[32, 32]",
            "data.satellite_size=[32, 32]",
        ],
    )
    config["model"]["num_classes"] = 3
    recipe = get_recipe("mbf")(config)
    model, criterion = recipe.build_model(config), recipe.build_criterion(config)
    assert model.status is None  # the configs run the image-only variant unless a status file is given
    assert (criterion.margin, criterion.triplet_weight) == (0.3, 1.0)
    assert model.eval().embed(torch.randn(1, 3, 32, 32), "drone").shape == (1, 4 * 16)
