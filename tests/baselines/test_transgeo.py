"""TransGeo: SAFA's soft-margin triplet worked by hand, the head's attention-guided crop checked
against its definition, training with and without CVD, and the real configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tests.baselines.conftest import (
    TINY_CVD,
    TINY_VIT,
    build_objective,
    fixed_batch,
    tiny_config,
    train_on_fixed_batch,
)

from cvd.baselines import LossContext, get_recipe
from cvd.baselines.transgeo import TransGeoHead
from cvd.config import load_config
from cvd.engine.trainer import step_generator
from cvd.errors import ConfigError
from cvd.losses import soft_margin_triplet

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TRANSGEO_CONFIGS = sorted(p for p in CONFIGS.rglob("transgeo*.yaml") if "_base" not in p.parts)
TRANSGEO = ["model.head.name=transgeo", "model.share_weights=false"]


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def identity_context() -> LossContext:
    return LossContext(gather=lambda tensor: tensor, generator=step_generator(0, 0))


def test_soft_margin_triplet_by_hand():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    references = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # cosines q0.r0 = 1, q0.r1 = 0.6, q1.r0 = 0, q1.r1 = 0.8 -> squared distances 2 - 2 cos:
    # d00 = 0, d01 = 0.8, d10 = 2, d11 = 0.4.
    query_anchors = [softplus(10 * (0 - 0.8)), softplus(10 * (0.4 - 2))]
    reference_anchors = [softplus(10 * (0 - 2)), softplus(10 * (0.4 - 0.8))]
    expected = 0.5 * (sum(query_anchors) / 2 + sum(reference_anchors) / 2)
    assert soft_margin_triplet(queries, references).item() == pytest.approx(expected, rel=1e-5)


def test_soft_margin_triplet_is_transgeos_cosine_form_with_alpha_20():
    # TransGeo's SoftTripletBiLoss: log(1 + exp(20 (cos(a, n) - cos(a, p)))), both directions.
    generator = torch.Generator().manual_seed(3)
    q, r = torch.randn(5, 7, generator=generator), torch.randn(5, 7, generator=generator)
    cos = (F.normalize(q, dim=1) @ F.normalize(r, dim=1).T).tolist()
    n = 5
    forward = [softplus(20 * (cos[i][j] - cos[i][i])) for i in range(n) for j in range(n) if i != j]
    backward = [softplus(20 * (cos[i][j] - cos[j][j])) for j in range(n) for i in range(n) if i != j]
    expected = 0.5 * (sum(forward) / len(forward) + sum(backward) / len(backward))
    assert soft_margin_triplet(q, r, alpha=10.0).item() == pytest.approx(expected, rel=1e-5)


def test_soft_margin_triplet_leaves_same_location_references_out():
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    r = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    # Only (0, 2), (1, 2), (2, 0), (2, 1) are negatives; all at squared distance 2, positives at 0.
    expected = softplus(10 * (0 - 2))
    assert soft_margin_triplet(q, r, labels=labels).item() == pytest.approx(expected, rel=1e-5)


def identity_head(channels: int, crop_keep: float, branch: str | None) -> TransGeoHead:
    head = TransGeoHead(channels, dim=channels, crop_keep=crop_keep)
    with torch.no_grad():
        head.project.weight.copy_(torch.eye(channels))
        head.project.bias.zero_()
    head.branch = branch
    return head


def test_attention_is_the_mean_tokens_softmax_over_positions():
    feature_map = torch.randn(2, 6, 3, 4)
    tokens = feature_map.flatten(2)
    mean = tokens.mean(2)
    expected = torch.stack(
        [torch.softmax(mean[b] @ tokens[b] / math.sqrt(6), dim=0).view(3, 4) for b in range(2)]
    )
    attention = TransGeoHead.attention(feature_map)
    assert torch.allclose(attention, expected, atol=1e-6)
    assert torch.allclose(attention.sum(dim=(1, 2)), torch.ones(2))


def test_satellite_crop_pools_the_most_attended_positions():
    # One channel, values 1..8 on a 2x4 grid: the mean token is positive, so attention grows
    # with the value; keeping int(0.5 * 8) = 4 positions keeps 5, 6, 7, 8 -> mean 6.5.
    feature_map = torch.arange(1.0, 9.0).view(1, 1, 2, 4)
    output = identity_head(1, crop_keep=0.5, branch="satellite")(feature_map)
    assert output["embedding"].item() == pytest.approx(6.5)
    # TransGeo's own rate on a 20x20 map: int(0.64 * 400) = 256 positions, the 16x16 token count.
    big = (torch.arange(400.0) / 400).view(1, 1, 20, 20)
    kept_mean = identity_head(1, 0.64, "satellite")(big)["embedding"].item()
    assert kept_mean == pytest.approx(sum(range(400 - 256, 400)) / 256 / 400, rel=1e-5)


def test_query_head_and_first_stage_do_not_crop():
    feature_map = torch.arange(1.0, 9.0).view(1, 1, 2, 4)
    assert identity_head(1, 0.5, "query")(feature_map)["embedding"].item() == pytest.approx(4.5)
    first_stage = identity_head(1, 1.0, None)
    assert first_stage.pools_by_global_mean
    assert first_stage(feature_map)["embedding"].item() == pytest.approx(4.5)


def test_a_cropping_head_that_does_not_know_its_branch_refuses():
    head = identity_head(1, 0.5, None)
    assert not head.pools_by_global_mean
    with pytest.raises(ConfigError, match="branch"):
        head(torch.randn(1, 1, 2, 2))
    with pytest.raises(ConfigError, match="crop_keep"):
        TransGeoHead(4, crop_keep=0.0)


def test_shared_weights_with_a_crop_is_a_config_error():
    config = tiny_config(
        "transgeo", overrides=["model.head.name=transgeo", "model.head.kwargs={crop_keep: 0.5}"]
    )
    with pytest.raises(ConfigError, match="share_weights"):
        get_recipe("transgeo")(config).build_model(config)


@pytest.mark.parametrize("cvd", [False, True], ids=["baseline", "cvd"])
def test_second_stage_trains_on_a_fixed_batch_and_embeds_unit_vectors(cvd: bool):
    overrides = [*TRANSGEO, "model.head.kwargs={dim: 16, crop_keep: 0.5}"]
    config = tiny_config("transgeo", cvd=cvd, overrides=overrides, backbone=TINY_VIT)
    batch = fixed_batch(query_size=(32, 64), satellite_size=(64, 64))
    history, objective = train_on_fixed_batch(config, batch, steps=4)
    assert history[-1]["total"] < history[0]["total"]
    assert "loc" not in history[0]  # the soft-margin triplet is L_loc
    model = objective.model.eval()
    assert model.head("satellite").crops and not model.head("query").crops
    with torch.no_grad():
        satellite = model.embed(batch["satellite"], "satellite")
        street = model.embed(batch["query"], "street")
        # Inference takes the same (cropped) path as training.
        encoded = model.encode(batch["satellite"], "satellite")["embedding"]
    assert satellite.shape == street.shape == (4, 16)
    assert torch.allclose(satellite.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(satellite, encoded, atol=1e-5)
    # With CVD the attention comes from the content map (32 of test_vit's 64 channels).
    attention = model.encode(batch["satellite"], "satellite")["head"]["attention"]
    assert attention.shape == (4, 4, 4)


def test_real_configs_cover_table_3_and_both_stages():
    rows = {}
    for path in TRANSGEO_CONFIGS:
        config = load_config(path)
        meta = config["meta"]
        assert config["model"]["share_weights"] is False
        assert config["data"]["sampler"] == "similarity"
        if meta.get("stage") == 1:
            assert config["model"]["head"]["kwargs"]["crop_keep"] == 1.0
            assert config["data"]["satellite_size"] == [256, 256]
            assert "table" not in meta
        else:
            assert config["model"]["head"]["kwargs"]["crop_keep"] == 0.64
            assert config["data"]["satellite_size"] == [320, 320]
            assert config["optim"]["lr"] == pytest.approx(1e-5)
            rows[(path.parent.name, meta["row"])] = meta["paper"]
    assert set(rows) == {(d, r) for d in ("cvusa", "cvact") for r in ("TransGeo", "TransGeo + CVD")}
    assert rows[("cvusa", "TransGeo")] == {
        "cvusa": {"R@1": 93.72, "R@5": 98.01, "R@10": 98.56, "R@1%": 99.78}
    }


@pytest.mark.parametrize("stage", ["transgeo_stage1.yaml", "transgeo_cvd.yaml"])
def test_real_config_builds_and_runs_with_a_tiny_backbone(stage: str):
    config = load_config(CONFIGS / "cvusa" / stage, [*TINY_VIT, *TINY_CVD])
    objective = build_objective(config)
    query_size = tuple(config["data"]["query_size"])  # 112x616: timm pads the last half patch
    satellite_size = tuple(config["data"]["satellite_size"])
    batch = fixed_batch(batch_size=2, query_size=query_size, satellite_size=satellite_size)
    terms = objective(batch, identity_context())
    assert torch.isfinite(terms["total"])
    assert objective.model.embedding_dim == 1000
