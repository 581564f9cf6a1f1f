"""Embed gallery tiles in resumable shards, shareable across processes, then merge them.

A gallery of millions of tiles takes hours to embed; an interruption must not cost them. The
tiles are cut into fixed shards of consecutive rows; each shard is embedded and written
atomically (temporary file + rename) to `<work>/shards/shard-NNNNNN.npz`, so a file either holds
a complete shard or does not exist. Re-running skips every shard already on disk.

Processes share the work by shard number: rank r of W embeds the shards s with s % W == r
(torchrun sets RANK and WORLD_SIZE), and rank 0 merges once every shard file exists. Nothing
but the shared folder couples the ranks, so the same scheme works across machines.

Each shard records a fingerprint of the model identity and of its tiles' ids and paths; a
shard left by another model or another tile list is recomputed, never mixed in. Unreadable
tiles are reported by path and left out of the index (they are listed in the manifest).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from cvd.atomic import atomic_output
from cvd.errors import CVDError, GalleryIndexError
from cvd.geo.embedders import Embedder
from cvd.geo.field_images import read_rgb
from cvd.geo.gallery import GalleryTile

SHARD_DIR = "shards"
DEFAULT_SHARD_SIZE = 4096


@dataclass(frozen=True)
class ShardPlan:
    """Consecutive rows [s * shard_size, (s + 1) * shard_size) form shard s."""

    n_tiles: int
    shard_size: int = DEFAULT_SHARD_SIZE

    @property
    def n_shards(self) -> int:
        return -(-self.n_tiles // self.shard_size)

    def rows(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.n_tiles))

    def owned_by(self, rank: int, world_size: int) -> list[int]:
        """Shards rank `rank` of `world_size` embeds (round robin, so ranks finish together)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        return list(range(rank, self.n_shards, world_size))


@dataclass
class EmbedReport:
    """What one rank did: shards embedded now, shards found complete, tiles that failed."""

    embedded: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def shard_path(work_dir: Path, shard: int) -> Path:
    return Path(work_dir) / SHARD_DIR / f"shard-{shard:06d}.npz"


def shard_fingerprint(identity: str, tiles: Sequence[GalleryTile], rows: range) -> str:
    """Hash of the model identity and the ids and paths of a shard's tiles."""
    digest = hashlib.sha256(identity.encode())
    for row in rows:
        digest.update(f"\n{tiles[row].id}\t{tiles[row].path}".encode())
    return digest.hexdigest()


