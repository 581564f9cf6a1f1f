"""FSRA: heat-ranked feature segmentation, its head, its loss, its weights converter and its configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import timm
import torch
from tests.baselines.conftest import TINY_VIT, build_objective, fixed_batch, tiny_config, train_on_fixed_batch

from cvd.baselines import LossContext, get_recipe
from cvd.baselines.fsra import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VIT_SMALL_V01,
    ClassificationTripletLoss,
    FSRAHead,
    convert_vit_small_v01_weights,
    cross_view_triplet,
    heat_ranked_regions,
)
from cvd.config import load_config
from cvd.errors import ConfigError
from cvd.models import Backbone

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FSRA_CONFIGS = sorted(p for p in CONFIGS.glob("*/fsra*.yaml") if p.parent.name != "_base")
TINY_FSRA = [*TINY_VIT, "model.backbone.kwargs={}", "model.head.name=fsra"]
IDENTITY = LossContext(gather=lambda tensor: tensor, generator=torch.Generator())


def test_heat_ranking_on_a_hand_worked_example():
    # Five tokens of two channels; heats (channel means): 1.5, 0.0, 4.0, -1.0, 2.5.
    tokens = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, 5.0], [-2.0, 0.0], [2.0, 3.0]]])
    features, region_of_token = heat_ranked_regions(tokens, regions=2)
    # Ranked: token 2 (4.0), 4 (2.5), 0 (1.5), 1 (0.0), 3 (-1.0); floor(5 / 2) = 2 tokens, then 3.
    assert region_of_token.tolist() == [[1, 1, 0, 1, 0]]
    assert torch.allclose(features[0, 0], torch.tensor([2.5, 4.0]))  # mean of tokens 2 and 4
    assert torch.allclose(features[0, 1], torch.tensor([-1.0 / 3.0, 2.0 / 3.0]))  # tokens 0, 1, 3


@pytest.mark.parametrize(("count", "regions"), [(16, 3), (16, 4), (7, 7), (10, 1)])
def test_regions_partition_the_tokens_by_decreasing_heat(count, regions):
    tokens = torch.randn(3, count, 5)
    features, region_of_token = heat_ranked_regions(tokens, regions)
    size = count // regions
    expected_sizes = [size] * (regions - 1) + [count - size * (regions - 1)]
    heat = tokens.mean(dim=-1)
    for b in range(3):
        assert torch.bincount(region_of_token[b], minlength=regions).tolist() == expected_sizes
        for r in range(regions):
            members = region_of_token[b] == r
            assert torch.allclose(features[b, r], tokens[b, members].mean(dim=0), atol=1e-6)
            if r + 1 < regions:  # every token of a region is at least as hot as the next region's
                assert heat[b, members].min() >= heat[b, region_of_token[b] == r + 1].max()


def test_head_has_a_classifier_per_region_and_one_global():
    head = FSRAHead(in_channels=8, num_classes=5, regions=3, bottleneck=16).train()
    feature_map = torch.randn(4, 8, 4, 4)
    output = head(feature_map)
    assert len(output["logits"]) == 4 and all(t.shape == (4, 5) for t in output["logits"])
    assert len(output["features"]) == 4 and all(t.shape == (4, 16) for t in output["features"])
    assert output["embedding"].shape == (4, head.embedding_dim) == (4, 64)
    assert output["region_map"].shape == (4, 4, 4)
    assert torch.bincount(output["region_map"].flatten(), minlength=3).tolist() == [4 * 5, 4 * 5, 4 * 6]

    head.eval()
    output = head(feature_map)
    assert "logits" not in output  # inference computes no classifier
    # The global feature is the classifier's bottleneck of the token mean.
    expected_global = head.global_block.bottleneck(feature_map.mean(dim=(2, 3)))
    assert torch.allclose(output["features"][-1], expected_global, atol=1e-6)
    # The embedding concatenates the normalised features with equal weight and has unit norm.
    chunks = output["embedding"].split(16, dim=1)
    for chunk, feature in zip(chunks, output["features"]):
        assert torch.allclose(chunk, feature / feature.norm(dim=1, keepdim=True) / 2.0, atol=1e-6)
    assert torch.allclose(output["embedding"].norm(dim=1), torch.ones(4), atol=1e-6)


def test_head_names_the_missing_number_of_classes():
    with pytest.raises(ConfigError, match="num_classes"):
        FSRAHead(in_channels=8)


def test_cross_view_triplet_on_a_hand_worked_example():
    # Queries (1,0), (0,1); satellites swapped: each anchor's positive is sqrt(2) away and its
    # negative coincides with it, so every anchor costs sqrt(2) - 0 + 0.3.
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    satellite = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1])
    loss = cross_view_triplet(query, satellite, labels, margin=0.3)
    assert loss.item() == pytest.approx(math.sqrt(2) + 0.3, abs=1e-5)
    # Matched views: positives at 0, negatives at sqrt(2) > margin: no loss. Scale does not matter.
    assert cross_view_triplet(3 * query, query, labels, margin=0.3).item() == pytest.approx(0.0, abs=1e-6)


def _reference_fsra_triplet(satellite, query, labels, margin):
    """FSRA's Tripletloss as written: concatenate [satellite; query], normalise, and for each anchor
    take the hardest positive and negative in the other half."""
    features = torch.cat([satellite, query])
    features = features / features.norm(dim=1, keepdim=True)
    all_labels = torch.cat([labels, labels])
    n = len(features)
    losses = []
    for i in range(n):
        others = range(n // 2, n) if i < n // 2 else range(n // 2)
        distances = [((features[i] - features[j]) ** 2).sum().sqrt() for j in others]
        positive = max(d for d, j in zip(distances, others) if all_labels[j] == all_labels[i])
        negative = min(d for d, j in zip(distances, others) if all_labels[j] != all_labels[i])
        losses.append(torch.relu(positive - negative + margin))
    return torch.stack(losses).mean()


def test_cross_view_triplet_matches_fsras_formula():
    generator = torch.Generator().manual_seed(3)
    query, satellite = torch.randn(6, 7, generator=generator), torch.randn(6, 7, generator=generator)
    labels = torch.arange(6)
    expected = _reference_fsra_triplet(satellite, query, labels, 0.3)
    assert cross_view_triplet(query, satellite, labels, 0.3).item() == pytest.approx(
        expected.item(), abs=1e-5
    )


def test_loss_averages_classifiers_per_view_and_adds_the_triplet():
    num_classes, batch = 5, 3
    labels = torch.arange(batch)
    # Uniform logits: every cross-entropy is ln(5) whatever the number of classifiers (averaged).
    uniform = [torch.zeros(batch, num_classes) for _ in range(4)]
    # Confident, correct logits for the satellite: CE = ln(1 + 4 e^-10) per classifier.
    confident = [torch.nn.functional.one_hot(labels, num_classes).float() * 10.0 for _ in range(4)]
    features = [torch.eye(batch, 4) for _ in range(4)]
    swapped = [torch.eye(batch, 4)[[1, 0, 2]] for _ in range(4)]
    outputs = {
        "query": {"head": {"logits": uniform, "features": features}},
        "satellite": {"head": {"logits": confident, "features": swapped}},
    }
    terms = ClassificationTripletLoss(margin=0.3, triplet_weight=2.0)(outputs, {"label": labels}, IDENTITY)
    assert terms["ce_query"].item() == pytest.approx(math.log(5), abs=1e-6)
    assert terms["ce_satellite"].item() == pytest.approx(math.log(1 + 4 * math.exp(-10)), abs=1e-6)
    # Items 0 and 1 are swapped across views (4 of 6 anchors cost sqrt(2) + 0.3), item 2 matches.
    assert terms["triplet"].item() == pytest.approx(4 * (math.sqrt(2) + 0.3) / 6, abs=1e-5)
    expected_total = terms["ce_query"] + terms["ce_satellite"] + 2.0 * terms["triplet"]
    assert terms["total"].item() == pytest.approx(expected_total.item(), abs=1e-6)


def test_unknown_loss_option_is_named():
    config = tiny_config("fsra", overrides=["model.head.name=fsra", "loss.triplet_margn=0.3"])
    with pytest.raises(ConfigError, match="triplet_margn"):
        get_recipe("fsra")(config).build_criterion(config)


@pytest.mark.parametrize("cvd", [False, True], ids=["baseline", "cvd"])
def test_training_lowers_the_loss_and_embeddings_are_normalised(cvd):
    config = tiny_config("fsra", cvd=cvd, backbone=[*TINY_FSRA, "model.backbone.kwargs={img_size: 32}"])
    batch = fixed_batch(4, (32, 32), (32, 32))  # a 2 x 2 token grid: regions of 1, 1 and 2 tokens
    history, objective = train_on_fixed_batch(config, batch, steps=4)
    assert history[-1]["total"] < history[0]["total"]
    assert {"ce_query", "ce_satellite", "triplet"} <= set(history[0])
    assert ("loc" in history[0]) is cvd  # classification baseline: InfoNCE on content is added
    model = objective.model.eval()
    head = model.head("query")
    width = objective.model.cvd.content_channels if cvd else 64  # the head runs on the content channels
    assert head.global_block.bottleneck[0].in_features == width
    with torch.no_grad():
        for view in ("drone", "satellite"):
            embedding = model.embed(batch["query"], view)
            assert embedding.shape == (4, 512 * 4)
            assert torch.allclose(embedding.norm(dim=1), torch.ones(4), atol=1e-5)


def test_vit_small_v01_weights_convert_exactly(tmp_path):
    """A model with the old attention scale (embed_dim**-0.5) on ImageNet-normalised inputs and
    today's timm ViT loaded from the converted file on timm-normalised inputs are one function."""
    kwargs = {
        "embed_dim": 64,
        "depth": 2,
        "num_heads": 4,
        "mlp_ratio": 3.0,
        "qkv_bias": False,
        "img_size": 32,
    }
    old = timm.create_model("vit_small_patch16_224", num_classes=10, **kwargs).eval()
    for block in old.blocks:
        block.attn.fused_attn = False
        block.attn.scale = 64**-0.5
    torch.save(old.state_dict(), tmp_path / "vit_small_p16_224.pth")
    target = convert_vit_small_v01_weights(
        tmp_path / "vit_small_p16_224.pth", tmp_path / "converted.safetensors", embed_dim=64, num_heads=4
    )
    backbone = Backbone("vit_small_patch16_224", pretrained=str(target), **kwargs).eval()

    images = torch.rand(2, 3, 32, 32)
    old_mean, old_std = (
        torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
        torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
    )
    mean = torch.tensor(backbone.data_config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(backbone.data_config["std"]).view(1, 3, 1, 1)
    assert not torch.allclose(mean, old_mean)  # the normalisation fold is exercised
    with torch.no_grad():
        expected = old.forward_intermediates(
            (images - old_mean) / old_std, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True
        )[-1]
        converted = backbone((images - mean) / std)
    assert torch.allclose(converted, expected, atol=1e-4)


def test_configs_follow_fsras_recipe():
    names = {p.relative_to(CONFIGS).as_posix() for p in FSRA_CONFIGS}
    expected = {"university1652/fsra.yaml", "university1652/fsra_cvd.yaml"} | {
        f"sues200/fsra{suffix}_{h}.yaml" for h in (150, 200, 250, 300) for suffix in ("", "_cvd")
    }
    assert expected <= names
    for path in FSRA_CONFIGS:
        config = load_config(path)
        assert config["model"]["baseline"] == "fsra" and config["model"]["head"]["name"] == "fsra"
        backbone = config["model"]["backbone"]
        assert backbone["name"] == "vit_small_patch16_224"
        assert backbone["kwargs"] == {**backbone["kwargs"], **VIT_SMALL_V01, "img_size": 256}
        assert config["model"]["head"]["kwargs"]["regions"] == 3
        assert config["optim"] == {**config["optim"], "name": "sgd", "lr": 0.01, "backbone_lr_scale": 0.3}
        assert config["data"]["batch_size"] == 8 and config["data"]["query_size"] == [256, 256]
        assert config["loss"]["triplet_margin"] == 0.3


@pytest.mark.parametrize("name", ["university1652/fsra.yaml", "sues200/fsra_cvd_150.yaml"])
def test_real_configs_build_with_a_tiny_backbone(name):
    config = load_config(CONFIGS / name, [*TINY_VIT, "model.backbone.kwargs={}", *_tiny_cvd()])
    config["model"]["num_classes"] = 7
    objective = build_objective(config)
    images = torch.randn(2, 3, 64, 64)
    objective.train()
    outputs = objective.model(query=images, satellite=images)
    assert len(outputs["query"]["head"]["logits"]) == 4
    assert outputs["query"]["head"]["logits"][0].shape == (2, 7)


def _tiny_cvd():
    return ["cvd.recon_size=8", "cvd.decoder_channels=8", "cvd.n_projections=16"]


def test_embedder_exports_to_onnx_with_the_same_output(tmp_path):
    """Ranking tokens (argsort, gather) must survive ONNX export: `cvd export` ships this path."""
    import onnxruntime

    from cvd.export.onnx import OPSET

    config = tiny_config("fsra", backbone=[*TINY_FSRA, "model.backbone.kwargs={img_size: 64}"])
    model = build_objective(config).model.eval()
    with torch.no_grad():  # an untrained final LayerNorm gives every token zero heat (ties)
        norm = model.backbone("query").model.norm
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1.0, 1.0)
    embedder = model.embedder("drone").eval()
    images = torch.randn(3, 3, 64, 64)
    path = tmp_path / "fsra.onnx"
    torch.onnx.export(
        embedder,
        (images[:1],),
        str(path),
        input_names=["images"],
        output_names=["embedding"],
        dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    exported = onnxruntime.InferenceSession(str(path)).run(None, {"images": images.numpy()})[0]
    with torch.no_grad():
        expected = embedder(images).numpy()
    assert abs(exported - expected).max() < 1e-4
