"""Sliced Wasserstein distance between two equal-size sample sets, differentiable.

CVD measures dependence between content and viewpoint with SW2 (eq. 3): it needs no density
estimate and costs one matrix product and one sort per projection batch.
"""

from __future__ import annotations

import torch

# Smallest value the mean projected cost is clamped to before its p-th root: the root's gradient
# is infinite at 0 (identical sets), the clamp makes it 0 there instead of NaN.
_ROOT_FLOOR = 1e-20


def random_projections(
    dim: int,
    n_projections: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Directions drawn uniformly on the unit sphere, shape (dim, n_projections) as in POT.

    Drawn on the generator's device (a CPU generator can seed a GPU loss), then moved.
    """
    draw_device = generator.device if generator is not None else device
    directions = torch.randn(dim, n_projections, device=draw_device, dtype=dtype, generator=generator)
    directions = directions / directions.norm(dim=0, keepdim=True)
    return directions.to(device) if device is not None else directions


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int = 128,
    p: float = 2,
    projections: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SW_p between the empirical measures of x (N, d) and y (N, d), uniform weights.

    Same definition as POT's `ot.sliced_wasserstein_distance`, which returns SW_p itself (not
    SW_p^p): (mean over directions theta of W_p^p(theta#x, theta#y)) ** (1/p). With N points on
    each side, W_p^p of two 1-D samples is the mean |x_(i) - y_(i)|^p of the sorted projections.
    `projections` (d, L) fixes the directions (columns, unit norm); otherwise `n_projections`
    are drawn with `generator`. Computed in at least float32 (sorting half-precision values
    under autocast would put most of the loss in rounding).
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must be (N, d) of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    x = x.to(compute_dtype)
    y = y.to(compute_dtype)
    if projections is None:
        projections = random_projections(
            x.shape[1], n_projections, device=x.device, dtype=compute_dtype, generator=generator
        )
    elif projections.ndim != 2 or projections.shape[0] != x.shape[1]:
        raise ValueError(f"projections must be (d={x.shape[1]}, L), got {tuple(projections.shape)}")
    projections = projections.to(device=x.device, dtype=compute_dtype)
    x_sorted = torch.sort(x @ projections, dim=0).values
    y_sorted = torch.sort(y @ projections, dim=0).values
    per_direction = (x_sorted - y_sorted).abs().pow(p).mean(dim=0)
    return per_direction.mean().clamp_min(_ROOT_FLOOR).pow(1.0 / p)
