"""Float comparisons whose tolerance follows the quantity's scale, for results of two computation paths.

Why: a float sum done in another order (AVX2 vs AVX-512 kernels, Intel vs AMD, another thread
count, two processes instead of one, chunks instead of one batch) rounds differently, and the
error it makes is a few units in the last place of the *largest terms summed*, not of the result.
An element near zero of a gradient whose largest element is 8 can move by 5e-6 between CPUs, so
an absolute tolerance such as ``atol=1e-6`` fails on one machine and passes on another. Here
every element is judged against the scale of its tensor (its largest magnitude, or a scale the
caller states), which is what the rounding error follows.

What still fails: a relative error ``rel`` in the max-norm. With ``rel`` in 1e-6 .. 1e-5 (float32
rounding leaves ~1e-7 of the scale), a wrong factor (x2, a missing average), a missing term, a
wrong sign or a row in the wrong place moves the largest elements by a sizeable fraction of the
scale and is caught; only differences below ``rel`` of the scale are forgiven.

Use it for cross-path comparisons only; hand-worked values keep their exact, tight checks.
"""

from __future__ import annotations

import numpy as np
import torch


def scaled_difference(actual, expected, scale: float | None = None) -> tuple[float, float]:
    """(max |actual - expected|, scale): the scale is max |expected| unless given; NaN fails."""
    actual, expected = (
        x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x)) for x in (actual, expected)
    )
    if actual.shape != expected.shape:
        raise AssertionError(f"shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}")
    actual, expected = actual.detach().double(), expected.detach().double()
    if scale is None:
        scale = float(expected.abs().max()) if expected.numel() else 0.0
    difference = float((actual - expected).abs().max()) if expected.numel() else 0.0
    return difference, scale


def assert_close_scaled(actual, expected, *, rel: float = 1e-5, scale: float | None = None, msg=None) -> None:
    """Assert ``|actual - expected| <= rel * scale`` for every element (tensors or arrays).

    ``scale`` defaults to ``max |expected|``; pass a larger one where a quantity that is zero in
    exact arithmetic holds only rounding noise (its own maximum is then noise, not a scale).
    """
    difference, scale = scaled_difference(actual, expected, scale)
    if not difference <= rel * scale:
        detail = f"max |difference| {difference:.3g} > {rel:g} x scale {scale:.3g}"
        raise AssertionError(f"{msg}: {detail}" if msg else detail)
