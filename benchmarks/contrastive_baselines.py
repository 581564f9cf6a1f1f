"""Figures for the contrastive / soft-margin baselines (Game4Loc, TransGeo, GeoDTR), on CPU.

1. Game4Loc's weighted InfoNCE, forward + backward, vectorised (``weighted_info_nce``) against the
   per-row loop of its definition (how Game4Loc's reference code computes it), same inputs; the
   two values must agree.
2. TransGeo's second stage costs: the satellite branch (DeiT-S, random weights) at 320 px with
   the head's attention-guided crop against the first stage at 256 px, forward + backward.
3. One (A)SAM step (two forward/backward passes) against one AdamW step on the same model.

Run: ``.venv/bin/python benchmarks/contrastive_baselines.py`` (about two minutes). Torch runs on
one thread and every figure is the best of several runs of *process CPU time*: on a shared box,
wall time with several threads mostly measures the other jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from cvd.baselines.game4loc import weighted_info_nce
from cvd.baselines.transgeo import TransGeoHead
from cvd.engine.sam import SharpnessAwareMinimizer
from cvd.models import Backbone


def best_of(function: Callable[[], object], repeats: int = 5) -> float:
    """Best CPU time of ``repeats`` runs after one warm-up run (seconds)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return min(times)


def backward_of(loss: Callable[..., torch.Tensor], *args: object) -> None:
    loss(*args).backward()


def satellite_step(backbone: Backbone, head: TransGeoHead, images: torch.Tensor) -> None:
    head(backbone(images))["embedding"].sum().backward()


def loop_reference(
    query: torch.Tensor, reference: torch.Tensor, eps: torch.Tensor, scale: float
) -> torch.Tensor:
    """The definition row by row: (1 - e_i) CE(row_i, i) + e_i mean_j CE(row_i, j), both ways."""
    logits = scale * F.normalize(query, dim=1) @ F.normalize(reference, dim=1).T
    total = 0.0
    for matrix in (logits, logits.T):
        n = matrix.shape[0]
        part = 0.0
        for i in range(n):
            lse = torch.logsumexp(matrix[i], dim=0)
            part = part + (1 - eps[i]) * (lse - matrix[i, i]) + eps[i] * (lse - matrix[i].mean())
        total = total + part / n
    return total / 2


def bench_weighted_infonce() -> None:
    print("## Game4Loc weighted InfoNCE, forward + backward (D = 768)")
    for n in (64, 256):
        generator = torch.Generator().manual_seed(0)
        query = torch.randn(n, 768, generator=generator, requires_grad=True)
        reference = torch.randn(n, 768, generator=generator, requires_grad=True)
        eps = torch.rand(n, generator=generator) * 0.1

        ours = partial(backward_of, weighted_info_nce, query, reference, eps, 14.3)
        loop = partial(backward_of, loop_reference, query, reference, eps, 14.3)

        value = weighted_info_nce(query, reference, eps, 14.3).item()
        expected = loop_reference(query, reference, eps, 14.3).item()
        t_ours, t_loop = best_of(ours), best_of(loop, repeats=3)
        print(
            f"batch {n}: vectorised {t_ours * 1e3:.2f} ms, per-row loop {t_loop * 1e3:.1f} ms, "
            f"ratio {t_ours / t_loop:.3f}; |difference| {abs(value - expected):.2e}"
        )


def bench_transgeo_crop() -> None:
    print("## TransGeo satellite branch (DeiT-S, random weights), batch 4, forward + backward")
    torch.manual_seed(0)
    backbone = Backbone("deit_small_distilled_patch16_224", pretrained=False)
    results = {}
    for label, size, keep in (
        ("stage 1: 256 px, no crop", 256, 1.0),
        ("stage 2: 320 px, keep 0.64", 320, 0.64),
    ):
        head = TransGeoHead(backbone.out_channels, dim=1000, crop_keep=keep)
        head.branch = "satellite"
        images = torch.randn(4, 3, size, size)

        results[label] = best_of(partial(satellite_step, backbone, head, images), repeats=3)
        print(f"{label}: {results[label]:.3f} s")
    first, second = results.values()
    print(f"ratio stage 2 / stage 1: {second / first:.2f} (tokens through the encoder: 400 / 256 = 1.56)")


def bench_sam() -> None:
    print("## One optimiser step, MLP 1024-4096-4096-1024, batch 64")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 4096), torch.nn.GELU(),
        torch.nn.Linear(4096, 1024),
    )  # fmt: skip
    inputs, targets = torch.randn(64, 1024), torch.randn(64, 1024)
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sam = SharpnessAwareMinimizer(torch.optim.AdamW(model.parameters(), lr=1e-4), rho=2.5, adaptive=True)

    def loss() -> torch.Tensor:
        return F.mse_loss(model(inputs), targets)

    def plain() -> None:
        adamw.zero_grad()
        loss().backward()
        adamw.step()

    def sharpness_aware() -> None:
        sam.zero_grad()
        loss().backward()
        sam.step(lambda: loss().backward())

    t_plain, t_sam = best_of(plain), best_of(sharpness_aware)
    print(f"AdamW {t_plain * 1e3:.1f} ms, ASAM(AdamW) {t_sam * 1e3:.1f} ms, ratio {t_sam / t_plain:.2f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    bench_weighted_infonce()
    bench_transgeo_crop()
    bench_sam()
