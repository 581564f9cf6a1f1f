"""Build a gallery index end to end: tiles -> (resumable, sharded) embeddings -> faiss + manifest.

This is what `cvd index build` runs; it is a function so tests and pipelines can call it. The
index folder doubles as the work folder: shards live in `<index>/shards/`, so re-running the same
command after an interruption resumes, and the manifest is written only when everything is in.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cvd.errors import GalleryIndexError
from cvd.geo.embedders import Embedder
from cvd.geo.gallery import GalleryTile
from cvd.geo.gallery_index import INDEX_FILE, MANIFEST_FILE, TILES_FILE, GalleryIndex, IndexParams, ModelInfo
from cvd.geo.tile_shards import DEFAULT_SHARD_SIZE, embed_shards, merge_shards

# What an index folder holds; anything else means --out points at someone else's folder.
INDEX_FOLDER_ENTRIES = (MANIFEST_FILE, INDEX_FILE, TILES_FILE, "shards", "map_tiles")


def check_index_folder(out_dir: str | os.PathLike) -> None:
    """Refuse to write an index into a folder that holds other things (a dataset, the tiles
    themselves: the index's own tiles.csv would replace theirs). Our temporary files start with
    a dot and are ignored."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return
    foreign = sorted(
        p.name for p in out_dir.iterdir() if p.name not in INDEX_FOLDER_ENTRIES and not p.name.startswith(".")
    )
    if foreign:
        listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise GalleryIndexError(
            f"--out {out_dir} is not an index folder (it holds {listed}); choose a new or empty folder "
            f"(an index folder holds only {', '.join(INDEX_FOLDER_ENTRIES)})"
        )


MAX_FAILED_LISTED = 1000


def build_index(
    embedder: Embedder,
    tiles: Sequence[GalleryTile],
    out_dir: str | os.PathLike,
    index_type: str = "auto",
    params: IndexParams | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = 32,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    wait_s: float = 0.0,
    progress: bool = True,
) -> GalleryIndex | None:
    """Embed this rank's share of `tiles`; on rank 0 merge every shard and save the index.

    Returns the saved index on rank 0, None on the other ranks. Tiles that cannot be read are
    left out, reported on stderr and listed in the manifest.
    """
    out_dir = Path(out_dir)
    check_index_folder(out_dir)
    report = embed_shards(
        embedder,
        tiles,
        out_dir,
        shard_size=shard_size,
        batch_size=batch_size,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
        progress=progress,
    )
    if report.reused and progress:
        print(
            f"resumed: {len(report.reused)} shard(s) already embedded in {out_dir / 'shards'}",
            file=sys.stderr,
        )
    if rank != 0:
        return None
    merged = merge_shards(tiles, out_dir, embedder.identity, shard_size, wait_s=wait_s)
    for _row, reason in merged.failed[:20]:
        print(f"warning: tile skipped: {reason}", file=sys.stderr)
    if len(merged.failed) > 20:
        print(
            f"warning: ... {len(merged.failed) - 20} more tiles skipped (listed in the manifest)",
            file=sys.stderr,
        )
    kept = [tiles[row] for row in merged.rows.tolist()]
    if not kept:
        from cvd.errors import GalleryIndexError

        raise GalleryIndexError(f"{out_dir}: none of the {len(tiles)} tiles could be read; nothing to index")
    model = ModelInfo(
        identity=embedder.identity,
        source=embedder.source,
        view=embedder.view,
        embedding_dim=int(merged.embeddings.shape[1]),
        data_config=dict(embedder.data_config),
    )
    build_info = {
        "build": {
            "n_tiles_listed": len(tiles),
            "n_tiles_failed": len(merged.failed),
            "failed": [
                {"id": tiles[row].id, "path": str(tiles[row].path), "reason": reason}
                for row, reason in merged.failed[:MAX_FAILED_LISTED]
            ],
            "shard_size": shard_size,
            "world_size": world_size,
        }
    }
    index = GalleryIndex.build(merged.embeddings, kept, model, index_type, params, extra=build_info)
    index.save(out_dir)
    return index
