"""GeoDTR: the descriptors and the counterfactual loss against their definitions, the layout
simulation keeping the two views aligned, training with and without CVD, and the real configs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.baselines.conftest import TINY_CVD, build_objective, fixed_batch, tiny_config, train_on_fixed_batch

from cvd.baselines import LossContext, get_recipe
from cvd.baselines.geodtr import (
    GeoDTRHead,
    GeoDTRLoss,
    LayoutSimulation,
    counterfactual_loss,
    geodtr_augment_options,
)
from cvd.config import load_config
from cvd.engine.trainer import step_generator
from cvd.errors import ConfigError
from cvd.losses import soft_margin_triplet

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
GEODTR_CONFIGS = sorted(p for p in CONFIGS.rglob("geodtr*.yaml") if "_base" not in p.parts)
TINY_RESNET = [
    "model.backbone.name=test_resnet",  # 96 channels
    "model.backbone.pretrained=false",
    "model.backbone.kwargs={output_stride: 16}",
]


def identity_context() -> LossContext:
    return LossContext(gather=lambda tensor: tensor, generator=step_generator(0, 0))


def test_embedding_is_the_map_pooled_by_each_descriptor():
    head = GeoDTRHead(5, grid=(2, 3), n_des=4, heads=1, layers=1, ffn_dim=8).eval()
    feature_map = torch.randn(2, 5, 2, 3)
    with torch.no_grad():
        output = head(feature_map)
    layout = output["layout"]
    assert layout.shape == (2, 6, 4)
    assert layout.abs().max() <= 1.0  # hard-tanh'ed descriptors
    # embedding[b, c * n_des + d] = sum_p x[b, c, p] * P[b, p, d]
    x = feature_map.flatten(2)
    for b in range(2):
        for c in range(5):
            for d in range(4):
                expected = sum(float(x[b, c, p]) * float(layout[b, p, d]) for p in range(6))
                assert output["embedding"][b, c * 4 + d].item() == pytest.approx(expected, abs=1e-5)
    assert head.embedding_dim == 20
    assert "counterfactual" not in output  # inference: no random layout


def test_descriptors_depend_on_the_layout_of_the_channel_maxima():
    # Same values at other positions -> other descriptors (the GLE reads where the maxima are).
    torch.manual_seed(0)
    head = GeoDTRHead(3, grid=(1, 4), n_des=2, layers=0).eval()
    with torch.no_grad():
        head.extractor.w_in.normal_(0, 1.0)
        head.extractor.w_out.normal_(0, 1.0)
    feature_map = torch.tensor([[[[4.0, 0.0, 0.0, 1.0]], [[0.0, 2.0, 0.0, 0.0]], [[0.0, 0.0, 3.0, 0.0]]]])
    shifted = feature_map.roll(1, dims=-1)
    assert not torch.allclose(head(feature_map)["layout"], head(shifted)["layout"].roll(-1, dims=1))


def test_training_mode_adds_a_counterfactual_from_random_descriptors():
    head = GeoDTRHead(4, grid=(2, 2), n_des=3, heads=1, layers=1, ffn_dim=8).train()
    output = head(torch.randn(2, 4, 2, 2))
    assert output["counterfactual"].shape == output["embedding"].shape == (2, 12)
    assert not torch.allclose(output["counterfactual"], output["embedding"])


def test_counterfactual_loss_by_hand():
    v = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    same = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # cosine 1 -> log(1 + e^0) = log 2
    orthogonal = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # cosine 0 -> log(1 + e^-10)
    assert counterfactual_loss(v, same).item() == pytest.approx(math.log(2.0), rel=1e-6)
    assert counterfactual_loss(v, orthogonal).item() == pytest.approx(math.log1p(math.exp(-10.0)), rel=1e-5)


def test_loss_is_triplet_plus_weighted_counterfactual_of_both_views():
    torch.manual_seed(0)
    outputs = {
        branch: {
            "embedding": torch.nn.functional.normalize(torch.randn(3, 6), dim=1),
            "head": {"counterfactual": torch.randn(3, 6)},
        }
        for branch in ("query", "satellite")
    }
    batch = {"label": torch.arange(3)}
    terms = GeoDTRLoss(alpha=10.0, cf_weight=0.5)(outputs, batch, identity_context())
    triplet = soft_margin_triplet(outputs["query"]["embedding"], outputs["satellite"]["embedding"])
    cf = 0.5 * sum(
        counterfactual_loss(outputs[b]["embedding"], outputs[b]["head"]["counterfactual"])
        for b in ("query", "satellite")
    )
    assert terms["soft_triplet"].item() == pytest.approx(triplet.item(), rel=1e-6)
    assert terms["counterfactual"].item() == pytest.approx(cf.item(), rel=1e-6)
    assert terms["total"].item() == pytest.approx(triplet.item() + 0.5 * cf.item(), rel=1e-6)


def test_wrong_grid_or_heads_name_the_field():
    head = GeoDTRHead(4, grid=(8, 42), n_des=2, heads=4, layers=1, ffn_dim=8)
    with pytest.raises(ConfigError, match="grid"):
        head(torch.randn(1, 4, 4, 4))
    with pytest.raises(ConfigError, match="heads"):
        GeoDTRHead(4, grid=(1, 6), heads=2)  # token width 3


def test_layout_simulation_keeps_polar_satellite_and_panorama_aligned():
    # A polar satellite's columns are the panorama's azimuths: feed the same image as both views,
    # and every flip/shift must keep them identical; over many draws some must move them.
    image = torch.arange(2 * 3 * 4 * 10, dtype=torch.float32).view(2, 3, 4, 10)[0]
    simulation = LayoutSimulation("strong", polar=True)
    moved = set()
    torch.manual_seed(0)
    for _ in range(40):
        query, satellite = simulation(image, image.clone())
        assert torch.equal(query, satellite)
        for shift in range(10):
            for flipped in (False, True):
                candidate = torch.roll(image.flip(-1) if flipped else image, shift, dims=-1)
                if torch.equal(candidate, query):
                    moved.add((shift, flipped))
    # -round(k * 10 / 4) mod 10 for k = 0..3 -> shifts {0, 8, 5, 2}, with and without the flip.
    assert moved == {(s, f) for s in (0, 8, 5, 2) for f in (False, True)}


def test_weak_layout_simulation_only_flips():
    image = torch.randn(3, 4, 8)
    outputs = set()
    torch.manual_seed(1)
    for _ in range(20):
        query, _ = LayoutSimulation("weak", polar=True)(image, image)
        outputs.add(
            "flip" if torch.equal(query, image.flip(-1)) else "same" if torch.equal(query, image) else "?"
        )
    assert outputs == {"flip", "same"}


def test_augment_options_are_checked():
    config = {"data": {"augment": {"polar": True, "flip_prob": 0.5}}}
    with pytest.raises(ConfigError, match="flip_prob"):
        geodtr_augment_options(config)
    with pytest.raises(ConfigError, match="layout_simulation"):
        geodtr_augment_options({"data": {"augment": {"layout_simulation": "heavy"}}})


@pytest.mark.parametrize("cvd", [False, True], ids=["baseline", "cvd"])
def test_trains_on_a_fixed_batch_and_embeds_unit_vectors(cvd: bool):
    overrides = [
        "model.head.name=geodtr",
        "model.share_weights=false",
        "model.head.kwargs={grid: [2, 4], n_des: 2, heads: 2, ffn_dim: 16}",
    ]
    config = tiny_config("geodtr", cvd=cvd, overrides=overrides, backbone=TINY_RESNET)
    batch = fixed_batch(query_size=(32, 64), satellite_size=(32, 64))
    history, objective = train_on_fixed_batch(config, batch, steps=4)
    assert history[-1]["total"] < history[0]["total"]
    assert "counterfactual" in history[0] and "loc" not in history[0]
    objective.eval()
    with torch.no_grad():
        embedding = objective.model.embed(batch["satellite"], "satellite")
    # test_resnet: 96 channels; the paper's CVD keeps half, the toolkit's complement split all
    channels = objective.model.cvd.content_channels if cvd else 96
    assert embedding.shape == (4, channels * 2)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(4), atol=1e-5)


def test_real_configs_cover_table_3():
    rows = {(p.parent.name, load_config(p)["meta"]["row"]) for p in GEODTR_CONFIGS}
    assert rows == {(d, r) for d in ("cvusa", "cvact") for r in ("GeoDTR", "GeoDTR + CVD")}
    config = load_config(CONFIGS / "cvact" / "geodtr_cvd.yaml")
    assert config["meta"]["paper"] == {
        "cvact_val": {"R@1": 85.72, "R@5": 95.19, "R@10": 96.63, "R@1%": 98.74}
    }
    assert config["data"]["augment"]["polar"] is True
    assert config["model"]["share_weights"] is False


@pytest.mark.parametrize("name", ["geodtr.yaml", "geodtr_cvd.yaml"])
def test_real_config_builds_runs_and_augments_with_a_tiny_backbone(name: str):
    config = load_config(CONFIGS / "cvusa" / name, [*TINY_RESNET, *TINY_CVD])
    objective = build_objective(config)
    # 122x671 at output stride 16 -> the configured 8x42 map
    batch = fixed_batch(batch_size=2, query_size=(122, 671), satellite_size=(122, 671))
    terms = objective(batch, identity_context())
    assert torch.isfinite(terms["total"])
    recipe = get_recipe("geodtr")(config)
    transform = recipe.train_transform(config, objective.model.data_config)
    rng = np.random.default_rng(0)
    street = Image.fromarray(rng.integers(0, 255, (112, 616, 3), dtype=np.uint8))
    satellite = Image.fromarray(rng.integers(0, 255, (75, 75, 3), dtype=np.uint8))
    query, polar = transform(street, satellite)
    assert query.shape == polar.shape == (3, 122, 671)
    evaluation = recipe.eval_transform(config, objective.model.data_config, "satellite")(satellite)
    assert evaluation.shape == (3, 122, 671)
