"""RetrievalModel: outputs of a training pass, content-only retrieval, gradients, a real step."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from cvd.baselines.base import LossContext
from cvd.engine.objective import TrainingObjective
from cvd.errors import ConfigError
from cvd.factory import build_model
from cvd.losses import info_nce
from cvd.models import RetrievalModel, branch_of


def _images(batch: int = 4, height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_views_map_to_branches():
    assert [branch_of(view) for view in ("satellite", "drone", "street", "query")] == [
        "satellite",
        "query",
        "query",
        "query",
    ]


def test_training_outputs(make_config):
    model = build_model(make_config(recon_size=16))
    assert isinstance(model, RetrievalModel)
    query, satellite = _images(height=64, width=128), _images(seed=1)  # different grids per view
    outputs = model(query=query, satellite=satellite)
    content, viewpoint = model.cvd.content_channels, model.cvd.viewpoint_channels
    assert content == viewpoint == 128  # backbone d = 256, alpha = 1/2
    assert outputs["query"]["zc"].shape == (4, content, 2, 4)
    assert outputs["satellite"]["zv"].shape == (4, viewpoint, 2, 2)
    for branch in ("query", "satellite"):
        embedding = outputs[branch]["embedding"]
        torch.testing.assert_close(embedding.norm(dim=1), torch.ones(4))
        torch.testing.assert_close(embedding, F.normalize(outputs[branch]["head"]["embedding"], dim=1))
    assert outputs["reconstruction"]["query"].shape == (4, 3, 16, 32)
    assert outputs["reconstruction"]["satellite"].shape == (4, 3, 16, 16)
    expected_target = F.interpolate(
        query, size=(16, 32), mode="bilinear", antialias=True, align_corners=False
    )
    torch.testing.assert_close(outputs["reconstruction_target"]["query"], expected_target)


def test_without_cvd_the_head_runs_on_the_feature_map(make_config):
    model = build_model(make_config(cvd=False))
    outputs = model(query=_images(), satellite=_images(seed=1))
    assert model.cvd is None and outputs["query"]["zv"] is None and "reconstruction" not in outputs
    assert outputs["query"]["zc"].shape[1] == model.backbone().out_channels == model.embedding_dim


def test_embed_is_normalised_content_only_and_equals_the_full_content_path(make_config):
    model = build_model(make_config()).eval()
    images = _images()
    with torch.no_grad():
        embedding = model.embed(images, "drone")
        content_map = model.cvd.content(model.backbone("query")(images), "query")
        expected = F.normalize(content_map.mean(dim=(2, 3)), dim=1)  # gap head, no projection
    torch.testing.assert_close(embedding, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(4))


def test_embedder_holds_no_decoder_nor_viewpoint_conv(make_config):
    model = build_model(make_config())
    embedder = model.embedder("satellite")
    inside = {id(parameter) for parameter in embedder.parameters()}
    training_only = list(model.cvd.viewpoint_convs.parameters()) + list(model.cvd.decoders.parameters())
    assert training_only and not any(id(parameter) in inside for parameter in training_only)
    expected = list(model.backbone("satellite").parameters()) + list(
        model.cvd.content_projection().parameters()
    )
    assert all(id(parameter) in inside for parameter in expected)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's notice
def test_embedder_exports_to_onnx_with_a_dynamic_batch(make_config):
    import onnxruntime

    model = build_model(make_config()).eval()
    embedder = model.embedder("drone")
    buffer = io.BytesIO()
    torch.onnx.export(
        embedder,
        (_images(2),),
        buffer,
        dynamo=False,
        input_names=["images"],
        output_names=["embedding"],
        dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}},
    )
    assert not model.training and not model.backbone().training  # export left the model's mode alone
    session = onnxruntime.InferenceSession(buffer.getvalue())
    images = _images(5, seed=3)
    (exported,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(
            torch.from_numpy(exported), model.embed(images, "drone"), atol=1e-5, rtol=1e-4
        )


class _SymmetricInfoNCE(torch.nn.Module):
    def forward(self, outputs, batch, context) -> dict:
        loc = info_nce(outputs["query"]["embedding"], outputs["satellite"]["embedding"], symmetric=True)
        return {"total": loc}


def _objective(model) -> TrainingObjective:
    """`cvd fit`'s objective around the model, with a plain symmetric InfoNCE as the baseline loss."""
    return TrainingObjective(model, _SymmetricInfoNCE(), model.cvd_config, contrastive=True)


