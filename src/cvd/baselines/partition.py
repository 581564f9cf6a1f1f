"""Spatial partitions of a feature map and pooling over them (LPN, SDPL, MBF).

Partitions are boolean masks ``(P, H, W)`` over the map's cells, so that every pooling (mean,
max, GeM) is one masked reduction and the geometry can be checked on its own:

* ``square_rings`` -- LPN's square-ring partition (Wang et al., TCSVT 2021): ``blocks`` nested
  squares around the centre cell ``(H // 2, W // 2)``, each ``floor(H / (2 * blocks))`` cells
  wider on every side than the last; part ``i`` is square ``i`` minus square ``i - 1`` and the
  last part is everything outside square ``blocks - 1``. Listed centre outwards. A shifted
  centre gives SDPL's shifted partitions (clipped at the map's border).
* ``horizontal_bands`` -- LPN's row partition of ground panoramas (CVUSA/CVACT): the bands of
  ``adaptive_avg_pool2d(x, (blocks, 1))``, listed bottom up (nearest ground first) so that band
  ``i`` pairs with ring ``i`` counted from the centre: the satellite's centre is where the camera
  stands, its outer ring the horizon.
* ``dense_parts`` -- SDPL's dense partition: every run of consecutive rings (single rings, pairs,
  triples, ..., the whole map), ``blocks * (blocks + 1) / 2`` parts.

Maps too small for ``blocks`` rings are upsampled first exactly as LPN does
(``ring_grid_size``, bilinear with aligned corners).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def ring_grid_size(height: int, width: int, blocks: int) -> tuple[int, int]:
    """The size LPN resizes a map to before partitioning: unchanged when every ring is at least
    one cell wide, else ``n + 2 * (blocks - n // 2)`` along each too-short side (``2 * blocks``
    or ``2 * blocks + 1`` cells)."""

    def grow(n: int) -> int:
        return n if n // (2 * blocks) >= 1 else n + 2 * (blocks - n // 2)

    return grow(height), grow(width)


def resize_for_rings(features: torch.Tensor, blocks: int) -> torch.Tensor:
    """``features`` (B, C, H, W) upsampled to ``ring_grid_size`` when it is too small."""
    size = ring_grid_size(features.shape[-2], features.shape[-1], blocks)
    if size == tuple(features.shape[-2:]):
        return features
    return F.interpolate(features, size=size, mode="bilinear", align_corners=True)


def square_rings(height: int, width: int, blocks: int, shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """LPN's square rings as masks ``(blocks, H, W)``, centre outwards (see the module doc).

    ``shift`` moves the centre by (rows, columns); squares are clipped at the border, so a ring
    pushed off the map can be empty. The masks of one centre are disjoint and cover the map.
    """
    return _cached_rings(int(height), int(width), int(blocks), (int(shift[0]), int(shift[1])))


def horizontal_bands(height: int, width: int, blocks: int) -> torch.Tensor:
    """The row bands of ``adaptive_avg_pool2d(x, (blocks, 1))`` as masks, bottom band first."""
    return _cached_bands(int(height), int(width), int(blocks))


def dense_parts(height: int, width: int, blocks: int, shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """SDPL's dense partition: every run of consecutive rings, ordered by run length then by
    starting ring (for 4 rings: r0..r3, r0+r1, r1+r2, r2+r3, r0..r2, r1..r3, r0..r3)."""
    return _cached_dense(int(height), int(width), int(blocks), (int(shift[0]), int(shift[1])))


# Masks are built with numpy, not torch, and cached: built while an exporter traces the model
# they must be constants of the graph, not traced operations. Sizes arrive as ints (a traced
# shape can be a tensor, hence the int() above).


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A torch constant of ``array``; while an exporter traces, one the graph records as a
    constant (``torch.from_numpy`` would become an op ONNX cannot export)."""
    if torch.jit.is_tracing():
        return torch.tensor(array.tolist(), dtype=torch.from_numpy(array[:0]).dtype)
    return torch.from_numpy(array)


@functools.lru_cache(maxsize=256)
def _cached_rings(height: int, width: int, blocks: int, shift: tuple[int, int]) -> torch.Tensor:
    return _tensor(_square_rings(height, width, blocks, shift))


