"""The toolkit's CVD variant: the complement split, view centring, the pooled feature decoder,
and what retrieval runs of them."""

from __future__ import annotations

import pytest
import torch

from cvd.factory import build_model
from cvd.models.cvd import CVD, ComplementSplit, PooledFeatureDecoder


def test_complement_split_is_an_orthogonal_decomposition():
    # zc + Q zv = z exactly, and zc has no component in the viewpoint subspace.
    split = ComplementSplit(32, 5)
    z = torch.randn(4, 32, 3, 2, dtype=torch.float64)
    split = split.double()
    basis = split.orthonormal_basis()
    assert torch.allclose(basis.T @ basis, torch.eye(5, dtype=torch.float64), atol=1e-12)
    content, viewpoint = split(z), split.viewpoint(z)
    rebuilt = content + torch.einsum("bkhw,ck->bchw", viewpoint, basis)
    assert torch.allclose(rebuilt, z, atol=1e-12)
    assert torch.einsum("bchw,ck->bkhw", content, basis).abs().max() < 1e-12


def test_complement_split_refuses_a_viewpoint_as_wide_as_the_map():
    with pytest.raises(ValueError, match="viewpoint_channels"):
        ComplementSplit(16, 16)


def test_viewpoint_is_at_most_a_quarter_of_the_map():
    assert CVD(64, split="complement", viewpoint_channels=64).viewpoint_channels == 16
    assert CVD(1280, split="complement", viewpoint_channels=64).viewpoint_channels == 64


def test_centring_uses_the_batch_mean_in_training_and_the_running_mean_after():
    cvd = CVD(8, split="complement", viewpoint_channels=2, centre="batch", decoders=False)
    first = torch.randn(6, 8, 2, 2) + 3.0
    cvd.train()
    content, viewpoint = cvd.split(first, "query")
    rebuilt = content + torch.einsum(
        "bkhw,ck->bchw", viewpoint, cvd.content_convs["shared"].orthonormal_basis()
    )
    # training: the batch's own mean over images and positions is removed
    assert torch.allclose(rebuilt, first - first.mean(dim=(0, 2, 3))[None, :, None, None], atol=1e-5)
    # the first update takes the batch mean as it is, later ones move by the momentum (0.1)
    assert torch.allclose(cvd.view_means[0], first.mean(dim=(0, 2, 3)), atol=1e-6)
    second = torch.randn(6, 8, 2, 2)
    cvd.split(second, "query")
    expected = 0.9 * first.mean(dim=(0, 2, 3)) + 0.1 * second.mean(dim=(0, 2, 3))
    assert torch.allclose(cvd.view_means[0], expected, atol=1e-6)
    assert torch.equal(cvd.view_means[1], torch.zeros(8))  # the satellite branch has its own
    cvd.eval()
    content_eval, _ = cvd.split(second, "query")
    direct = cvd.content_convs["shared"](second - expected[None, :, None, None])
    assert torch.allclose(content_eval, direct, atol=1e-5)


def test_running_centring_removes_the_running_mean_in_training_without_gradient():
    cvd = CVD(8, split="complement", viewpoint_channels=2, centre="running", decoders=False).train()
    first, second = torch.randn(6, 8, 2, 2) + 3.0, torch.randn(6, 8, 2, 2, requires_grad=True)
    cvd.split(first, "query")
    expected = 0.9 * first.mean(dim=(0, 2, 3)) + 0.1 * second.detach().mean(dim=(0, 2, 3))
    content = cvd.content_convs["shared"]
    zc, _ = cvd.split(second, "query")
    # the updated running mean is removed, as a constant: d zc / d z is the projection alone
    torch.testing.assert_close(zc, content(second - expected[None, :, None, None]), atol=1e-5, rtol=0)
    (zc * torch.arange(8.0)[None, :, None, None]).sum().backward()
    basis = content.orthonormal_basis().detach()
    projected = torch.arange(8.0) - basis @ (basis.T @ torch.arange(8.0))
    torch.testing.assert_close(
        second.grad, projected[None, :, None, None].expand_as(second), atol=1e-5, rtol=0
    )
    cvd.eval()
    torch.testing.assert_close(cvd.split(second, "query")[0], zc, atol=1e-5, rtol=0)


