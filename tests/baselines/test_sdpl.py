"""SDPL: the dense partition against hand-counted parts, GeM pooling against numpy, the
shifting fusion, the head's classifiers, and training with and without CVD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.baselines.conftest import fixed_batch, tiny_config, train_on_fixed_batch

from cvd.baselines import get_recipe
from cvd.baselines.partition import dense_parts, masked_gem, square_rings
from cvd.baselines.sdpl import SDPLHead, dense_part_count
from cvd.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SDPL_TINY = [
    "model.head.name=sdpl",
    "model.head.kwargs={blocks: 2, shifts: [-1, 0, 1], bottleneck: 16, dropout: 0.0}",
]


def test_dense_parts_are_the_runs_of_consecutive_rings():
    parts = dense_parts(8, 8, 4)
    assert parts.shape == (10, 8, 8) and dense_part_count(4) == 10 and dense_part_count(3) == 6
    # ring areas of an 8x8 map: 4, 12, 20, 28; then pairs, triples and the whole map
    assert parts.flatten(1).sum(1).tolist() == [4, 12, 20, 28, 16, 32, 48, 36, 60, 64]
    rings = square_rings(8, 8, 4)
    assert torch.equal(parts[4], rings[0] | rings[1])  # the centre 4x4 square
    assert torch.equal(parts[8], rings[1] | rings[2] | rings[3])  # everything but the centre
    assert bool(parts[9].all())  # the global part
    square = torch.zeros(8, 8, dtype=torch.bool)
    square[2:6, 2:6] = True
    assert torch.equal(parts[4], square)


def test_shifted_dense_parts_move_with_the_centre():
    centred, shifted = dense_parts(16, 16, 4), dense_parts(16, 16, 4, (2, 2))
    assert torch.equal(shifted[:9], torch.roll(centred[:9], shifts=(2, 2), dims=(1, 2)))
    assert bool(shifted[9].all())


def test_gem_over_parts_against_numpy():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, generator=generator) * 2
    masks = torch.stack([dense_parts(8, 8, 2), dense_parts(8, 8, 2, (1, 1))])  # (S=2, P=3, 8, 8)
    p = torch.tensor([[1.0, 2.0, 3.0], [3.0, 3.0, 3.0], [4.0, 1.5, 2.5]])  # (P, C)
    pooled = masked_gem(x, masks, p)
    assert pooled.shape == (2, 3, 2, 3)
    values = np.clip(x.numpy(), 1e-6, None)
    for s in range(2):
        for part in range(3):
            cells = values[:, :, masks[s, part].numpy()]  # (B, C, n)
            exponent = p[part].numpy()[None, :, None]
            expected = np.mean(cells**exponent, axis=-1) ** (1 / exponent[..., 0])
            assert np.allclose(pooled[:, :, s, part].numpy(), expected, rtol=1e-5)


def test_sdpl_head_fuses_the_shifted_part_sets_with_the_predicted_weights():
    head = SDPLHead(6, num_classes=5, blocks=2, shifts=(-1, 0, 1), bottleneck=8, dropout=0.0).eval()
    assert len(head.classifiers.blocks) == 3 and head.embedding_dim == 24
    x = torch.randn(2, 6, 8, 8)
    out = head(x)
    weights = out["shift_weights"]
    assert weights.shape == (2, 3) and torch.allclose(weights.sum(1), torch.ones(2))
    # each classifier sees sum_s w_s * GeM over part k around centre s
    masks = torch.stack([dense_parts(8, 8, 2, (s, s)) for s in (-1, 0, 1)])
    sets = masked_gem(x, masks, head.gem_p.detach())
    fused = (sets * weights[:, None, :, None]).sum(2)
    for part, block in enumerate(head.classifiers.blocks):
        feature, logits = block(fused[:, :, part])
        assert torch.allclose(feature, out["parts"][:, part], atol=1e-5)
        assert torch.allclose(logits, out["logits"][part], atol=1e-5)
    assert len(out["logits"]) == 3 and out["logits"][0].shape == (2, 5)


@pytest.mark.parametrize("cvd", [False, True], ids=["baseline", "cvd"])
def test_sdpl_trains_on_a_fixed_batch_and_embeds_unit_vectors(cvd: bool):
    config = tiny_config("sdpl", cvd=cvd, overrides=SDPL_TINY)
    history, objective = train_on_fixed_batch(config, fixed_batch(), steps=4)
    assert history[-1]["total"] < history[0]["total"]
    if cvd:
        assert {"loc", "iic_query", "irc_query"} <= set(history[0])
    embeddings = objective.model.eval().embed(torch.randn(2, 3, 32, 32), "satellite")
    assert embeddings.shape == (2, 3 * 16)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("path", ["university1652/sdpl.yaml", "sues200/sdpl_cvd_200.yaml"])
def test_sdpl_configs_build_with_a_tiny_backbone(path: str):
    config = load_config(
        CONFIGS / path,
        [
            "model.backbone.name=test_resnet",
            "model.backbone.pretrained=false",
            "data.query_size=[64, 64]",
            "data.satellite_size=[64, 64]",
        ],
    )
    config["model"]["num_classes"] = 3
    recipe = get_recipe("sdpl")(config)
    model = recipe.build_model(config)
    recipe.build_criterion(config)
    head = model.head("query")
    assert head.parts == 10 and head.shifts == (-2, 0, 2) and len(head.classifiers.blocks) == 10
    embedding = model.eval().embed(torch.randn(1, 3, 64, 64), "drone")
    assert embedding.shape == (1, 10 * 512)
