"""Every registered recipe, driven by the registry (as timm's tests run over its models).

For each recipe in ``cvd.baselines.RECIPES``, with CVD off and on: its first shipped config,
shrunk to ``cvd reproduce --synthetic``'s smoke size (``smoke_overrides``: tiny backbone of the
same family, small images),

1. builds through the recipe;
2. one training step on the path ``cvd fit`` takes (``TrainingObjective`` over the recipe's
   criterion, with a ``LossContext``) gives a finite loss whose gradient reaches every trainable
   parameter (not None, not all zero);
3. exports each view's embedder to ONNX through ``cvd export``'s own code (a release, then
   ``export_onnx`` with its parity check), and onnxruntime reproduces the in-memory PyTorch
   model's embeddings to a tolerance relative to their scale.

A new recipe is tested here without writing a test; one without a shipped config fails.

Parameters are moved away from their initial values first (noise of 10% of each tensor's RMS),
for a reason found by running it. A fresh model sits on symmetric values where a gradient or a
ranking vanishes by coincidence: timm's ResNets start the last BatchNorm of every residual branch
at gamma = 0 (``zero_init_last``), so the first step's gradient of everything before it in the
branch is exactly zero (not None); FSRA ranks tokens by their channel mean, which the ViT's final
LayerNorm makes mean(beta) for every token while its gamma is uniform (all 1 at init), so the
ranking is rounding noise and onnxruntime ranks differently. Trained weights (the recipes start
from pretrained ones) sit on neither; a parameter off the loss's graph gets no gradient whatever
the values.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from tests.tolerance import assert_close_scaled

from cvd.baselines import RECIPES, LossContext, get_recipe
from cvd.config import load_config, read_yaml
from cvd.data.transforms import build_eval_transform
from cvd.engine.objective import TrainingObjective
from cvd.reproduce.synthetic import smoke_overrides

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BATCH = 4
# onnxruntime vs PyTorch on L2-normalised embeddings: float32 kernels that sum in another order
# (and BatchNorm folded into the convolutions) leave ~1e-7 of the scale; see tests/tolerance.py.
REL = 1e-5


def baseline_of(path: Path) -> str | None:
    """model.baseline of a config file: its own, else its bases' (the last base wins).

    Read from the YAML alone: load_config validates (timm signatures), ~0.1 s a file.
    """
    data = read_yaml(path)
    baseline = (data.get("model") or {}).get("baseline")
    if baseline is not None:
        return str(baseline)
    bases = data.get("base") or []
    for base in reversed([bases] if isinstance(bases, str) else bases):
        baseline = baseline_of(path.parent / base)
        if baseline is not None:
            return baseline
    return None


@functools.cache
def shipped_configs() -> dict[str, Path]:
    """{recipe: its first shipped config}, in path order, configs/_base/ left out."""
    found: dict[str, Path] = {}
    for path in sorted(CONFIGS.rglob("*.yaml")):
        if "_base" not in path.relative_to(CONFIGS).parts:
            found.setdefault(str(baseline_of(path)), path)
    return found


def smoke_config(recipe: str, cvd: bool) -> dict[str, Any]:
    """The recipe's first shipped config at `cvd reproduce --synthetic`'s smoke size."""
    path = shipped_configs().get(recipe)
    if path is None:
        pytest.fail(
            f"recipe {recipe!r} is registered, but no config under {CONFIGS} (outside _base/) uses it"
        )
    overrides = [*smoke_overrides(SimpleNamespace(path=path)), f"cvd.enabled={str(cvd).lower()}"]
    config = load_config(str(path), overrides, strict=True)  # as cvd fit loads it
    config["model"]["num_classes"] = BATCH  # the engine sets it from the training set
    return config


def build(recipe: str, cvd: bool) -> tuple[dict[str, Any], Any, torch.nn.Module]:
    torch.manual_seed(0)
    config = smoke_config(recipe, cvd)
    built = get_recipe(recipe)(config)
    return config, built, built.build_model(config)


@torch.no_grad()
def away_from_initialisation(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Every parameter moved by Gaussian noise of 10% of its RMS (0.1 where it is all zero).

    A fresh model sits on symmetric values (gammas of exactly 0 or 1, zero biases) where a
    gradient or a ranking can vanish by coincidence; trained weights do not.
    """
    for parameter in module.parameters():
        rms = float(parameter.float().pow(2).mean().sqrt())
        noise = torch.randn(parameter.shape, generator=generator) * 0.1 * (rms if rms > 0 else 1.0)
        parameter.add_(noise.to(parameter.dtype))


