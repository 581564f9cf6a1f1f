"""Retrieval grids: each query beside its top-k gallery images, the true match framed green."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

GOOD, BAD = (40, 170, 60), (210, 50, 40)


def retrieval_grid(
    query_paths: Sequence[Path],
    query_labels: Sequence[int],
    ranked_paths: Sequence[Sequence[Path]],
    ranked_labels: Sequence[Sequence[int]],
    ranked_scores: Sequence[Sequence[float]],
    out: Path,
    tile: int = 128,
    title: str = "",
) -> Path:
    """Write a PNG: one row per query (query, then its ranked gallery items with scores)."""
    k = max((len(row) for row in ranked_paths), default=0)
    pad, caption = 6, 16
    header = 22 if title else 0
    width = pad + (k + 1) * (tile + pad) + pad
    height = header + len(query_paths) * (tile + caption + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 4), title, fill=(0, 0, 0))
    for row, (query, label) in enumerate(zip(query_paths, query_labels)):
        top = header + pad + row * (tile + caption + pad)
        sheet.paste(_thumbnail(query, tile), (pad, top))
        draw.text((pad, top + tile + 2), f"query {label}", fill=(0, 0, 0))
        for column, (path, match_label, score) in enumerate(
            zip(ranked_paths[row], ranked_labels[row], ranked_scores[row])
        ):
            left = pad + (column + 1) * (tile + pad) + pad
            colour = GOOD if match_label == label else BAD
            sheet.paste(ImageOps.expand(_thumbnail(path, tile - 6), border=3, fill=colour), (left, top))
            mark = "true match" if match_label == label else f"loc {match_label}"
            draw.text((left, top + tile + 2), f"#{column + 1} {score:.2f} {mark}", fill=colour)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def _thumbnail(path: Path, size: int) -> Image.Image:
    from cvd.data.images import load_rgb  # the decoder evaluation used (16-bit, float scaled)

    return load_rgb(path).resize((size, size), Image.Resampling.BILINEAR)
