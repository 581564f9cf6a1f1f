"""Reading query and tile images for localization, with the checks operators' files need.

Field imagery arrives as whatever the camera or GIS tool wrote: greyscale, palette, RGBA,
CMYK, 16-bit. 8-bit modes are converted to RGB (and the conversion is reported, since a
greyscale query matched against colour tiles is less reliable); deeper modes are refused with
the fix named, because silently clipping a 16-bit image to 8 bits would wreck it. Images too
small to carry a view are refused rather than upsampled into noise.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from cvd.data.images import READ_ERRORS
from cvd.errors import ImageReadError

MIN_SIDE_PX = 32
CONVERTIBLE_MODES = ("RGB", "L", "LA", "P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "1", "La")


def read_rgb(path: str | os.PathLike, min_side: int = MIN_SIDE_PX) -> tuple[Image.Image, str | None]:
    """The image as 8-bit RGB and a note on any conversion; ImageReadError naming the path otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode not in CONVERTIBLE_MODES:
                raise ImageReadError(
                    f"{path}: image mode {mode} (16-bit or float) is not supported; convert it to 8-bit RGB"
                )
            if min(image.size) < min_side:
                raise ImageReadError(
                    f"{path}: image is {image.width}x{image.height} px, too small to localize "
                    f"(at least {min_side} px per side)"
                )
            rgb = image.convert("RGB")
    except READ_ERRORS as error:
        raise ImageReadError(f"{path}: cannot read image ({error})") from None
    note = None if mode == "RGB" else f"converted from {mode} to RGB"
    if mode in ("RGBA", "LA", "PA", "La"):
        note += " (alpha channel dropped)"
    return rgb, note
