import numpy as np
import pytest
import torch
from PIL import Image

from cvd.data import PairedTransform, image_transform, polar_transform, rotate_pair
from cvd.data.transforms import transform_from_data_config


def _smooth_satellite(size: int = 40, seed: int = 0) -> np.ndarray:
    """A smooth random float image (bilinear sampling of it is well conditioned)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    channels = [np.sin(2 * np.pi * (a * xx + b * yy) + c) for a, b, c in rng.uniform(-2, 2, size=(3, 3))]
    return np.stack(channels, axis=-1)


def test_polar_default_size_is_safa_122_by_671():
    out = polar_transform(Image.new("RGB", (50, 50), (10, 20, 30)))
    assert out.size == (671, 122)  # PIL size is (width, height)


def test_polar_puts_north_at_the_centre_column_and_the_centre_at_the_bottom():
    size, height, width = 41, 20, 64
    sat = np.zeros((size, size), dtype=np.float64)
    sat[0:3, 18:23] = 1.0  # a marker at the north edge (top centre)
    sat[18:23, 38:41] = 2.0  # a marker at the east edge (right centre)
    sat[19:22, 19:22] = 3.0  # the centre
    polar = polar_transform(sat, height, width)
    # top row = outer ring; azimuth from south (column 0) clockwise: west W/4, north W/2, east 3W/4
    assert polar[0, width // 2] == pytest.approx(1.0)
    assert polar[0, 3 * width // 4] == pytest.approx(2.0)
    assert polar[0, 0] == 0.0 and polar[0, width // 4] == 0.0
    assert np.allclose(polar[-1], 3.0)  # bottom row = the camera position


def test_satellite_rotation_matches_panorama_roll_through_the_polar_transform():
    """polar(rot90(sat, k)) == roll(polar(sat), -k*W/4): the derivation in cvd.data.transforms."""
    sat = _smooth_satellite()
    height, width = 12, 64
    polar = polar_transform(sat, height, width)
    for k in (1, 2, 3):
        rotated = polar_transform(np.rot90(sat, k), height, width)
        assert np.allclose(rotated, np.roll(polar, -k * width // 4, axis=1), atol=1e-9)


def test_rotate_pair_turns_satellite_and_rolls_panorama_consistently():
    sat = _smooth_satellite()
    height, width = 12, 64
    panorama = torch.from_numpy(polar_transform(sat, height, width)).permute(2, 0, 1)  # a "panorama" of sat
    satellite = torch.from_numpy(sat.copy()).permute(2, 0, 1)
    for k in (1, 2, 3):
        query, turned = rotate_pair(panorama, satellite, k)
        expected = polar_transform(turned.permute(1, 2, 0).numpy(), height, width)
        assert np.allclose(query.permute(1, 2, 0).numpy(), expected, atol=1e-9)
    query, turned = rotate_pair(panorama, satellite, 2, roll_query=False)
    assert torch.equal(query, panorama) and torch.equal(turned, torch.flip(satellite, dims=(-2, -1)))


def _identity(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def test_paired_flip_flips_both_views_together():
    rng = np.random.default_rng(1)
    query = Image.fromarray(rng.integers(0, 255, (6, 12, 3), dtype=np.uint8))
    satellite = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    q, s = PairedTransform(_identity, _identity, flip_prob=1.0)(query, satellite)
    assert torch.equal(q, _identity(query).flip(-1)) and torch.equal(s, _identity(satellite).flip(-1))
    q, s = PairedTransform(_identity, _identity, flip_prob=0.0)(query, satellite)
    assert torch.equal(q, _identity(query)) and torch.equal(s, _identity(satellite))


def test_paired_rotation_draws_one_k_for_both_views():
    rng = np.random.default_rng(2)
    query = Image.fromarray(rng.integers(0, 255, (4, 16, 3), dtype=np.uint8))
    satellite = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    transform = PairedTransform(_identity, _identity, rotate_prob=1.0)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        q, s = transform(query, satellite)
        ks = [k for k in (1, 2, 3) if torch.equal(s, torch.rot90(_identity(satellite), k, dims=(-2, -1)))]
        assert len(ks) == 1
        assert torch.equal(q, torch.roll(_identity(query), shifts=-ks[0] * 4, dims=-1))
        seen.add(ks[0])
    assert seen == {1, 2, 3}


def test_image_transform_resizes_and_normalises():
    transform = image_transform((8, 16), mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    out = transform(Image.new("RGB", (40, 30), (255, 0, 51)))
    assert out.shape == (3, 8, 16)
    assert torch.allclose(out[0], torch.tensor(1.0))  # (1 - 0.5) / 0.5
    assert torch.allclose(out[1], torch.tensor(-1.0))  # (0 - 0.25) / 0.25
    assert torch.allclose(out[2], torch.tensor(0.2))  # 51 / 255
    config = {
        "input_size": (3, 6, 6),
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
        "interpolation": "bicubic",
    }
    assert transform_from_data_config(config)(Image.new("RGB", (9, 9))).shape == (3, 6, 6)


# -- University-1652-style per-view augmentation (data.augment: pad, satellite_affine_degrees,
#    view_flip_prob, interpolation) ------------------------------------------------------------

_PLAIN = {
    "input_size": (3, 12, 12),
    "mean": (0.0, 0.0, 0.0),
    "std": (1.0, 1.0, 1.0),
    "interpolation": "bilinear",
}


def _pair_config(size: int = 12, **augment) -> dict:
    return {"data": {"query_size": [size, size], "satellite_size": [size, size], "augment": augment}}


def _as_uint8(tensor: torch.Tensor) -> np.ndarray:
    """ToTensor undone (mean 0, std 1): (3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return np.rint(tensor.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def _random_image(size: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def test_new_augment_defaults_keep_the_plain_resize():
    from cvd.data.transforms import build_eval_transform, build_pair_transform

    query, satellite = _random_image(20, 3), _random_image(20, 4)
    config = _pair_config()
    q, s = build_pair_transform(config, _PLAIN, training=True)(query, satellite)
    assert torch.equal(q, build_eval_transform(config, _PLAIN, "drone")(query))
    assert torch.equal(s, build_eval_transform(config, _PLAIN, "satellite")(satellite))


def test_pad_and_random_crop_take_a_window_of_the_edge_padded_image():
    from cvd.data.transforms import build_pair_transform

    size, pad = 12, 3
    image = _random_image(size, 5)  # already at the target size: the resize is the identity
    padded = np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    windows = {
        (y, x): padded[y : y + size, x : x + size] for y in range(2 * pad + 1) for x in range(2 * pad + 1)
    }
    transform = build_pair_transform(_pair_config(size, pad=pad), _PLAIN, training=True)
    offsets = set()
    for seed in range(40):
        torch.manual_seed(seed)
        q, s = transform(image, image)
        for out in (_as_uint8(q), _as_uint8(s)):
            matches = [offset for offset, window in windows.items() if np.array_equal(out, window)]
            assert matches, "the output is not a size x size window of the edge-padded image"
            offsets.update(matches)
    assert len(offsets) > 10  # the crop position is random, not fixed


def test_view_flips_are_drawn_independently_for_each_view():
    from cvd.data.transforms import build_pair_transform

    image = _random_image(12, 6)
    plain = np.asarray(image)
    transform = build_pair_transform(_pair_config(view_flip_prob=0.5), _PLAIN, training=True)
    combos = set()
    for seed in range(40):
        torch.manual_seed(seed)
        q, s = transform(image, image)
        flags = []
        for out in (_as_uint8(q), _as_uint8(s)):
            assert np.array_equal(out, plain) or np.array_equal(out, plain[:, ::-1])
            flags.append(bool(np.array_equal(out, plain[:, ::-1])))
        combos.add(tuple(flags))
    assert combos == {(False, False), (False, True), (True, False), (True, True)}


def test_satellite_affine_rotation_turns_the_satellite_only_by_the_drawn_angle():
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    from cvd.data.transforms import build_pair_transform

    image = _random_image(12, 7)
    transform = build_pair_transform(_pair_config(satellite_affine_degrees=90), _PLAIN, training=True)
    angles = []
    for seed in range(10):
        torch.manual_seed(seed)
        angle = float(torch.empty(1).uniform_(-90.0, 90.0).item())  # RandomAffine's only draw here
        torch.manual_seed(seed)
        q, s = transform(image, image)
        expected = TF.affine(
            image, angle, [0, 0], 1.0, [0.0, 0.0], interpolation=InterpolationMode.NEAREST, fill=0
        )
        assert np.array_equal(_as_uint8(s), np.asarray(expected))
        assert np.array_equal(_as_uint8(q), np.asarray(image))  # queries are never rotated
        angles.append(angle)
    assert min(angles) < 0 < max(angles)


def test_interpolation_override_applies_to_evaluation_too():
    from cvd.data.transforms import build_eval_transform

    image = _random_image(30, 8)
    out = build_eval_transform(_pair_config(interpolation="nearest"), _PLAIN, "satellite")(image)
    expected = np.asarray(image.resize((12, 12), Image.Resampling.NEAREST))
    assert np.array_equal(_as_uint8(out), expected)


def test_pad_and_affine_refuse_polar_satellites_and_unknown_interpolations():
    from cvd.data.transforms import build_eval_transform, build_pair_transform
    from cvd.errors import ConfigError

    with pytest.raises(ConfigError, match="polar"):
        build_pair_transform(_pair_config(pad=10, polar=True), _PLAIN)
    with pytest.raises(ConfigError, match=r"data\.augment\.interpolation"):
        build_eval_transform(_pair_config(interpolation="lanczos"), _PLAIN, "drone")