def _context() -> LossContext:
    # the same permutation and projections at every call, so loss values are comparable
    return LossContext(gather=lambda tensor: tensor, generator=torch.Generator().manual_seed(0))


def _grads_present(parameters) -> list[bool]:
    return [parameter.grad is not None and parameter.grad.abs().sum().item() > 0 for parameter in parameters]


def test_retrieval_gradients_skip_the_viewpoint_conv_and_cvd_terms_reach_it(make_config):
    config = make_config()
    config["model"]["head"]["kwargs"] = {"dim": 16}
    model = build_model(config)
    outputs = model(query=_images(), satellite=_images(seed=1))
    info_nce(outputs["query"]["embedding"], outputs["satellite"]["embedding"], symmetric=True).backward()
    assert all(_grads_present(model.backbones.parameters()))
    assert all(_grads_present(model.cvd.content_convs.parameters()))
    assert all(_grads_present(model.heads.parameters()))
    assert all(parameter.grad is None for parameter in model.cvd.viewpoint_convs.parameters())
    assert all(parameter.grad is None for parameter in model.cvd.decoders.parameters())

    model.zero_grad(set_to_none=True)
    outputs = model(query=_images(), satellite=_images(seed=1))
    terms = _objective(model).cvd_terms(outputs, _context())
    (terms["iic_query"] + terms["irc_query"] + terms["irc_satellite"]).backward()
    assert all(_grads_present(model.cvd.viewpoint_convs.parameters()))
    assert all(_grads_present(model.cvd.decoders.parameters()))


def test_parameter_parts_cover_every_parameter_once(make_config):
    model = build_model(make_config())
    parts = model.parameter_parts()
    listed = [id(parameter) for group in parts.values() for parameter in group]
    assert len(listed) == len(set(listed)) == len(list(model.parameters()))
    assert {id(p) for p in parts["cvd"]} == {id(p) for p in model.cvd.parameters()}


def test_ablations_build_only_what_their_losses_train(make_config):
    neither = build_model(make_config(independence=False, reconstruction=False))
    assert neither.cvd.viewpoint_convs is None and neither.cvd.decoders is None
    iic_only = build_model(make_config(reconstruction=False))
    assert iic_only.cvd.viewpoint_convs is not None and iic_only.cvd.decoders is None
    outputs = iic_only(query=_images(), satellite=_images(seed=1))
    assert "reconstruction" not in outputs and outputs["query"]["zv"] is not None


def test_separate_encoders_per_branch(make_config):
    model = build_model(make_config(share_weights=False))
    assert set(model.backbones) == {"query", "satellite"} and set(model.cvd.content_convs) == {
        "query",
        "satellite",
    }
    assert model.backbone("query") is not model.backbone("satellite")
    assert model.embedder("street").backbone is model.backbone("query")
    outputs = model(query=_images(), satellite=_images(seed=1))
    assert outputs["satellite"]["embedding"].shape == (4, model.cvd.content_channels)


def test_vit_backbone_with_cvd(make_config):
    model = build_model(make_config(backbone="test_vit", recon_size=16))
    outputs = model(query=_images(2, 64, 96), satellite=_images(2, seed=1))
    assert outputs["query"]["zc"].shape == (2, 32, 4, 6)
    assert outputs["reconstruction"]["query"].shape == (2, 3, 16, 24)


def test_a_few_training_steps_reduce_the_total_loss_on_a_fixed_batch(make_config):
    torch.manual_seed(0)
    model = build_model(make_config(recon_size=16, decoder_channels=16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    query, satellite = _images(8, seed=0), _images(8, seed=1)

    objective = _objective(model)
    batch = {"query": query, "satellite": satellite, "label": torch.arange(8)}

    def total_loss() -> torch.Tensor:
        return objective(batch, _context())["total"]

    losses = []
    for _ in range(8):
        loss = total_loss()
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"enabled": True, "alpha": 1.5}, r"cvd\.alpha"),
        ({"enabled": True, "lambda": [1, 2]}, r"cvd\.lambda"),
        ({"enabled": True, "recon_size": 0}, r"cvd\.recon_size"),
    ],
)
def test_bad_cvd_values_name_the_field(make_config, section, field):
    config = make_config()
    config["cvd"] = section
    with pytest.raises(ConfigError, match=field):
        build_model(config)


def test_missing_model_fields_are_named():
    with pytest.raises(ConfigError, match=r"model\.backbone"):
        build_model({"model": {}})
    with pytest.raises(ConfigError, match=r"model\.backbone\.name"):
        build_model({"model": {"backbone": {"pretrained": False}}})
