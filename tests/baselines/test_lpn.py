"""LPN: the square-ring partition against hand-drawn maps, pooling against numpy, the head's
parts and classifiers, the shared-classifier model, and training with and without CVD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.baselines.conftest import fixed_batch, tiny_config, train_on_fixed_batch

from cvd.baselines import get_recipe
from cvd.baselines.lpn import LPNHead
from cvd.baselines.partition import (
    horizontal_bands,
    masked_pool,
    projected_part_means,
    resize_for_rings,
    ring_grid_size,
    square_rings,
)
from cvd.baselines.parts import set_last_stride
from cvd.config import load_config
from cvd.engine.optim import lr_factor
from cvd.errors import ConfigError
from cvd.models import Backbone

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_RESNET = ["model.backbone.name=test_resnet", "model.backbone.pretrained=false"]
LPN_TINY = ["model.head.name=lpn", "model.head.kwargs={blocks: 4, bottleneck: 16, dropout: 0.0}"]

# LPN's 4 rings of an 8x8 map (centre (4, 4), one cell per ring), drawn by hand.
RINGS_8 = np.array(
    [
        [3, 3, 3, 3, 3, 3, 3, 3],
        [3, 2, 2, 2, 2, 2, 2, 3],
        [3, 2, 1, 1, 1, 1, 2, 3],
        [3, 2, 1, 0, 0, 1, 2, 3],
        [3, 2, 1, 0, 0, 1, 2, 3],
        [3, 2, 1, 1, 1, 1, 2, 3],
        [3, 2, 2, 2, 2, 2, 2, 3],
        [3, 3, 3, 3, 3, 3, 3, 3],
    ]
)


def _labels(masks: torch.Tensor) -> np.ndarray:
    assert masks.dtype == torch.bool
    assert torch.equal(masks.sum(0), torch.ones(masks.shape[1:], dtype=torch.long)), "not a partition"
    return masks.int().argmax(0).numpy()


def test_square_rings_of_an_8x8_map_match_the_hand_drawn_rings():
    assert np.array_equal(_labels(square_rings(8, 8, 4)), RINGS_8)


def test_odd_and_rectangular_maps_follow_lpn_slicing():
    # 9x9, 4 rings: centre 4, one cell per ring, squares [3,5), [2,6), [1,7); the rest (row and
    # column 0, 7 and 8) is the outer ring, as LPN's slices leave it.
    labels = _labels(square_rings(9, 9, 4))
    assert labels[4, 4] == labels[3, 3] == 0 and labels[5, 5] == 1 and labels[1, 1] == 2
    assert labels[0, 0] == labels[7, 7] == labels[8, 8] == labels[0, 4] == 3
    # 6x10, 2 rings: centre (3, 5), 1 row and 2 columns per ring.
    expected = np.ones((6, 10), dtype=int)
    expected[2:4, 3:7] = 0
    assert np.array_equal(_labels(square_rings(6, 10, 2)), expected)


def test_rings_partition_every_map_exactly_even_when_shifted():
    for height, width, blocks in [(8, 8, 4), (16, 16, 4), (7, 9, 3), (24, 24, 2), (12, 20, 3)]:
        for shift in [(0, 0), (1, 1), (-2, -2)]:
            _labels(square_rings(height, width, blocks, shift))  # asserts disjoint and covering
    shifted = _labels(square_rings(8, 8, 4, (1, 1)))
    assert np.array_equal(np.argwhere(shifted == 0), [[4, 4], [4, 5], [5, 4], [5, 5]])


def test_small_maps_are_upsampled_like_lpn():
    assert ring_grid_size(16, 16, 4) == (16, 16)
    assert ring_grid_size(7, 7, 4) == (9, 9)  # 7 + 2 * (4 - 3)
    assert ring_grid_size(4, 6, 4) == (8, 8)  # 4 + 2 * (4 - 2), 6 + 2 * (4 - 3)
    assert ring_grid_size(2, 2, 2) == (4, 4)
    x = torch.randn(1, 3, 4, 4)
    expected = F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=True)
    assert torch.equal(resize_for_rings(x, 4), expected)
    with pytest.raises(ValueError, match="too small"):
        square_rings(7, 7, 4)


def test_bands_pool_like_adaptive_average_pooling_bottom_first():
    x = torch.randn(2, 3, 7, 5)
    pooled = masked_pool(x, horizontal_bands(7, 5, 3), "avg")
    reference = F.adaptive_avg_pool2d(x, (3, 1))[..., 0].flip(-1)  # LPN's rows, bottom band first
    assert torch.allclose(pooled, reference, atol=1e-6)


def test_masked_average_and_max_against_numpy():
    x = torch.randn(2, 5, 8, 8)
    average, maximum = (
        masked_pool(x, square_rings(8, 8, 4), "avg"),
        masked_pool(x, square_rings(8, 8, 4), "max"),
    )
    values = x.numpy()
    for ring in range(4):
        cells = values[:, :, ring == RINGS_8]
        assert np.allclose(average[:, :, ring].numpy(), cells.mean(-1), atol=1e-6)
        assert np.allclose(maximum[:, :, ring].numpy(), cells.max(-1))


def test_lpn_head_has_one_classifier_per_ring_and_concatenates_normalised_parts():
    head = LPNHead(6, num_classes=5, blocks=4, bottleneck=8, dropout=0.0).eval()
    x = torch.randn(3, 6, 8, 8)
    out = head(x, branch="satellite")
    assert len(out["logits"]) == 4 and all(logits.shape == (3, 5) for logits in out["logits"])
    assert out["parts"].shape == (3, 4, 8) and head.embedding_dim == 32
    chunks = out["embedding"].reshape(3, 4, 8)
    assert torch.allclose(chunks.norm(dim=-1), torch.full((3, 4), 0.5), atol=1e-6)  # 1/sqrt(4) each
    assert torch.allclose(chunks, F.normalize(out["parts"], dim=-1) / 2, atol=1e-6)
    # classifier i sees ring i's mean: its bottleneck feature is that block applied to the ring mean
    ring_means = torch.stack([x[:, :, torch.from_numpy(ring == RINGS_8)].mean(-1) for ring in range(4)], -1)
    for ring, block in enumerate(head.classifiers.blocks):
        feature, logits = block(ring_means[:, :, ring])
        assert torch.allclose(feature, out["parts"][:, ring], atol=1e-5)
        assert torch.allclose(logits, out["logits"][ring], atol=1e-5)


def test_lpn_head_partitions_each_branch_its_own_way():
    head = LPNHead(4, num_classes=3, blocks=2, bottleneck=4, query_partition="rows")
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(
        head.pool_parts(x, "query"), F.adaptive_avg_pool2d(x, (2, 1))[..., 0].flip(-1), atol=1e-6
    )
    assert torch.allclose(head.pool_parts(x, "satellite"), masked_pool(x, square_rings(8, 8, 2)), atol=1e-6)
    with pytest.raises(ConfigError, match="num_classes"):
        LPNHead(4, num_classes=None)
    with pytest.raises(ConfigError, match="query_partition"):
        LPNHead(4, num_classes=3, query_partition="columns")


def test_last_stride_one_doubles_a_resnet_map_without_new_weights():
    backbone = Backbone("test_resnet").eval()
    x = torch.randn(1, 3, 64, 64)
    before, state = backbone(x).shape, {k: v.clone() for k, v in backbone.state_dict().items()}
    set_last_stride(backbone, 1)
    after = backbone(x).shape
    assert after[-2:] == (2 * before[-2], 2 * before[-1]) and after[1] == before[1]
    assert all(torch.equal(state[k], v) for k, v in backbone.state_dict().items())
    with pytest.raises(ConfigError, match="last_stride"):
        set_last_stride(Backbone("test_efficientnet"), 1)


def test_part_means_of_the_content_conv_skip_the_full_map_exactly():
    from cvd.models.cvd import SplitProjection

    for kernel in (1, 3):
        conv = SplitProjection(6, 4, kernel)
        z = torch.randn(2, 6, 9, 7)
        for masks in (square_rings(9, 7, 3), horizontal_bands(9, 7, 4), square_rings(9, 7, 3, (1, -1))):
            expected = masked_pool(conv(z), masks, "avg")  # convolve the whole map, then pool
            assert torch.allclose(projected_part_means(z, conv, masks), expected, atol=1e-5)


@pytest.mark.parametrize("partition", ["rings", "rows"])
def test_the_cvd_embedder_equals_the_training_path(partition: str):
    config = tiny_config(
        "lpn", cvd=True, overrides=[*LPN_TINY, f"model.head.kwargs.query_partition={partition}"]
    )
    model = get_recipe("lpn")(config).build_model(config).eval()
    images = torch.randn(2, 3, 256, 256)  # an 8x8 map: no resizing, the pooled shortcut applies
    with torch.no_grad():
        full = model.encode(images, "query")["embedding"]  # content conv over the whole map
        assert torch.allclose(model.embed(images, "street"), full, atol=1e-5)


@pytest.mark.parametrize("cvd", [False, True], ids=["baseline", "cvd"])
def test_lpn_trains_on_a_fixed_batch_and_embeds_unit_vectors(cvd: bool):
    config = tiny_config("lpn", cvd=cvd, overrides=LPN_TINY)
    history, objective = train_on_fixed_batch(config, fixed_batch(), steps=4)
    assert history[-1]["total"] < history[0]["total"]
    assert set(history[0]) >= {"ce_query", "ce_satellite"}
    if cvd:  # classification baseline: InfoNCE on the content embeddings is added as L_loc
        assert {"loc", "iic_query", "irc_satellite"} <= set(history[0])
    embeddings = objective.model.eval().embed(torch.randn(2, 3, 32, 32), "drone")
    assert embeddings.shape == (2, 4 * 16)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(2), atol=1e-5)


def test_separate_encoders_share_one_head_and_save_without_duplicate_tensors(tmp_path):
    from safetensors.torch import load_file

    from cvd.models import save_release

    config = tiny_config(
        "lpn",
        cvd=True,
        overrides=[*LPN_TINY, "model.share_weights=false", "model.head.kwargs.query_partition=rows"],
    )
    recipe = get_recipe("lpn")(config)
    model = recipe.build_model(config).eval()
    assert model.backbone("query") is not model.backbone("satellite")
    assert model.head("query") is model.head("satellite")
    assert model.head("query").partition == {"query": "rows", "satellite": "rings"}
    save_release(model, config, tmp_path)  # safetensors refuses tensors that share memory
    # rebuilding through the recipe and loading strictly gives the same embeddings
    rebuilt = recipe.build_model(config).eval()
    rebuilt.load_state_dict(load_file(str(tmp_path / "model.safetensors")), strict=True)
    images = torch.randn(2, 3, 32, 32)
    for view in ("street", "satellite"):
        assert torch.allclose(model.embed(images, view), rebuilt.embed(images, view), atol=1e-6)


def test_lpn_university1652_schedule_decays_after_lpn_epoch_80():
    # LPN: 87 batches per epoch (701 satellites, batch 8), x0.1 from epoch 80 (step 6,960), stop at
    # 120 epochs (step 10,440). Our epoch: 37,854 drone images / 8 = 4,731 batches.
    schedule = load_config(CONFIGS / "university1652" / "lpn.yaml")["schedule"]
    assert schedule["max_steps"] == 120 * 87
    assert lr_factor(6959, schedule, 4731, 10440) == 1.0
    assert lr_factor(6960, schedule, 4731, 10440) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "path,partitions,shared",
    [
        ("university1652/lpn_cvd_none.yaml", ("rings", "rings"), True),
        ("sues200/lpn_cvd_150.yaml", ("rings", "rings"), False),
        ("cvusa/lpn.yaml", ("rows", "rings"), False),
    ],
)
def test_lpn_configs_build_with_a_tiny_backbone(path: str, partitions: tuple[str, str], shared: bool):
    config = load_config(
        CONFIGS / path, [*TINY_RESNET, "data.query_size=[64, 64]", "data.satellite_size=[64, 64]"]
    )
    config["model"]["num_classes"] = 3
    recipe = get_recipe(config["model"]["baseline"])(config)
    model, criterion = recipe.build_model(config), recipe.build_criterion(config)
    head = model.head("query")
    assert (head.partition["query"], head.partition["satellite"]) == partitions
    assert model.share_weights is shared and criterion is not None
    # layer4 at stride 1: a 64 px image gives a 4x4 map instead of 2x2
    assert model.backbone("satellite")(torch.zeros(1, 3, 64, 64)).shape[-1] == 4
    embedding = model.eval().embed(torch.randn(1, 3, 64, 64), "satellite")
    assert embedding.shape == (1, head.embedding_dim)


def test_the_part_embedder_exports_to_onnx_with_the_same_embeddings(tmp_path):
    import warnings

    import onnxruntime

    config = tiny_config("lpn", cvd=True, overrides=[*LPN_TINY, "model.head.kwargs.query_partition=rows"])
    model = get_recipe("lpn")(config).build_model(config).eval()
    embedder = model.embedder("street").eval()  # backbone, content conv, head on the row bands
    images = torch.randn(2, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            embedder,
            (images[:1],),
            str(tmp_path / "lpn.onnx"),
            input_names=["images"],
            output_names=["embedding"],
            dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    session = onnxruntime.InferenceSession(str(tmp_path / "lpn.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"images": images.numpy()})[0]
    assert np.allclose(exported, model.embed(images, "street").detach().numpy(), atol=1e-5)