def read_shard(path: Path) -> dict[str, Any] | None:
    """A shard's arrays, or None when the file is absent or unreadable (it is then recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except Exception:  # OSError, BadZipFile, ValueError...: a damaged shard is recomputed, not trusted
        return None


def _write_shard(path: Path, **arrays: NDArray) -> None:
    with atomic_output(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **arrays)


class _TileImages(torch.utils.data.Dataset):
    """(row, image tensor or None, error) per tile row; never raises, so one bad tile costs one tile."""

    def __init__(self, tiles: Sequence[GalleryTile], rows: Sequence[int], transform: Any) -> None:
        self.tiles = tiles
        self.rows = list(rows)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        row = self.rows[i]
        try:
            image, _ = read_rgb(self.tiles[row].path, min_side=1)
            return row, self.transform(image), None
        except CVDError as error:
            return row, None, str(error)


def _collate(batch: list[tuple[int, torch.Tensor | None, str | None]]) -> dict[str, Any]:
    good = [(row, tensor) for row, tensor, _ in batch if tensor is not None]
    return {
        "rows": [row for row, _ in good],
        "images": torch.stack([tensor for _, tensor in good]) if good else None,
        "failed": [(row, error) for row, tensor, error in batch if tensor is None],
    }


def embed_shards(
    embedder: Embedder,
    tiles: Sequence[GalleryTile],
    work_dir: str | os.PathLike,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = 32,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    progress: bool = True,
) -> EmbedReport:
    """Embed this rank's shards that are not on disk yet; returns what was done."""
    from cvd.progress import progress_bar

    work_dir = Path(work_dir)
    plan = ShardPlan(len(tiles), shard_size)
    report = EmbedReport()
    pending = []
    for shard in plan.owned_by(rank, world_size):
        fingerprint = shard_fingerprint(embedder.identity, tiles, plan.rows(shard))
        existing = read_shard(shard_path(work_dir, shard))
        if existing is not None and str(existing["fingerprint"]) == fingerprint:
            report.reused.append(shard)
        else:
            pending.append((shard, fingerprint))
    total = sum(len(plan.rows(shard)) for shard, _ in pending)
    label = "embedding tiles" if world_size == 1 else f"embedding tiles (rank {rank}/{world_size})"
    with progress_bar(total=total, desc=label, unit="tile", enabled=progress and total > 0) as bar:
        for shard, fingerprint in pending:
            rows = plan.rows(shard)
            loader = torch.utils.data.DataLoader(
                _TileImages(tiles, rows, embedder.transform),
                batch_size=batch_size,
                num_workers=num_workers,
                collate_fn=_collate,
            )
            kept_rows: list[int] = []
            vectors: list[NDArray[np.float32]] = []
            failed: list[tuple[int, str]] = []
            for batch in loader:
                if batch["images"] is not None:
                    vectors.append(embedder.embed(batch["images"]))
                    kept_rows.extend(batch["rows"])
                failed.extend(batch["failed"])
                bar.update(len(batch["rows"]) + len(batch["failed"]))
            dim = vectors[0].shape[1] if vectors else embedder.embedding_dim
            _write_shard(
                shard_path(work_dir, shard),
                embeddings=np.concatenate(vectors).astype(np.float32)
                if vectors
                else np.zeros((0, dim), np.float32),
                rows=np.asarray(kept_rows, dtype=np.int64),
                failed_rows=np.asarray([row for row, _ in failed], dtype=np.int64),
                failed_reasons=np.asarray([reason for _, reason in failed], dtype=str),
                fingerprint=np.asarray(fingerprint),
            )
            report.embedded.append(shard)
            report.failed.extend((str(tiles[row].path), reason) for row, reason in failed)
    return report


@dataclass
class MergedEmbeddings:
    """All shards in row order: embeddings of the readable tiles and what failed."""

    embeddings: NDArray[np.float32]
    rows: NDArray[np.int64]  # tile row of each embedding
    failed: list[tuple[int, str]]  # (tile row, reason)


def merge_shards(
    tiles: Sequence[GalleryTile],
    work_dir: str | os.PathLike,
    identity: str,
    shard_size: int = DEFAULT_SHARD_SIZE,
    wait_s: float = 0.0,
    poll_s: float = 2.0,
) -> MergedEmbeddings:
    """Concatenate every shard, waiting up to `wait_s` for other ranks to finish theirs."""
    work_dir = Path(work_dir)
    plan = ShardPlan(len(tiles), shard_size)
    deadline = time.monotonic() + wait_s
    loaded: dict[int, dict[str, Any]] = {}
    while True:
        for shard in range(plan.n_shards):
            if shard in loaded:
                continue
            data = read_shard(shard_path(work_dir, shard))
            if data is not None and str(data["fingerprint"]) == shard_fingerprint(
                identity, tiles, plan.rows(shard)
            ):
                loaded[shard] = data
        missing = [s for s in range(plan.n_shards) if s not in loaded]
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    if missing:
        listed = ", ".join(shard_path(work_dir, s).name for s in missing[:5])
        raise GalleryIndexError(
            f"{work_dir / SHARD_DIR}: {len(missing)} of {plan.n_shards} shard(s) missing or from another "
            f"model/tile list ({listed}{' ...' if len(missing) > 5 else ''}); "
            "run the build again to finish them"
        )
    ordered = [loaded[s] for s in range(plan.n_shards)]
    embeddings = np.concatenate([d["embeddings"] for d in ordered]).astype(np.float32, copy=False)
    rows = np.concatenate([d["rows"] for d in ordered]).astype(np.int64, copy=False)
    failed = [
        (int(row), str(reason))
        for d in ordered
        for row, reason in zip(d["failed_rows"].tolist(), d["failed_reasons"].tolist())
    ]
    return MergedEmbeddings(embeddings, rows, failed)