def training_batch(config: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A batch as the training loader gives it: one pair of each of BATCH locations."""
    data = config["data"]
    return {
        "query": torch.randn(BATCH, 3, *data["query_size"], generator=generator),
        "satellite": torch.randn(BATCH, 3, *data["satellite_size"], generator=generator),
        "label": torch.arange(BATCH),
        "location": torch.arange(BATCH),
        "index": torch.arange(BATCH),
    }


CASES = pytest.mark.parametrize("cvd", [False, True], ids=["baseline", "cvd"])
RECIPE_NAMES = sorted(RECIPES)


@CASES
@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_a_training_step_reaches_every_trainable_parameter(recipe, cvd):
    config, built, model = build(recipe, cvd)
    objective = TrainingObjective(model, built.build_criterion(config), config["cvd"], built.contrastive)
    generator = torch.Generator().manual_seed(0)
    away_from_initialisation(objective, generator)
    objective.train()
    terms = objective(training_batch(config, generator), LossContext(gather=lambda t: t, generator=generator))
    assert torch.isfinite(terms["total"]), f"{recipe} (cvd={cvd}): loss terms {terms}"
    terms["total"].backward()
    trainable = [(name, p) for name, p in objective.named_parameters() if p.requires_grad]
    assert trainable
    untouched = [name for name, p in trainable if p.grad is None]
    zero = [name for name, p in trainable if p.grad is not None and not p.grad.any()]
    assert not untouched, f"{recipe} (cvd={cvd}): the loss does not reach {untouched}"
    assert not zero, f"{recipe} (cvd={cvd}): all-zero gradient for {zero}"
    assert all(torch.isfinite(p.grad).all() for _, p in trainable), (
        f"{recipe} (cvd={cvd}): non-finite gradient"
    )


@pytest.fixture(scope="module")
def check_images(tmp_path_factory):
    """`cvd export`'s default parity images (renders of the synthetic town), written once."""
    from cvd.export.onnx import sample_images

    folder = tmp_path_factory.mktemp("check_images")
    images = sample_images()
    paths = []
    for number, image in enumerate(images):
        paths.append(folder / f"{number}.png")
        image.save(paths[-1])
    return paths, images


@CASES
@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_every_view_exports_to_onnx_with_the_same_embeddings(recipe, cvd, tmp_path, check_images):
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    from cvd.export.onnx import OPSET, export_onnx
    from cvd.models import save_release

    config, _, model = build(recipe, cvd)
    generator = torch.Generator().manual_seed(0)
    away_from_initialisation(model, generator)
    with torch.no_grad():  # BatchNorm statistics away from their init: the export must carry them
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                module.running_mean.uniform_(-0.5, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    model.eval()
    save_release(model, config, tmp_path / "release")
    paths, images = check_images
    for view in ("satellite", "drone"):  # drone: the query branch (street is the same branch)
        out = tmp_path / f"{view}.onnx"
        export_onnx(tmp_path / "release", out, view=view, check_images=paths, opset=OPSET)
        transform = build_eval_transform(config, model.data_config, view)
        batch = torch.stack([transform(image) for image in images])  # a batch size other than the trace's
        with torch.no_grad():
            expected = model.embedder(view)(batch)
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        (actual,) = session.run(None, {session.get_inputs()[0].name: batch.numpy()})
        assert_close_scaled(
            actual, expected, rel=REL, msg=f"{recipe} (cvd={cvd}) {view}: onnxruntime vs PyTorch"
        )
