"""Reading query and tile images for localization, with the checks operators' files need.

Field imagery arrives as whatever the camera or GIS tool wrote: greyscale, palette, RGBA,
CMYK, 16-bit, float. Decoding is `cvd.data.images.decode_image`, the same as training and
evaluation use (16-bit and float samples scaled by their type's range, float outside [0, 1]
refused); any conversion is reported, since a greyscale query matched against colour tiles is
less reliable. Images too small to carry a view are refused rather than upsampled into noise.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from cvd.data.images import EIGHT_BIT_MODES, SIXTEEN_BIT_MODES, decode_image
from cvd.errors import ImageReadError

MIN_SIDE_PX = 32
CONVERTIBLE_MODES = (*EIGHT_BIT_MODES, *SIXTEEN_BIT_MODES, "I", "F")


def read_rgb(path: str | os.PathLike, min_side: int = MIN_SIDE_PX) -> tuple[Image.Image, str | None]:
    """The image as 8-bit RGB and a note on any conversion; ImageReadError naming the path otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    rgb, mode = decode_image(path)
    if min(rgb.size) < min_side:
        raise ImageReadError(
            f"{path}: image is {rgb.width}x{rgb.height} px, too small to localize "
            f"(at least {min_side} px per side)"
        )
    if mode == "RGB":
        return rgb, None
    note = f"converted from {mode} to RGB"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        note += " (alpha channel dropped)"
    elif mode in (*SIXTEEN_BIT_MODES, "I"):
        note += " (16-bit samples scaled to 8 bits)"
    elif mode == "F":
        note += " (float samples in [0, 1] scaled to 8 bits)"
    return rgb, note
