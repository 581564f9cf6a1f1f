"""Game4Loc: the weighted InfoNCE against its definition and torch's label-smoothed cross-entropy,
training on a fixed batch with and without CVD, and its real configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tests.baselines.conftest import (
    TINY_CNN,
    TINY_CVD,
    build_objective,
    fixed_batch,
    tiny_config,
    train_on_fixed_batch,
)

from cvd.baselines import LossContext, get_recipe
from cvd.baselines.game4loc import WeightedInfoNCE, match_smoothing, weighted_info_nce
from cvd.config import load_config
from cvd.engine.trainer import step_generator

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
GAME4LOC_CONFIGS = sorted(p for p in CONFIGS.rglob("game4loc*.yaml") if "_base" not in p.parts)


def identity_context() -> LossContext:
    return LossContext(gather=lambda tensor: tensor, generator=step_generator(0, 0))


def test_full_match_smoothing_is_one_minus_sigmoid_k():
    # Game4Loc: eps = 1 - sigmoid(k w); a full match (w = 1) with k = 5: 1 - 1/(1 + e^-5).
    # match_smoothing works in float32 and 1 - sigmoid cancels: its rounding error is a few ulps
    # of sigmoid (~1), and CPUs' vectorised exp differ by an ulp, so the tolerance follows that
    # scale (abs 1e-6, ~17 ulps of 1), not the small result's (a wrong k, w or s moves it > 1e-3)
    expected = 1.0 - 1.0 / (1.0 + math.exp(-5.0))
    assert match_smoothing(torch.tensor([1.0]), k=5.0).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.0066929, abs=1e-6)
    # A weak match is trusted less: w = 0.2 -> 1 - sigmoid(1).
    assert match_smoothing(torch.tensor([0.2]), k=5.0).item() == pytest.approx(
        1 - 1 / (1 + math.exp(-1)), abs=1e-6
    )
    # Extra smoothing s scales the trusted part: 1 - (1 - s) sigmoid(k w).
    assert match_smoothing(torch.tensor([1.0]), k=5.0, label_smoothing=0.1).item() == pytest.approx(
        1 - 0.9 / (1 + math.exp(-5.0)), abs=1e-6
    )


def test_constant_smoothing_is_torch_label_smoothed_cross_entropy_both_ways():
    generator = torch.Generator().manual_seed(1)
    query, reference = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    scale, eps = 7.0, 0.1
    logits = scale * F.normalize(query, dim=1) @ F.normalize(reference, dim=1).T
    targets = torch.arange(5)
    expected = 0.5 * (
        F.cross_entropy(logits, targets, label_smoothing=eps)
        + F.cross_entropy(logits.T, targets, label_smoothing=eps)
    )
    loss = weighted_info_nce(query, reference, torch.full((5,), eps), scale)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_per_pair_smoothing_matches_the_definition_row_by_row():
    generator = torch.Generator().manual_seed(2)
    query, reference = torch.randn(4, 6, generator=generator), torch.randn(4, 6, generator=generator)
    eps = [0.0, 0.3, 0.05, 0.9]
    scale = 5.0
    cos = (F.normalize(query, dim=1) @ F.normalize(reference, dim=1).T).tolist()

    def row_loss(row: list[float], positive: int, e: float) -> float:
        # (1 - e) * CE(row, positive) + e * mean_j CE(row, j), CE(row, j) = logsumexp - row[j]
        logits = [scale * v for v in row]
        top = max(logits)
        lse = top + math.log(sum(math.exp(v - top) for v in logits))
        return (1 - e) * (lse - logits[positive]) + e * sum(lse - v for v in logits) / len(logits)

    forward = sum(row_loss(cos[i], i, eps[i]) for i in range(4)) / 4
    columns = [[cos[i][j] for i in range(4)] for j in range(4)]
    backward = sum(row_loss(columns[j], j, eps[j]) for j in range(4)) / 4
    loss = weighted_info_nce(query, reference, torch.tensor(eps), scale)
    assert loss.item() == pytest.approx(0.5 * (forward + backward), rel=1e-5)


def test_criterion_uses_match_weights_when_the_batch_has_them():
    torch.manual_seed(0)
    outputs = {
        "query": {"embedding": F.normalize(torch.randn(3, 4), dim=1)},
        "satellite": {"embedding": F.normalize(torch.randn(3, 4), dim=1)},
    }
    batch = {"label": torch.arange(3)}
    criterion = WeightedInfoNCE(weighted=True, k=5.0, logit_scale_init=10.0)
    scale = criterion.logit_scale.exp()
    q, s = outputs["query"]["embedding"], outputs["satellite"]["embedding"]
    full = weighted_info_nce(q, s, match_smoothing(torch.ones(3)), scale)
    assert criterion(outputs, batch, identity_context())["total"].item() == pytest.approx(full.item())
    weights = torch.tensor([1.0, 0.3, 0.15])
    partial = weighted_info_nce(q, s, match_smoothing(weights), scale)
    got = criterion(outputs, {**batch, "positive_weight": weights}, identity_context())["total"]
    assert got.item() == pytest.approx(partial.item())
    assert got.item() != pytest.approx(full.item())
    plain = WeightedInfoNCE(weighted=False, label_smoothing=0.1, logit_scale_init=10.0)
    expected = weighted_info_nce(q, s, torch.full((3,), 0.1), scale)
    assert plain(outputs, batch, identity_context())["total"].item() == pytest.approx(expected.item())


def test_repeated_locations_do_not_push_each_other_apart():
    # Two pairs of the same location: each row competes with its positive and true negatives only.
    query = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    reference = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    loss = weighted_info_nce(query, reference, torch.zeros(3), 1.0, labels=labels)
    # Every positive pair (i, j) of location 0 sees logits {1 (itself), 0 (the negative)}.
    pair_zero = math.log(1 + math.exp(-1.0))
    # The location-1 row sees {1 (positive), 0, 0}.
    pair_one = -math.log(math.e / (math.e + 2))
    expected = (4 * pair_zero + pair_one) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_recipe_is_contrastive_with_mutually_exclusive_batches():
    recipe = get_recipe("game4loc")
    assert recipe.contrastive is True
    assert recipe.default_sampler == "mutually_exclusive"


@pytest.mark.parametrize("cvd", [False, True], ids=["baseline", "cvd"])
def test_trains_on_a_fixed_batch_and_embeds_unit_vectors(cvd: bool):
    config = tiny_config("game4loc", cvd=cvd, overrides=["model.head.kwargs={norm: true}"])
    history, objective = train_on_fixed_batch(config, fixed_batch(), steps=4)
    assert history[-1]["total"] < history[0]["total"]
    # Contrastive: the weighted InfoNCE is L_loc itself, no second InfoNCE under CVD.
    assert "loc" not in history[0]
    assert ("iic_query" in history[0]) is cvd
    objective.eval()
    with torch.no_grad():
        embedding = objective.model.embed(torch.randn(3, 3, 32, 32), "drone")
    # test_efficientnet: 256 channels; the paper's CVD keeps half, the toolkit's complement split all
    channels = objective.model.cvd.content_channels if cvd else 256
    assert embedding.shape == (3, channels)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(3), atol=1e-5)


def test_weighted_loss_is_lambda3_times_l_loc_under_cvd():
    config = tiny_config("game4loc", cvd=True, overrides=["cvd.lambda=[0.0, 0.0, 2.5]"])
    objective = build_objective(config)
    terms = objective(fixed_batch(), identity_context())
    assert terms["total"].item() == pytest.approx(2.5 * terms["weighted_infonce"].item(), rel=1e-5)


def test_real_configs_cover_the_papers_rows():
    rows = {
        (load_config(p)["meta"].get("table"), load_config(p)["meta"].get("row")) for p in GAME4LOC_CONFIGS
    }
    for table in (1, 2, 7):
        assert (table, "Game4Loc") in rows and (table, "Game4Loc + CVD") in rows
    for row in (
        "Baseline Game4Loc",
        "w/o two constraints",
        "Exp.6 + iic loss",
        "Exp.7 + irc loss",
        "CVD (Game4Loc)",
    ):
        assert (4, row) in rows
    assert len(GAME4LOC_CONFIGS) == 2 + 8 + 5 + 8


def distinct_models(paths: list[Path]) -> list[Path]:
    """One config per distinct (model, cvd, loss) recipe: the others build the same objective."""
    seen: dict[str, Path] = {}
    for path in paths:
        config = load_config(path)
        key = repr([config["model"], config["cvd"], config["loss"]])
        seen.setdefault(key, path)
    return list(seen.values())


def test_real_configs_resolve_to_the_recipe():
    for path in GAME4LOC_CONFIGS:
        config = load_config(path)
        assert config["model"]["baseline"] == "game4loc", path
        assert config["data"]["sampler"] == "mutually_exclusive", path
        assert config["loss"] == {
            "weighted": True,
            "k": 5.0,
            "label_smoothing": 0.0,
            "logit_scale_init": pytest.approx(1 / 0.07),
        }, path


@pytest.mark.parametrize("path", distinct_models(GAME4LOC_CONFIGS), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_real_config_builds_and_runs_with_a_tiny_backbone(path: Path):
    config = load_config(path, [*TINY_CNN, *TINY_CVD])
    objective = build_objective(config)
    terms = objective(fixed_batch(batch_size=3), identity_context())
    assert torch.isfinite(terms["total"])
    if config["cvd"]["enabled"]:
        assert ("iic_query" in terms) is config["cvd"]["independence"]
        assert ("irc_query" in terms) is config["cvd"]["reconstruction"]
