"""Image decoding and the two torch datasets (evaluation images, training pairs).

Unreadable images. A corrupt file must neither crash a 40-epoch run nor vanish silently, and
evaluation must drop a skipped query or gallery item consistently. The design:

* `__getitem__` never raises on a bad file (unless `strict=True`, where the first one raises
  `ImageReadError` naming the path). It logs a warning with the path and returns a small
  marker `{"index": i, "skipped": "<path>"}` instead of a sample.
* `collate_skipping` (the datasets' `collate_fn`) drops the markers, collates the rest, and
  returns the dropped paths and indices in the batch (`"skipped"`, `"skipped_index"`). The
  batch travels from DataLoader worker processes to the main process, so the record of what was
  skipped does too; the engine counts them for the run summary (`dataset.update_skipped(batch)`
  gathers them on the dataset object in the main process as `.skipped`).
* Every sample carries its `"index"` and `"label"`, so evaluation keeps the embeddings and
  labels of exactly the items that were read: a skipped gallery item is simply absent from the
  gallery, a skipped query is absent from the queries.
* `verify=True` decodes every image up front (JPEGs at 1/8 scale through PIL's draft mode, so it
  costs a fraction of an epoch) and removes the bad ones before any index is handed out.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, default_collate

from cvd.data.records import ImageRecord, PairRecord
from cvd.errors import ImageReadError

logger = logging.getLogger("cvd.data")

SKIPPED_KEY = "skipped"

# What a corrupt, truncated, empty, missing or unreadable file raises inside PIL.
READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


# 8-bit modes Pillow converts to RGB faithfully (alpha, if any, is dropped).
EIGHT_BIT_MODES = ("RGB", "L", "LA", "P", "PA", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "1", "La")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
SIXTEEN_BIT_SCALE = 257.0  # 65535 / 255: 16-bit white maps to 8-bit white


def to_rgb8(image: Image.Image, path: str | os.PathLike) -> Image.Image:
    """8-bit RGB of a loaded image, 16-bit and float samples scaled by their type's range.

    Pillow's own ``convert("RGB")`` clips 16-bit (I;16, I) and float (F) samples at 255, so a
    16-bit photo comes out almost all white: training, evaluation and localization all decode
    through here instead. 16-bit values are divided by 257; float samples must be finite and in
    [0, 1] (times 255) and are refused otherwise, naming ``path``, since no scale is implied.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in EIGHT_BIT_MODES:
        return image.convert("RGB")
    if mode in SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(image).astype(np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageReadError(
                f"{path}: image mode {mode} has samples in [{values.min():g}, {values.max():g}], "
                "outside the 16-bit range [0, 65535]; convert it to 8-bit RGB"
            )
        grey = np.rint(values / SIXTEEN_BIT_SCALE)
    elif mode == "F":
        values = np.asarray(image).astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageReadError(f"{path}: float image (mode F) has NaN or infinite samples")
        if values.size and (values.min() < 0.0 or values.max() > 1.0):
            raise ImageReadError(
                f"{path}: float image (mode F) has samples in [{values.min():g}, {values.max():g}]; "
                "only [0, 1] has a known scale; convert it to 8-bit RGB"
            )
        grey = np.rint(values * 255.0)
    else:
        raise ImageReadError(f"{path}: image mode {mode} is not supported; convert it to 8-bit RGB")
    return Image.fromarray(grey.astype(np.uint8)).convert("RGB")


def decode_image(path: str | os.PathLike) -> tuple[Image.Image, str]:
    """(8-bit RGB image, the file's own mode): the one decoder of training, evaluation and
    localization, so a file is read the same way everywhere. ImageReadError names the path."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb8(image, path), image.mode
    except READ_ERRORS as error:
        raise ImageReadError(f"{path}: cannot read image ({error})") from error


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image fully as 8-bit RGB (see `decode_image`); ImageReadError names the path."""
    return decode_image(path)[0]


def is_readable(path: str | os.PathLike) -> bool:
    """Cheap full-file check: JPEGs decode at 1/8 scale (draft mode), still reading every byte;
    the samples are checked as `load_rgb` would (a float image out of [0, 1] is unreadable)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
            to_rgb8(image, path)
        return True
    except (*READ_ERRORS, ImageReadError):
        return False


def find_unreadable(paths: Iterable[str | os.PathLike], num_workers: int = 4) -> list[Path]:
    """The paths that cannot be decoded, in input order (threads: PIL releases the GIL while decoding)."""
    unique = list(dict.fromkeys(Path(p) for p in paths))
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        readable = list(pool.map(is_readable, unique))
    return [path for path, ok in zip(unique, readable) if not ok]


def collate_skipping(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate samples, dropping the markers of skipped images and reporting them.

    Returns the default collation of the valid samples plus `"skipped"` (list of paths as str)
    and `"skipped_index"` (list of dataset indices). A batch whose items were all skipped holds
    only `"index"` (empty), `"skipped"` and `"skipped_index"`.
    """
    valid = [item for item in batch if SKIPPED_KEY not in item]
    dropped = [item for item in batch if SKIPPED_KEY in item]
    collated: dict[str, Any] = (
        default_collate(valid) if valid else {"index": torch.empty(0, dtype=torch.long)}
    )
    collated[SKIPPED_KEY] = [item[SKIPPED_KEY] for item in dropped]
    collated["skipped_index"] = [int(item["index"]) for item in dropped]
    return collated


class _SkippingDataset(Dataset):
    """Shared skip bookkeeping of ImageDataset and PairDataset."""

    collate_fn = staticmethod(collate_skipping)

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self._skipped: dict[str, None] = {}

    @property
    def skipped(self) -> list[Path]:
        """Paths skipped so far as seen by this process (see `update_skipped` for workers)."""
        return [Path(p) for p in self._skipped]

    def update_skipped(self, batch: dict[str, Any]) -> int:
        """Record the paths a worker skipped (from a `collate_skipping` batch); returns how many."""
        paths = batch.get(SKIPPED_KEY, [])
        for path in paths:
            self._skipped.setdefault(str(path), None)
        return len(paths)

    def _load(self, path: Path) -> Image.Image | None:
        try:
            return load_rgb(path)
        except ImageReadError:
            if self.strict:
                raise
            logger.warning("skipping unreadable image %s", path)
            self._skipped.setdefault(str(path), None)
            return None

    def _verify(self, paths: Iterable[Path], num_workers: int) -> set[Path]:
        bad = find_unreadable(paths, num_workers)
        if bad and self.strict:
            raise ImageReadError(f"cannot read image {bad[0]} ({len(bad)} unreadable in all)")
        for path in bad:
            logger.warning("skipping unreadable image %s", path)
            self._skipped.setdefault(str(path), None)
        return set(bad)


class ImageDataset(_SkippingDataset):
    """Evaluation images: `{"image", "label", "index"}` per record.

    `transform` maps a PIL RGB image to a tensor (e.g. `cvd.data.transforms.image_transform`);
    None gives uint8 (3, H, W) tensors.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        strict: bool = False,
        verify: bool = False,
        verify_workers: int = 4,
    ) -> None:
        super().__init__(strict)
        self.records = list(records)
        self.transform = transform
        if verify:
            bad = self._verify((r.path for r in self.records), verify_workers)
            self.records = [r for r in self.records if r.path not in bad]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[int]:
        """Labels in index order (what evaluation pairs with the embeddings)."""
        return [r.label for r in self.records]

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image = self._load(record.path)
        if image is None:
            return {"index": index, SKIPPED_KEY: str(record.path)}
        return {"image": _to_tensor(image, self.transform), "label": record.label, "index": index}


class PairDataset(_SkippingDataset):
    """Training pairs: `{"query", "satellite", "label", "location", "gps", "index"}` per pair.

    `transform` is a paired transform `(query_pil, satellite_pil) -> (query_tensor,
    satellite_tensor)` (e.g. `cvd.data.transforms.PairedTransform`), so that augmentations that
    must agree between the views (a shared flip, a rotation with its panorama roll) can. A pair
    is skipped when either of its images cannot be read. `gps` is a float64 (lat, lon) tensor,
    nan where unknown.
    """

    def __init__(
        self,
        pairs: Sequence[PairRecord],
        transform: Callable[[Image.Image, Image.Image], tuple[torch.Tensor, torch.Tensor]] | None = None,
        strict: bool = False,
        verify: bool = False,
        verify_workers: int = 4,
    ) -> None:
        super().__init__(strict)
        self.pairs = list(pairs)
        self.transform = transform
        if verify:
            paths = [p.query for p in self.pairs] + [p.satellite for p in self.pairs]
            bad = self._verify(paths, verify_workers)
            self.pairs = [p for p in self.pairs if p.query not in bad and p.satellite not in bad]

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def labels(self) -> list[int]:
        """Contiguous location labels in index order (what the samplers take)."""
        return [p.label for p in self.pairs]

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        query = self._load(pair.query)
        if query is None:
            return {"index": index, SKIPPED_KEY: str(pair.query)}
        satellite = self._load(pair.satellite)
        if satellite is None:
            return {"index": index, SKIPPED_KEY: str(pair.satellite)}
        if self.transform is None:
            query_tensor, satellite_tensor = _to_tensor(query, None), _to_tensor(satellite, None)
        else:
            query_tensor, satellite_tensor = self.transform(query, satellite)
        gps = pair.gps if pair.gps is not None else (math.nan, math.nan)
        return {
            "query": query_tensor,
            "satellite": satellite_tensor,
            "label": pair.label,
            "location": pair.location,
            "gps": torch.tensor(gps, dtype=torch.float64),
            "index": index,
        }


def _to_tensor(image: Image.Image, transform: Callable[[Image.Image], torch.Tensor] | None) -> torch.Tensor:
    if transform is not None:
        return transform(image)
    from torchvision.transforms.functional import pil_to_tensor

    return pil_to_tensor(image)
