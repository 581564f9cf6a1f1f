"""Image transforms, including the paired augmentations whose two views must agree.

Geometry conventions (derived here once, relied on by the tests):

* Ground panoramas (CVUSA, CVACT) are equirectangular with azimuth increasing clockwise from
  left to right (seen from above) and north at the centre column. SAFA's polar transform, which
  is what makes a satellite look like a panorama, puts south at column 0, west at W/4, north at
  W/2 and east at 3W/4; `polar_transform` below reproduces that mapping.
* `torch.rot90(satellite, k, dims=(-2, -1))` turns the satellite k*90 degrees counter-clockwise
  as displayed: what was on the east edge is now at the top, i.e. the new north is the old east
  (azimuth +90 degrees per k). The panorama seen from the same spot must then show, at its
  north (centre) column, what it showed W/4 columns to the right: new[:, c] = old[:, c + k*W/4],
  which is `torch.roll(panorama, shifts=-k*W/4, dims=-1)`. This is the pairing Sample4Geo uses
  on CVUSA/CVACT; `tests/datasets/test_transforms.py` checks it through the polar transform:
  polar(rot90(sat, k)) == roll(polar(sat), -k*W/4).
* A horizontal flip of both views is consistent for every benchmark: it mirrors east and west
  in the satellite and reverses the azimuth order of the panorama while north stays in the
  centre (University-1652 drone/satellite pairs are mirrored the same way).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from cvd.errors import ConfigError
from cvd.schema import Option, check_value, declared_defaults

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    height, width = value
    return int(height), int(width)


def _supported_interpolation(name: str | None) -> str:
    """timm's interpolation name if torchvision's resize takes it, else bilinear."""
    return name if name in INTERPOLATIONS else "bilinear"


SAFA_POLAR_SIZE = (122, 671)
"""(height, width) of SAFA / GeoDTR / LPN polar satellites on CVUSA."""


def image_transform(
    size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bilinear",
) -> Callable[[Image.Image], torch.Tensor]:
    """Resize to exactly `size` ((H, W), or square), to float tensor, normalise with the backbone's stats.

    Peers resize to an exact size (no aspect-preserving crop), so panoramas keep their full
    360 degrees; pass (H, 2H) or similar for street views.
    """
    from torchvision import transforms as T

    height, width = _size(size)
    mode = T.InterpolationMode(interpolation)
    return T.Compose(
        [
            T.Resize((height, width), interpolation=mode, antialias=True),
            T.ToTensor(),
            T.Normalize(mean=list(mean), std=list(std)),
        ]
    )


def transform_from_data_config(
    data_config: Mapping[str, Any], size: int | Sequence[int] | None = None
) -> Callable[[Image.Image], torch.Tensor]:
    """`image_transform` from a timm data_config (`Backbone.data_config`); `size` overrides its input size."""
    if size is None:
        size = tuple(data_config["input_size"][-2:])
    interpolation = _supported_interpolation(data_config.get("interpolation"))
    return image_transform(size, data_config["mean"], data_config["std"], interpolation)


def rotate_pair(
    query: torch.Tensor, satellite: torch.Tensor, k: int, roll_query: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn the satellite k*90 degrees counter-clockwise and roll the panorama to match (see module doc).

    With `roll_query=False` only the satellite turns (drone queries have no azimuth to roll).
    A width not divisible by 4 is rolled by the nearest whole number of columns.
    """
    k = k % 4
    if k == 0:
        return query, satellite
    satellite = torch.rot90(satellite, k, dims=(-2, -1))
    if roll_query:
        width = query.shape[-1]
        query = torch.roll(query, shifts=-round(k * width / 4), dims=-1)
    return query, satellite