def test_inference_centring_trains_retrieval_on_the_raw_map_and_centres_the_rest(make_config):
    # centre: inference: the embedding in training is the baseline's (no mean removed); the
    # constraints' factors and the embedding at inference have the running view mean removed
    model = build_model(_toolkit_config(make_config, centre="inference"))
    images = torch.randn(4, 3, 64, 64) + 1.0
    model.train()
    outputs = model(query=images, satellite=images.flip(-1))
    features = outputs["query"]["features"]
    mean = model.cvd.view_means[0]
    torch.testing.assert_close(mean, features.detach().mean(dim=(0, 2, 3)), atol=1e-5, rtol=0)
    split = model.cvd.content_convs["shared"]
    retrieval = model.head("query")(split(features))["embedding"]
    torch.testing.assert_close(
        outputs["query"]["embedding"], torch.nn.functional.normalize(retrieval, dim=-1), atol=1e-5, rtol=0
    )
    centred = features.detach() - mean[None, :, None, None]
    torch.testing.assert_close(outputs["query"]["zc"], split(centred), atol=1e-5, rtol=0)
    model.eval()
    with torch.no_grad():
        expected = model.head("query")(split(model.backbone("query")(images) - mean[None, :, None, None]))
        torch.testing.assert_close(
            model.embed(images, "drone"),
            torch.nn.functional.normalize(expected["embedding"], dim=-1),
            atol=1e-5,
            rtol=0,
        )


def test_centre_modes_are_checked():
    assert CVD(8, split="complement", viewpoint_channels=2, centre=True).centre_mode == "batch"
    assert CVD(8, split="complement", viewpoint_channels=2, centre=False).centre_mode == "none"
    assert CVD(8, split="complement", viewpoint_channels=2, centre="inference").centre_mode == "inference"
    with pytest.raises(ValueError, match="centre"):
        CVD(8, split="complement", viewpoint_channels=2, centre="median")


def test_pooled_decoder_can_be_affine():
    decoder = PooledFeatureDecoder(6, 2, 4, width=0)
    assert isinstance(decoder.net, torch.nn.Linear) and decoder.net.in_features == 8
    out = decoder(torch.randn(3, 6, 2, 2), torch.randn(3, 2, 2, 2))
    assert out.shape == (3, 4)


def _toolkit_config(make_config, **keys):
    return make_config(variant="toolkit", recon_target="pooled_feature", decoder_channels=0, **keys)


def test_embed_equals_the_content_of_the_split_and_holds_no_decoder(make_config):
    model = build_model(_toolkit_config(make_config))
    images = torch.randn(5, 3, 64, 64)
    model.train()
    model(query=images, satellite=images.flip(-1))  # sets the running view means
    model.eval()
    with torch.no_grad():
        features = model.backbone("query")(images)
        content, _ = model.cvd.split(features, "query")
        expected = torch.nn.functional.normalize(model.head("query")(content)["embedding"], dim=-1)
        assert torch.allclose(model.embed(images, "drone"), expected, atol=1e-5)
    embedder = model.embedder("drone")
    names = {name for name, _ in embedder.named_parameters()}
    assert not any("decoder" in name for name in names)


def test_reconstruction_targets_are_the_detached_centred_pooled_features(make_config):
    model = build_model(_toolkit_config(make_config))
    images = torch.randn(3, 3, 64, 64)
    outputs = model(query=images, satellite=images)
    target = outputs["reconstruction_target"]["query"]
    assert not target.requires_grad
    pooled = outputs["query"]["features"].mean(dim=(2, 3))
    # training: the view's batch mean removed, so predicting the mean is predicting zero
    assert torch.allclose(target, pooled - pooled.mean(dim=0), atol=1e-5)
    assert outputs["reconstruction"]["query"].shape == target.shape


def test_zero_initialised_decoder_starts_by_predicting_the_mean(make_config):
    model = build_model(_toolkit_config(make_config, decoder_init="zero"))
    images = torch.randn(3, 3, 64, 64)
    outputs = model(query=images, satellite=images)
    assert torch.equal(
        outputs["reconstruction"]["query"], torch.zeros_like(outputs["reconstruction_target"]["query"])
    )


def test_a_cvd_model_leaves_the_random_stream_where_its_baseline_twin_does(make_config):
    # same seed, CVD on or off: the heads start alike and training draws the same numbers
    states = []
    for enabled in (False, True):
        config = _toolkit_config(make_config)
        config["cvd"]["enabled"] = enabled
        torch.manual_seed(7)
        build_model(config)
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], states[1])
