"""CVD module: channel split, the pooled content shortcut, decoders and their target sizes."""

from __future__ import annotations

import pytest
import torch

from cvd.models import CVD, SplitProjection, reconstruction_size


@pytest.mark.parametrize(
    ("alpha", "squeeze", "content", "viewpoint"),
    [(0.5, True, 32, 32), (1 / 3, True, 21, 43), (0.75, True, 48, 16), (0.5, False, 64, 64)],
)
def test_split_channels(alpha, squeeze, content, viewpoint):
    cvd = CVD(64, alpha=alpha, squeeze=squeeze)
    zc, zv = cvd.split(torch.randn(2, 64, 3, 5))
    assert zc.shape == (2, content, 3, 5) and zv.shape == (2, viewpoint, 3, 5)
    conv = cvd.content_projection().conv
    assert conv.kernel_size == (3, 3) and conv.padding == (1, 1)


def test_alpha_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        CVD(64, alpha=1.0)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("grid", [(1, 1), (2, 9), (4, 4), (5, 7)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_global_mean_equals_the_mean_of_the_full_convolution(kernel_size, grid, channels_last):
    projection = SplitProjection(16, 8, kernel_size)
    z = torch.randn(3, 16, *grid)
    if channels_last:
        projection = projection.to(memory_format=torch.channels_last)
        z = z.contiguous(memory_format=torch.channels_last)
    expected = torch.nn.functional.conv2d(z, projection.weight, projection.bias, padding=kernel_size // 2)
    torch.testing.assert_close(projection.global_mean(z), expected.mean(dim=(2, 3)), atol=1e-5, rtol=1e-5)


def test_reconstruction_size_keeps_the_aspect_ratio():
    assert reconstruction_size((256, 256), 32) == (32, 32)
    assert reconstruction_size((112, 616), 32) == (32, 176)  # CVUSA panorama, 1:5.5
    assert reconstruction_size((300, 200), 32) == (48, 32)


def test_each_branch_decodes_from_the_other_content_and_its_own_viewpoint():
    cvd = CVD(16, recon_size=32, decoder_channels=16)
    zc_satellite, _ = cvd.split(torch.randn(2, 16, 4, 4), "satellite")
    _, zv_query = cvd.split(torch.randn(2, 16, 2, 11), "query")  # panorama grid differs
    image = cvd.reconstruct(zc_satellite, zv_query, "query", size=(32, 176))
    assert image.shape == (2, 3, 32, 176)
    assert cvd.reconstruct(zc_satellite, zv_query, "query").shape == (2, 3, 32, 176)  # zv's aspect
    assert set(cvd.decoders) == {"query", "satellite"}
    assert cvd.decoders["query"] is not cvd.decoders["satellite"]


def test_modules_the_losses_would_not_train_are_left_out():
    content_only = CVD(16, viewpoint=False, decoders=False)
    assert content_only.viewpoint_convs is None and content_only.decoders is None
    assert content_only.split(torch.randn(1, 16, 2, 2))[1] is None
    with pytest.raises(RuntimeError, match="without decoders"):
        content_only.reconstruct(torch.randn(1, 8, 2, 2), torch.randn(1, 8, 2, 2), "query")


def test_rotation_init_starts_the_split_as_a_rotation_of_the_feature_map():
    torch.manual_seed(0)
    cvd = CVD(16, alpha=0.5, init="rotation", recon_size=8, decoder_channels=8)
    z = torch.randn(3, 16, 5, 4)
    zc, zv = cvd.split(z)
    # [zc; zv] = R z at every position for one orthogonal R: norms and inner products are kept
    stacked = torch.cat([zc, zv], dim=1).permute(0, 2, 3, 1).reshape(-1, 16)
    plain = z.permute(0, 2, 3, 1).reshape(-1, 16)
    torch.testing.assert_close(stacked @ stacked.T, plain @ plain.T, atol=1e-4, rtol=1e-4)
    # content and viewpoint start in orthogonal subspaces
    content_rows = cvd.content_projection().conv.weight[:, :, 1, 1]
    viewpoint_rows = cvd.viewpoint_convs["shared"].weight[:, :, 1, 1]
    torch.testing.assert_close(content_rows @ viewpoint_rows.T, torch.zeros(8, 8), atol=1e-5, rtol=0)


def test_unknown_split_init_is_refused():
    with pytest.raises(ValueError, match="init"):
        CVD(16, init="xavier")


def test_the_modules_keyword_defaults_are_the_paper_variant(monkeypatch):
    """`CVD(d)` used directly must be the module `cvd.variant=paper` builds: its keyword defaults
    are not a third place where the CVD defaults live, but the paper variant's values, and this
    keeps them from drifting (issue 14)."""
    import inspect

    from cvd.models import model as model_module

    built: dict = {}

    class Recorder:
        def __init__(self, in_channels, **kwargs):
            built.update(kwargs)

    monkeypatch.setattr(model_module, "CVD", Recorder)
    paper = model_module.resolve_cvd_config({"enabled": True, "variant": "paper"})
    model_module.build_cvd(16, paper, share_weights=True)
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(CVD.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    unused_by_the_conv_split = {"viewpoint_channels"}  # cvd_variants.yaml: not used by `split: conv`
    assert paper["split"] == "conv"
    assert set(built) <= set(defaults)
    differing = {
        name: (defaults[name], value)
        for name, value in built.items()
        if name not in unused_by_the_conv_split and defaults[name] != value
    }
    assert differing == {}, "CVD's keyword defaults differ from cvd.variant=paper (default, paper)"