class PairedTransform:
    """Augment a (query, satellite) pair with the view-agreeing parts drawn once for both.

    Order: shared horizontal flip (PIL, probability `flip_prob`), then each view's own
    transform (resize, colour jitter, normalise, ...), then with probability `rotate_prob` a
    satellite rotation by k*90 degrees, k uniform in {1, 2, 3}, with the matching panorama roll
    when `roll_query` (CVUSA/CVACT as Sample4Geo). `satellite_rotate90` turns the satellite
    alone by a random k*90 degrees, k in {0..3} (Sample4Geo's RandomRotate90 on University-1652,
    where drone views have no azimuth to keep consistent). Randomness comes from torch's
    generator, which DataLoader seeds per worker.
    """

    def __init__(
        self,
        query_transform: Callable[[Image.Image], torch.Tensor],
        satellite_transform: Callable[[Image.Image], torch.Tensor],
        flip_prob: float = 0.0,
        rotate_prob: float = 0.0,
        roll_query: bool = True,
        satellite_rotate90: bool = False,
    ) -> None:
        self.query_transform = query_transform
        self.satellite_transform = satellite_transform
        self.flip_prob = flip_prob
        self.rotate_prob = rotate_prob
        self.roll_query = roll_query
        self.satellite_rotate90 = satellite_rotate90

    def __call__(self, query: Image.Image, satellite: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flip_prob > 0 and torch.rand(()).item() < self.flip_prob:
            query = query.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            satellite = satellite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        query_tensor = self.query_transform(query)
        satellite_tensor = self.satellite_transform(satellite)
        if self.rotate_prob > 0 and torch.rand(()).item() < self.rotate_prob:
            k = int(torch.randint(1, 4, ()).item())
            query_tensor, satellite_tensor = rotate_pair(query_tensor, satellite_tensor, k, self.roll_query)
        if self.satellite_rotate90:
            k = int(torch.randint(0, 4, ()).item())
            satellite_tensor = torch.rot90(satellite_tensor, k, dims=(-2, -1))
        return query_tensor, satellite_tensor


def polar_grid(
    image_height: int, image_width: int, height: int = SAFA_POLAR_SIZE[0], width: int = SAFA_POLAR_SIZE[1]
) -> tuple[np.ndarray, np.ndarray]:
    """Source (row, col) coordinates in the satellite for each pixel of the polar image.

    SAFA's mapping: row i samples radius (S/2)(H-1-i)/H (top row = outer ring, bottom = centre),
    column j samples azimuth 2*pi*j/W starting south and turning clockwise (west, north, east).
    The centre is the geometric centre ((S-1)/2, pixel-centre convention), so that a 90 degree
    rotation of the satellite maps the grid onto itself exactly.
    """
    i = np.arange(height, dtype=np.float64)[:, None]
    j = np.arange(width, dtype=np.float64)[None, :]
    radius = (height - 1 - i) / height
    theta = 2.0 * math.pi * j / width
    rows = (image_height - 1) / 2.0 + (image_height / 2.0) * radius * np.cos(theta)
    cols = (image_width - 1) / 2.0 - (image_width / 2.0) * radius * np.sin(theta)
    return rows, cols


def polar_transform(
    image: Image.Image | np.ndarray, height: int = SAFA_POLAR_SIZE[0], width: int = SAFA_POLAR_SIZE[1]
) -> Image.Image | np.ndarray:
    """Warp a satellite image into SAFA's polar form (122 x 671 by default), bilinear, zero outside.

    Returns the same kind as given: a PIL image for a PIL image; for an (H, W[, C]) array, an
    array of the same dtype (uint8 rounded). scipy's map_coordinates does the sampling.
    """
    from scipy.ndimage import map_coordinates

    as_pil = isinstance(image, Image.Image)
    array = np.asarray(image.convert("RGB") if as_pil else image)
    squeeze = array.ndim == 2
    if squeeze:
        array = array[:, :, None]
    rows, cols = polar_grid(array.shape[0], array.shape[1], height, width)
    source = array.astype(np.float64)
    out = np.stack(
        [
            map_coordinates(source[:, :, c], [rows, cols], order=1, mode="constant", cval=0.0)
            for c in range(array.shape[2])
        ],
        axis=-1,
    )
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    out = out.astype(array.dtype)
    if squeeze:
        out = out[:, :, 0]
    return Image.fromarray(out) if as_pil else out


class PolarTransform:
    """`polar_transform` as a PIL -> PIL step, for use in a satellite transform pipeline."""

    def __init__(self, height: int = SAFA_POLAR_SIZE[0], width: int = SAFA_POLAR_SIZE[1]) -> None:
        self.height = height
        self.width = width

    def __call__(self, image: Image.Image) -> Image.Image:
        return polar_transform(image, self.height, self.width)


# -- config-driven builders (what the baseline recipes call) --------------------------------

AUGMENT_SCHEMA: dict[str, Option] = {
    "flip_prob": Option(
        "float", "horizontal flip of both views together (Sample4Geo)", default=0.0, low=0, high=1,
        nullable=False,
    ),
    "rotate_prob": Option(
        "float", "satellite turn by k*90 degrees (k in 1..3) with the panorama rolled to match",
        default=0.0, low=0, high=1, nullable=False,
    ),
    "roll_query": Option(
        "bool", "roll the panorama query with a satellite turn", default=True, nullable=False
    ),
    "satellite_rotate90": Option(
        "bool", "turn the satellite alone by a random k*90 degrees (University-1652)", default=False,
        nullable=False,
    ),
    "color_jitter": Option(
        "float", "brightness/contrast/saturation/hue jitter strength, p=0.5 per view", default=0.0,
        low=0, nullable=False,
    ),
    "polar": Option(
        "bool", "polar-transform satellites to the panorama's geometry (SAFA)", default=False,
        nullable=False,
    ),
    "pad": Option(
        "int", "edge padding in pixels before a random crop back", default=0, low=0, nullable=False
    ),
    "satellite_affine_degrees": Option(
        "float", "random affine rotation of satellites up to this many degrees", default=0.0, low=0,
        high=180, nullable=False,
    ),
    "view_flip_prob": Option(
        "float", "horizontal flip of each view drawn independently", default=0.0, low=0, high=1,
        nullable=False,
    ),
    "interpolation": Option(
        "str", "resize interpolation for training and evaluation (null = the backbone's)",
        default=None, choices=INTERPOLATIONS,
    ),
}  # fmt: skip
"""The config's `data.augment` keys of the shared paired transform (see docs/datasets.md): their
kind, range and default, checked by `cvd.config.validate` before anything runs.

The last four reproduce the University-1652 baseline's per-view pipeline that LPN, SDPL, MCCG,
FSRA and MBF inherit: resize, edge padding by `pad` pixels and a random crop back to the size,
for satellites a random affine rotation of up to `satellite_affine_degrees` degrees (their
`RandomAffine(90)`) before the crop, and a horizontal flip of each view drawn *independently*
with `view_flip_prob` (their two `RandomHorizontalFlip`s; `flip_prob` is the shared flip of
Sample4Geo). `interpolation` (nearest | bilinear | bicubic) overrides the backbone's resize
interpolation for training and evaluation (their scripts resize bicubic). The defaults leave
every earlier recipe unchanged.
"""

AUGMENT_OPTIONS = declared_defaults(AUGMENT_SCHEMA)
"""The defaults of `data.augment` (for code that builds a transform without a validated config)."""


def _view_size(config: Mapping[str, Any], data_config: Mapping[str, Any], view: str) -> tuple[int, int]:
    data = config.get("data", {})
    key = "satellite_size" if view == "satellite" else "query_size"
    return _size(data.get(key) or data_config["input_size"][-2:])


def _interpolation(augment: Mapping[str, Any]) -> str | None:
    value = augment.get("interpolation")
    check_value("data.augment.interpolation", value, AUGMENT_SCHEMA["interpolation"])
    return value


def view_augmentation(
    size: tuple[int, int],
    pad: int = 0,
    affine_degrees: float = 0.0,
    flip_prob: float = 0.0,
    interpolation: str = "bilinear",
) -> Callable[[Image.Image], Image.Image]:
    """One view's geometric training augmentation (PIL -> PIL of exactly `size` = (H, W)).

    The University-1652 baseline's order: resize to `size`, pad `pad` pixels by repeating the
    edge, rotate by a uniform angle in [-affine_degrees, affine_degrees] (zero fill), crop a
    random `size` window, flip horizontally with probability `flip_prob`. The per-view resize
    and normalise that follow are then a no-op resize (PIL returns a copy at equal size).
    """
    from torchvision import transforms as T

    steps: list[Callable] = [T.Resize(size, interpolation=T.InterpolationMode(interpolation), antialias=True)]
    if pad > 0:
        steps.append(T.Pad(int(pad), padding_mode="edge"))
    if affine_degrees > 0:
        steps.append(T.RandomAffine(float(affine_degrees)))
    if pad > 0:
        steps.append(T.RandomCrop(size))
    if flip_prob > 0:
        steps.append(T.RandomHorizontalFlip(float(flip_prob)))
    return T.Compose(steps)


def build_eval_transform(
    config: Mapping[str, Any], data_config: Mapping[str, Any], view: str
) -> Callable[[Image.Image], torch.Tensor]:
    """Deterministic resize + normalise of one view from the config's `data.query_size` /
    `data.satellite_size` and the backbone's mean/std (`data.augment.polar` warps satellites)."""
    data = config.get("data", {})
    size = _view_size(config, data_config, view)
    interpolation = _interpolation(data.get("augment") or {})
    if interpolation is not None:
        data_config = {**data_config, "interpolation": interpolation}
    base = transform_from_data_config(data_config, size)
    if view == "satellite" and (data.get("augment") or {}).get("polar", False):
        from torchvision import transforms as T

        return T.Compose([PolarTransform(), base])
    return base


def build_pair_transform(
    config: Mapping[str, Any], data_config: Mapping[str, Any], training: bool = True
) -> PairedTransform:
    """The paired training transform from the config's `data.augment` (keys: AUGMENT_OPTIONS).

    `color_jitter: s` applies brightness/contrast/saturation/hue jitter of strength s (hue capped
    at 0.5) with probability 0.5 to each view independently, as Sample4Geo's albumentations
    pipeline does with s = 0.15. With `training=False` only the resizing and normalising remain.
    """
    augment = dict(AUGMENT_OPTIONS)
    given = dict((config.get("data", {}) or {}).get("augment") or {})
    unknown = sorted(set(given) - set(augment))
    if unknown:
        raise ConfigError(f"data.augment: unknown option(s) {unknown}; known: {sorted(augment)}")
    augment.update(given)
    if augment["polar"] and (augment["rotate_prob"] or augment["satellite_rotate90"]):
        raise ConfigError(
            "data.augment: polar satellites cannot be rotated (their azimuth runs along the width); "
            "set rotate_prob: 0 and satellite_rotate90: false"
        )
    pad, degrees = int(augment["pad"]), float(augment["satellite_affine_degrees"])
    if augment["polar"] and (pad > 0 or degrees > 0):
        raise ConfigError(
            "data.augment: pad and satellite_affine_degrees work on square satellites; "
            "they cannot be combined with polar: true"
        )
    query = build_eval_transform(config, data_config, "drone")
    satellite = build_eval_transform(config, data_config, "satellite")
    if not training:
        return PairedTransform(query, satellite)
    view_flip = float(augment["view_flip_prob"])
    if pad > 0 or degrees > 0 or view_flip > 0:
        from torchvision import transforms as T

        interpolation = _interpolation(augment) or _supported_interpolation(data_config.get("interpolation"))
        query_size = _view_size(config, data_config, "drone")
        satellite_size = _view_size(config, data_config, "satellite")
        query = T.Compose([view_augmentation(query_size, pad, 0.0, view_flip, interpolation), query])
        satellite = T.Compose(
            [view_augmentation(satellite_size, pad, degrees, view_flip, interpolation), satellite]
        )
    strength = float(augment["color_jitter"])
    if strength > 0:
        from torchvision import transforms as T

        jitter = T.RandomApply([T.ColorJitter(strength, strength, strength, min(strength, 0.5))], p=0.5)
        query = T.Compose([jitter, query])
        satellite = T.Compose([jitter, satellite])
    return PairedTransform(
        query,
        satellite,
        flip_prob=float(augment["flip_prob"]),
        rotate_prob=float(augment["rotate_prob"]),
        roll_query=bool(augment["roll_query"]),
        satellite_rotate90=bool(augment["satellite_rotate90"]),
    )
