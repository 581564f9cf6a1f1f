"""The paper's Figures 3 and 4 for a trained model.

Figure 3: where each factor is strong, as the per-position L2 norm of the content map zc and the
viewpoint map zv over query and satellite images (each map scaled to its own maximum).
Figure 4: cross reconstructions (eq. 4) of a few held-out locations with the matched viewpoint
and with the viewpoint of an unrelated image, next to their targets: RGB for the paper's image
decoder, per-position norm heat maps for the feature-map decoder (the paper shows heat maps too),
and for the pooled-feature decoder the held-out image whose real feature is nearest to each
reconstruction (a vector has no layout to draw).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from cvd.analysis.factors import Factors
from cvd.models.cvd import CVD
from cvd.models.model import reconstruction_target


def to_rgb(images: torch.Tensor, data_config: Mapping[str, Any]) -> torch.Tensor:
    """Normalised (N, 3, H, W) -> displayable (N, H, W, 3) in [0, 1]."""
    mean = torch.tensor(data_config.get("mean", (0.5, 0.5, 0.5)), dtype=images.dtype)[:, None, None]
    std = torch.tensor(data_config.get("std", (0.5, 0.5, 0.5)), dtype=images.dtype)[:, None, None]
    return (images * std + mean).clamp(0, 1).permute(0, 2, 3, 1)


def position_norm(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-position L2 norm of (N, C, h, w), bilinearly enlarged to ``size`` and scaled to [0, 1] per map."""
    norm = maps.float().norm(dim=1, keepdim=True)
    norm = F.interpolate(norm, size=size, mode="bilinear", align_corners=False)[:, 0]
    peak = norm.flatten(1).max(1).values.clamp_min(1e-12)
    return norm / peak[:, None, None]


def _show(axis: Any, image: torch.Tensor | None, heat: torch.Tensor | None = None, title: str = "") -> None:
    if image is not None:
        axis.imshow(image.numpy())
    if heat is not None:
        axis.imshow(heat.numpy(), cmap="jet", alpha=0.5 if image is not None else 1.0, vmin=0, vmax=1)
    axis.set_title(title, fontsize=7)
    axis.axis("off")


def figure3(
    query: Factors,
    satellite: Factors,
    query_rows: Sequence[int],
    satellite_rows: Sequence[int],
    data_config: Mapping[str, Any],
    out: Path,
) -> Path:
    """Content vs viewpoint attention (per-position norm) for a few locations, both views."""
    columns = 6 if query.viewpoint is not None else 4
    fig, axes = plt.subplots(
        len(query_rows), columns, figsize=(1.6 * columns, 1.7 * len(query_rows)), squeeze=False
    )
    for row, (q, s) in enumerate(zip(query_rows, satellite_rows)):
        cells = []
        for factors, index in ((query, q), (satellite, s)):
            image = to_rgb(factors.images[index : index + 1], data_config)[0]
            size = tuple(image.shape[:2])
            content = position_norm(factors.content[index : index + 1], size)[0]
            cells.append((image, None, f"{factors.view} {factors.records[index].label}"))
            cells.append((image, content, "content |zc|"))
            if factors.viewpoint is not None:
                cells.append(
                    (image, position_norm(factors.viewpoint[index : index + 1], size)[0], "viewpoint |zv|")
                )
        for column, (image, heat, title) in enumerate(cells):
            _show(axes[row][column], image, heat, title if row == 0 or heat is None else "")
    fig.suptitle("Figure 3: content and viewpoint attention (per-position norm)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


@torch.no_grad()
def figure4(
    cvd: CVD,
    own_rows: Mapping[str, tuple[Factors, torch.Tensor, Sequence[int]]],
    data_config: Mapping[str, Any],
    out: Path,
) -> Path:
    """Cross reconstructions: for each shown image, target | matched viewpoint | unrelated viewpoint.

    ``own_rows[branch] = (own factors, the other view's content row-aligned with them, rows)``.
    """
    entries = []
    for branch, (factors, content, rows) in own_rows.items():
        rows = list(rows)
        unrelated = [(index + max(1, len(factors.records) // 2)) % len(factors.records) for index in rows]
        # one decoder call per branch for all shown rows (normalisation layers need a batch)
        target = reconstruction_target(
            cvd, factors.images[rows], {"features": factors.features[rows]}, branch
        )
        size = tuple(target.shape[-2:])
        matched = cvd.reconstruct(content[rows], factors.viewpoint[rows], branch, size)
        other = cvd.reconstruct(content[rows], factors.viewpoint[unrelated], branch, size)
        for line, (index, swapped) in enumerate(zip(rows, unrelated)):
            entries.append(
                (branch, factors, index, swapped, [t[line : line + 1] for t in (target, matched, other)])
            )
    fig, axes = plt.subplots(len(entries), 3, figsize=(5.2, 1.8 * len(entries)), squeeze=False)
    for line, (branch, factors, index, unrelated, outputs) in enumerate(entries):
        rebuilt = "drone" if branch == "query" else "satellite"
        if cvd.reconstruct_kind == "image":
            cells = [(to_rgb(t.float(), data_config)[0], None) for t in outputs]
        elif cvd.reconstruct_kind == "pooled_feature":
            # a pooled feature has no layout to draw: show the held-out image whose real feature
            # is nearest (cosine) to each reconstruction; the target itself when it is recovered
            pooled = F.normalize(factors.features.mean(dim=(2, 3)), dim=1)
            nearest = [int((F.normalize(t.float(), dim=1) @ pooled.T).argmax()) for t in outputs]
            cells = [(to_rgb(factors.images[k : k + 1], data_config)[0], None) for k in nearest]
            outputs_labels = [factors.records[k].label for k in nearest]
        else:
            image = to_rgb(factors.images[index : index + 1], data_config)[0]
            heat_size = tuple(image.shape[:2])
            cells = [(image, position_norm(t, heat_size)[0]) for t in outputs]
        titles = (
            f"target: {rebuilt} {factors.records[index].label}",
            "matched viewpoint",
            f"viewpoint of {factors.records[unrelated].label}",
        )
        if cvd.reconstruct_kind == "pooled_feature":
            titles = (
                titles[0],
                f"{titles[1]}: nearest {outputs_labels[1]}",
                f"{titles[2]}: nearest {outputs_labels[2]}",
            )
        for column, ((image, heat), title) in enumerate(zip(cells, titles)):
            _show(axes[line][column], image, heat, title)
    fig.suptitle(
        "Figure 4: each view rebuilt from the other view's content\n"
        "with its matched and an unrelated viewpoint",
        fontsize=8,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