@functools.lru_cache(maxsize=256)
def _cached_bands(height: int, width: int, blocks: int) -> torch.Tensor:
    masks = np.zeros((blocks, height, width), dtype=bool)
    for band in range(blocks):
        start = (band * height) // blocks
        end = -((-(band + 1) * height) // blocks)  # ceil, as adaptive pooling does
        masks[band, start:end] = True
    return _tensor(masks[::-1].copy())


@functools.lru_cache(maxsize=256)
def _cached_dense(height: int, width: int, blocks: int, shift: tuple[int, int]) -> torch.Tensor:
    rings = _square_rings(height, width, blocks, shift)
    parts = [
        rings[start : start + length].any(axis=0)
        for length in range(1, blocks + 1)
        for start in range(blocks - length + 1)
    ]
    return _tensor(np.stack(parts))


def _square_rings(height: int, width: int, blocks: int, shift: tuple[int, int]) -> np.ndarray:
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    per_h, per_w = height // (2 * blocks), width // (2 * blocks)
    if per_h < 1 or per_w < 1:
        raise ValueError(
            f"a {height}x{width} map is too small for {blocks} rings; resize it to "
            f"ring_grid_size(...) = {ring_grid_size(height, width, blocks)} first"
        )
    centre_h, centre_w = height // 2 + shift[0], width // 2 + shift[1]
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    inside = np.zeros((height, width), dtype=bool)
    masks = []
    for ring in range(1, blocks):
        square = (
            (rows >= centre_h - ring * per_h)
            & (rows < centre_h + ring * per_h)
            & (cols >= centre_w - ring * per_w)
            & (cols < centre_w + ring * per_w)
        )
        masks.append(square & ~inside)
        inside = inside | square
    masks.append(~inside)
    return np.stack(masks)


def part_weights(masks: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Masks as averaging weights (each part's cells sum to one; an empty part weighs nothing)."""
    weights = masks.to(device=device, dtype=dtype)
    return weights / weights.flatten(-2).sum(-1).clamp_min(1.0)[..., None, None]


def masked_pool(features: torch.Tensor, masks: torch.Tensor, mode: str = "avg") -> torch.Tensor:
    """Pool ``features`` (B, C, H, W) over each part of ``masks`` (P, H, W) -> (B, C, P).

    ``avg`` is the mean over the part's own cells. (LPN's code averages over the part's bounding
    square with the inner square zeroed, i.e. this mean times a constant per ring; the linear
    layer and batch norm of its classifier block remove such a constant, so the two train the
    same model.) ``max`` is the maximum over the part's cells.
    """
    if mode == "avg":
        return torch.einsum("bchw,phw->bcp", features, part_weights(masks, features.device, features.dtype))
    if mode == "max":
        hidden = ~masks.to(features.device)[None, None]  # (1, 1, P, H, W)
        values = features.unsqueeze(2).masked_fill(hidden, float("-inf")).amax(dim=(-2, -1))
        return values.masked_fill(torch.isinf(values), 0.0)  # an empty part pools to zero
    raise ValueError(f"pooling mode must be 'avg' or 'max', got {mode!r}")


def masked_gem(
    features: torch.Tensor, masks: torch.Tensor, p: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Generalised mean over each part: ``(mean_part clamp(x, eps) ** p) ** (1 / p)``.

    ``features`` (B, C, H, W); ``masks`` (S, P, H, W) -- S partitions of P parts each (SDPL's
    shifted partitions share the exponents); ``p`` (P, C), one learnable exponent per part and
    channel. Returns (B, C, S, P). Computed in float32: x ** 3 overflows half precision quickly.
    """
    with torch.autocast(device_type=features.device.type, enabled=False):
        x = features.float().clamp(min=eps)
        weights = part_weights(masks, x.device, x.dtype)  # (S, P, H, W)
        pooled = []
        for part in range(p.shape[0]):
            exponent = p[part].float()[None, :, None, None]
            means = torch.einsum("bchw,shw->bcs", x.pow(exponent), weights[:, part])
            pooled.append(means.clamp_min(eps**2).pow(1.0 / exponent[..., 0]))
        return torch.stack(pooled, dim=-1)


def projected_part_means(features: torch.Tensor, projection: nn.Conv2d, masks: torch.Tensor) -> torch.Tensor:
    """``masked_pool(projection(features), masks, "avg")`` exactly, without the full-map conv.

    CVD's content projection is a zero-padded stride-1 k x k convolution, hence linear: the mean
    of its output over a part is the kernel applied once to the means of the k*k shifted windows
    of ``features`` over that part (the idea of ``SplitProjection.global_mean``, per part). For
    LPN's 4 rings of a 2048 x 16 x 16 map this costs 9 x 4 masked means and 4 matrix products
    instead of a 3 x 3 convolution over 256 cells, so CVD adds almost nothing at inference.
    Returns (B, C_out, P).
    """
    kernel = projection.kernel_size[0]
    pad = kernel // 2
    if (
        projection.kernel_size != (kernel, kernel)
        or projection.stride != (1, 1)
        or projection.dilation != (1, 1)
        or projection.groups != 1
        or projection.padding != (pad, pad)
    ):
        raise ValueError("projected_part_means needs a 'same' stride-1 convolution with an odd square kernel")
    height, width = features.shape[-2:]
    taps = _tensor(_shifted_part_weights(masks.numpy(), kernel)).to(features)  # (P, k*k, H, W)
    if taps.shape[-2:] != (height, width):
        raise ValueError(f"masks of {tuple(taps.shape[-2:])} do not fit a {height}x{width} map")
    weight = projection.weight
    if weight.is_contiguous():  # (O, C, k, k): a (c, i, j)-ordered matrix without a copy
        window_means = torch.einsum("bchw,pqhw->bpcq", features, taps).flatten(2)
        matrix = weight.reshape(projection.out_channels, -1)
    else:  # channels_last (the trainer's layout): (i, j, c) order is the free view
        window_means = torch.einsum("bchw,pqhw->bpqc", features, taps).flatten(2)
        matrix = weight.permute(0, 2, 3, 1).reshape(projection.out_channels, -1)
    return F.linear(window_means, matrix, projection.bias).transpose(1, 2)


def _shifted_part_weights(masks: np.ndarray, kernel: int) -> np.ndarray:
    """Tap (i, j) of a k x k 'same' conv reads the input at offset (i - k//2, j - k//2): its part
    mean is the input's sum over the part shifted by that offset (cells pushed off the map are the
    zero padding), divided by the part's own size."""
    parts, height, width = masks.shape
    pad = kernel // 2
    sizes = np.maximum(masks.reshape(parts, -1).sum(-1), 1).astype(np.float64)
    out = np.zeros((parts, kernel * kernel, height, width), dtype=np.float32)
    for i in range(kernel):
        for j in range(kernel):
            dy, dx = i - pad, j - pad
            # cell (r, c) of the part reads input (r + dy, c + dx)
            shifted = np.zeros_like(masks)
            shifted[:, max(0, dy) : height + min(0, dy), max(0, dx) : width + min(0, dx)] = masks[
                :, max(0, -dy) : height + min(0, -dy), max(0, -dx) : width + min(0, -dx)
            ]
            out[:, i * kernel + j] = shifted / sizes[:, None, None]
    return out
