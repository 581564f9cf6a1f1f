"""How well do estimators of eq. 3 see planted dependence at the sizes CVD trains with?

Synthetic pooled factors zc (B, d_c) and zv (B, d_v) with three dependence models of strength rho:

- full   : zv = rho * zc P + sqrt(1 - rho^2) * noise   (every zv channel tied to one zc direction)
- rank4  : four shared nuisance directions, correlation rho on each (a few viewpoint factors leaking)
- nonlin : zv = rho * (zc_perm^2 - 1) / sqrt2 + ...    (uncorrelated but dependent)

For each estimator T, R repetitions (new sample, new permutation and projections): signal =
mean T(rho) - mean T(0), noise = sd T(0), SNR = signal / noise, power = P(T(rho) > 95% quantile of
T(0)). The estimators are the two of ``cvd.losses.independence_loss`` and the steps between them:

- paper         : L2-normalised pooled factors, 128 random slices, one permutation (as published)
- paper-1024    : the same with 1024 slices
- standardised  : standardised channels instead of L2 rows, 128 random slices, one permutation
- channel_pairs : the toolkit's, standardised channel-pair slices with the Gaussian W2
- window        : channel_pairs over the running correlations of the last ~10 batches (what the
                  toolkit trains with, ``cvd.iic_momentum: 0.1``), read after 30 batches

    .venv/bin/python benchmarks/independence.py                 # ~2 min on 2 cores
    .venv/bin/python benchmarks/independence.py --reps 40 --batches 32 128
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from cvd.losses import independence_loss
from cvd.losses.independence import RunningCorrelation, standardise, sw2_from_correlation
from cvd.losses.sliced_wasserstein import sliced_wasserstein


def dependence_law(model: str, dims: tuple[int, int], generator: torch.Generator) -> dict:
    """The fixed part of a dependence model (its directions), shared by every batch of one world."""
    content_dim, viewpoint_dim = dims
    if model == "full":
        return {"basis": torch.linalg.qr(torch.randn(content_dim, viewpoint_dim, generator=generator))[0]}
    if model == "rank4":
        return {
            "into_c": torch.linalg.qr(torch.randn(content_dim, 4, generator=generator))[0],
            "into_v": torch.linalg.qr(torch.randn(viewpoint_dim, 4, generator=generator))[0],
        }
    if model == "nonlin":
        return {"picked": torch.randperm(content_dim, generator=generator)[:viewpoint_dim]}
    raise ValueError(model)


def planted(model: str, batch: int, dims: tuple[int, int], rho: float, law: dict, generator: torch.Generator):
    """One batch (zc, zv) of the dependence model at strength rho (rho = 0: independent)."""
    content_dim, viewpoint_dim = dims
    zc = torch.randn(batch, content_dim, generator=generator)
    noise = torch.randn(batch, viewpoint_dim, generator=generator)
    if rho == 0.0:
        return zc, noise
    if model == "full":
        return zc, rho * zc @ law["basis"] + math.sqrt(1 - rho**2) * noise
    if model == "rank4":
        shared = torch.randn(batch, 4, generator=generator)
        scale = math.sqrt(rho / (1 - rho))
        return zc + scale * shared @ law["into_c"].T, noise + scale * shared @ law["into_v"].T
    return zc, rho * (zc[:, law["picked"]] ** 2 - 1) / math.sqrt(2) + math.sqrt(1 - rho**2) * noise


def standardised_random_slices(zc, zv, generator):
    content, viewpoint = standardise(zc), standardise(zv)
    permutation = torch.randperm(len(zc), generator=generator)
    joint = torch.cat([content, viewpoint], 1)
    product = torch.cat([content, viewpoint[permutation]], 1)
    return sliced_wasserstein(joint, product, n_projections=128, generator=generator)


ESTIMATORS = {
    "paper": lambda c, v, g: independence_loss(c, v, n_projections=128, generator=g),
    "paper-1024": lambda c, v, g: independence_loss(c, v, n_projections=1024, generator=g),
    "standardised": standardised_random_slices,
    "channel_pairs": lambda c, v, g: independence_loss(c, v, estimator="channel_pairs"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=25)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rho", type=float, default=0.6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(f"rho = {args.rho}, {args.reps} repetitions; cells: SNR (power at the 5% level)")
    print(f"| dependence | d_c + d_v | B | {' | '.join(ESTIMATORS)} | window |")
    print("|---|---|---|" + "---|" * (len(ESTIMATORS) + 1))
    for model in ("full", "rank4", "nonlin"):
        for dims in ((640, 640), (1280, 64)):
            for batch in args.batches:
                generator = torch.Generator().manual_seed(hash((model, dims, batch)) % 2**31)
                cells = []
                null = {k: [] for k in (*ESTIMATORS, "window")}
                alt = {k: [] for k in (*ESTIMATORS, "window")}
                for _ in range(args.reps):
                    for values, rho in ((null, 0.0), (alt, args.rho)):
                        law = dependence_law(model, dims, generator)
                        zc, zv = planted(model, batch, dims, rho, law, generator)
                        for name, estimator in ESTIMATORS.items():
                            values[name].append(float(estimator(zc, zv, generator)))
                        # the toolkit's running window: 30 batches of the same world
                        running = RunningCorrelation(*dims, momentum=0.1).train()
                        for _ in range(30):
                            value = sw2_from_correlation(
                                running(*planted(model, batch, dims, rho, law, generator))
                            )
                        values["window"].append(float(value))
                for name in (*ESTIMATORS, "window"):
                    n0, n1 = torch.tensor(null[name]), torch.tensor(alt[name])
                    snr = float((n1.mean() - n0.mean()) / n0.std())
                    power = float((n1 > torch.quantile(n0, 0.95)).float().mean())
                    cells.append(f"{snr:.1f} ({power:.2f})")
                print(f"| {model} | {dims[0]} + {dims[1]} | {batch} | {' | '.join(cells)} |", flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
